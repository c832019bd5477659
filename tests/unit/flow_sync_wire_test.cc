// The flow-sync datagrams (dataplane/flow_sync_wire.h): what one node encodes another decodes,
// only with the cluster's secret, and nothing malformed gets through.
#include "dataplane/flow_sync_wire.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

namespace lb::dataplane::flow_sync {
namespace {

SyncedFlow Flow(const char* client, uint16_t cport, const char* vip, uint16_t vport, uint8_t proto, const char* backend,
                uint16_t bport = 0, uint8_t state = 2) {
  SyncedFlow f;
  f.key.src = *IpAddress::Parse(client);
  f.key.dst = *IpAddress::Parse(vip);
  f.key.src_port_be = htons(cport);
  f.key.dst_port_be = htons(vport);
  f.key.protocol = proto;
  f.backend = *IpAddress::Parse(backend);
  f.backend_port = bport;
  f.state = state;
  return f;
}

SyncedFlow NatSession(SyncedFlow f, const char* snat, uint16_t snat_port) {
  f.nat = true;
  f.snat = *IpAddress::Parse(snat);
  f.snat_port = snat_port;
  return f;
}

const SipKey kClusterKey = KeyFromSecret("a cluster's flow-hash secret, 32 bytes");
const SipKey kKey = SenderKey(kClusterKey, *IpAddress::Parse("10.80.0.11"));

// `datagram` with its body changed by `change` and tagged again, as a node with the secret
// but a bug would send it.
template <typename Change>
std::vector<uint8_t> Retagged(const std::vector<uint8_t>& datagram, Change change) {
  std::vector<uint8_t> body(datagram.begin(), datagram.end() - kTagLen);
  change(body);
  const uint64_t tag = SipHash<2, 4>(kKey, body.data(), body.size());
  for (int i = 7; i >= 0; --i) body.push_back(uint8_t(tag >> (8 * i)));
  return body;
}

TEST(FlowSyncTest, WhatOneNodeEncodesAnotherDecodes) {
  const std::vector<SyncedFlow> flows = {
      Flow("192.0.2.1", 40000, "10.100.0.10", 80, IPPROTO_TCP, "10.92.1.2"),
      Flow("2001:db8::1", 5353, "2001:db8:100::10", 53, IPPROTO_UDP, "fd00::5", 5353, 0),
      Flow("192.0.2.7", 1, "10.100.0.10", 53, IPPROTO_UDP, "fd00::9"),  // a 4in6 backend
  };
  std::vector<uint8_t> datagram;
  ASSERT_EQ(Encode(kKey, MessageType::kFlows, 0x0102030405060708, flows, datagram), flows.size());
  EXPECT_EQ(datagram.size(), kHeaderLen + 24 + (12 + 48) + (12 + 8 + 16) + kTagLen);
  auto m = Decode(kKey, datagram);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->type, MessageType::kFlows);
  EXPECT_EQ(m->stamp, 0x0102030405060708u);
  EXPECT_EQ(m->flows, flows);
}

TEST(FlowSyncTest, NatSessionsCarryTheirSnatAddressAndPort) {
  const std::vector<SyncedFlow> sessions = {
      NatSession(Flow("192.0.2.1", 40000, "10.100.0.10", 80, IPPROTO_TCP, "10.92.1.2", 8080), "10.93.0.1", 1024),
      NatSession(Flow("2001:db8::1", 5353, "2001:db8:100::10", 53, IPPROTO_UDP, "fd00::5", 53, 0), "fd00:93::1", 65535),
      Flow("192.0.2.1", 40001, "10.100.0.10", 80, IPPROTO_TCP, "10.92.1.2"),  // DSR between them
  };
  EXPECT_EQ(RecordLength(sessions[0]), 28u);
  std::vector<uint8_t> datagram;
  ASSERT_EQ(Encode(kKey, MessageType::kFlows, 5, sessions, datagram), sessions.size());
  EXPECT_EQ(datagram.size(), kHeaderLen + 28 + (12 + 32 + 32) + 24 + kTagLen);
  auto m = Decode(kKey, datagram);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->flows, sessions);
}

TEST(FlowSyncTest, AnIpv4FlowTakes24BytesAndADatagramHolds57) {
  const SyncedFlow f = Flow("192.0.2.1", 40000, "10.100.0.10", 80, IPPROTO_TCP, "10.92.1.2");
  EXPECT_EQ(RecordLength(f), 24u);
  const std::vector<SyncedFlow> many(100, f);
  std::vector<uint8_t> datagram;
  const size_t n = Encode(kKey, MessageType::kFlows, 1, many, datagram);
  EXPECT_EQ(n, (kMaxDatagram - kHeaderLen - kTagLen) / 24);
  EXPECT_LE(datagram.size(), kMaxDatagram);
  auto m = Decode(kKey, datagram);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->flows.size(), n);
}

TEST(FlowSyncTest, ADumpRequestCarriesNoFlows) {
  std::vector<uint8_t> datagram;
  const std::vector<SyncedFlow> flows = {Flow("192.0.2.1", 1, "10.100.0.10", 80, IPPROTO_TCP, "10.92.1.2")};
  EXPECT_EQ(Encode(kKey, MessageType::kDumpRequest, 3, flows, datagram), 0u);
  auto m = Decode(kKey, datagram);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->type, MessageType::kDumpRequest);
  EXPECT_TRUE(m->flows.empty());
}

TEST(FlowSyncTest, OnlyTheClustersSecretAuthenticates) {
  std::vector<uint8_t> datagram;
  Encode(kKey, MessageType::kFlows, 1,
         std::vector<SyncedFlow>{Flow("192.0.2.1", 1, "10.100.0.10", 80, IPPROTO_TCP, "10.92.1.2")}, datagram);
  EXPECT_EQ(
      Decode(SenderKey(KeyFromSecret("another cluster's secret, 32 bytes!"), *IpAddress::Parse("10.80.0.11")), datagram)
          .status()
          .code(),
      absl::StatusCode::kPermissionDenied);
  // Nor does the same cluster's key for another sender: a datagram is only its sender's.
  EXPECT_EQ(Decode(SenderKey(kClusterKey, *IpAddress::Parse("10.80.0.12")), datagram).status().code(),
            absl::StatusCode::kPermissionDenied);
  // Every single-bit change of the datagram is refused.
  for (size_t bit = 0; bit < datagram.size() * 8; ++bit) {
    std::vector<uint8_t> changed = datagram;
    changed[bit / 8] ^= uint8_t(1 << (bit % 8));
    EXPECT_FALSE(Decode(kKey, changed).ok()) << "bit " << bit;
  }
}

TEST(FlowSyncTest, MalformedDatagramsAreRefusedEvenWithAGoodTag) {
  std::vector<uint8_t> good;
  Encode(kKey, MessageType::kFlows, 1,
         std::vector<SyncedFlow>{Flow("192.0.2.1", 1, "10.100.0.10", 80, IPPROTO_TCP, "10.92.1.2")}, good);
  auto retagged = [&](auto change) { return Retagged(good, change); };
  EXPECT_TRUE(Decode(kKey, retagged([](auto&) {})).ok());
  EXPECT_FALSE(Decode(kKey, retagged([](auto& b) { b[4] = 1; })).ok()) << "version";
  EXPECT_FALSE(Decode(kKey, retagged([](auto& b) { b[5] = 9; })).ok()) << "type";
  EXPECT_FALSE(Decode(kKey, retagged([](auto& b) { b[5] = 2; })).ok()) << "a dump request with flows (flow_sync_fuzz)";
  EXPECT_FALSE(Decode(kKey, retagged([](auto& b) { b[7] = 2; })).ok()) << "count past the end";
  EXPECT_FALSE(Decode(kKey, retagged([](auto& b) { b[7] = 0; })).ok()) << "bytes after the records";
  EXPECT_FALSE(Decode(kKey, retagged([](auto& b) { b[kHeaderLen + 1] = IPPROTO_ICMP; })).ok()) << "protocol";
  EXPECT_FALSE(Decode(kKey, retagged([](auto& b) { b[kHeaderLen] = 8; })).ok()) << "flags";
  EXPECT_FALSE(Decode(kKey, retagged([](auto& b) { b[kHeaderLen + 11] = 1; })).ok()) << "an SNAT port, not NAT";
  EXPECT_FALSE(Decode(kKey, retagged([](auto& b) { b[kHeaderLen] = 4; })).ok()) << "NAT, without its address";
  EXPECT_FALSE(Decode(kKey, std::vector<uint8_t>(good.begin(), good.begin() + 10)).ok()) << "short";
  // An IPv6 record whose client is IPv4-mapped (found by flow_sync_fuzz): its VIP would be
  // of the other family.
  std::vector<uint8_t> v6;
  Encode(kKey, MessageType::kFlows, 1,
         std::vector<SyncedFlow>{Flow("2001:db8::1", 1, "2001:db8:100::10", 80, IPPROTO_TCP, "fd00::5")}, v6);
  const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  for (size_t field : {0, 16, 32}) {  // client, VIP, backend
    EXPECT_FALSE(
        Decode(kKey, Retagged(v6, [&](auto& b) { std::memcpy(&b[kHeaderLen + 12 + field], prefix, 12); })).ok())
        << "an IPv4-mapped address in IPv6 field " << field / 16;
  }
}

TEST(FlowSyncTest, ANodeOfAnotherVersionIsNamedAsSuch) {
  std::vector<uint8_t> datagram;
  Encode(kKey, MessageType::kDumpRequest, 1, {}, datagram);
  datagram[4] = 1;
  EXPECT_EQ(Decode(kKey, datagram).status().message(), "version 1, expected 2");
}

TEST(StampClockTest, StampsNeverRepeatNorGoBack) {
  StampClock clock;
  EXPECT_EQ(clock.Next(1000), 1000u);
  EXPECT_EQ(clock.Next(1000), 1001u);  // the same microsecond
  EXPECT_EQ(clock.Next(500), 1002u);   // the clock stepped back
  EXPECT_EQ(clock.Next(5000), 5000u);
}

TEST(ReplayGuardTest, EachStampIsTakenOnceAndOnlyNearTheClock) {
  using V = ReplayGuard::Verdict;
  constexpr uint64_t kNow = 1'000'000'000, kSkew = 5'000'000;
  ReplayGuard g(kSkew);
  EXPECT_EQ(g.Check(kNow - kSkew - 1, kNow), V::kOutOfWindow);
  EXPECT_EQ(g.Check(kNow + kSkew + 1, kNow), V::kOutOfWindow);
  EXPECT_EQ(g.Check(kNow - kSkew, kNow), V::kFresh);
  EXPECT_EQ(g.Check(kNow - kSkew, kNow), V::kReplayed);
  EXPECT_EQ(g.Check(kNow, kNow), V::kFresh);
  EXPECT_EQ(g.Check(kNow - 1, kNow), V::kReplayed);  // older than the last taken
  EXPECT_EQ(g.Check(kNow + kSkew, kNow), V::kFresh);
  // Out-of-window stamps are not remembered: the sender's next one is taken.
  EXPECT_EQ(g.Check(kNow + 10 * kSkew, kNow), V::kOutOfWindow);
  EXPECT_EQ(g.Check(kNow + kSkew + 1, kNow + 1), V::kFresh);
  // A clock near zero does not wrap the window.
  ReplayGuard early(kSkew);
  EXPECT_EQ(early.Check(1, 2), V::kFresh);
}

}  // namespace
}  // namespace lb::dataplane::flow_sync
