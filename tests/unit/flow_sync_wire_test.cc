// The flow-sync datagrams (dataplane/flow_sync_wire.h): what one node encodes another decodes,
// only with the cluster's secret, and nothing malformed gets through.
#include "dataplane/flow_sync_wire.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

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

const SipKey kKey = KeyFromSecret("a cluster's flow-hash secret, 32 bytes");

TEST(FlowSyncTest, WhatOneNodeEncodesAnotherDecodes) {
  const std::vector<SyncedFlow> flows = {
      Flow("192.0.2.1", 40000, "10.100.0.10", 80, IPPROTO_TCP, "10.92.1.2"),
      Flow("2001:db8::1", 5353, "2001:db8:100::10", 53, IPPROTO_UDP, "fd00::5", 5353, 0),
      Flow("192.0.2.7", 1, "10.100.0.10", 53, IPPROTO_UDP, "fd00::9"),  // a 4in6 backend
  };
  std::vector<uint8_t> datagram;
  ASSERT_EQ(Encode(kKey, MessageType::kFlows, 77, flows, datagram), flows.size());
  EXPECT_EQ(datagram.size(), kHeaderLen + 24 + (12 + 48) + (12 + 8 + 16) + kTagLen);
  auto m = Decode(kKey, datagram);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->type, MessageType::kFlows);
  EXPECT_EQ(m->sequence, 77u);
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
  EXPECT_EQ(Decode(KeyFromSecret("another cluster's secret, 32 bytes!"), datagram).status().code(),
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
  // Re-tags a body changed by `change`, as a node with the secret but a bug would send it.
  auto retagged = [&](auto change) {
    std::vector<uint8_t> body(good.begin(), good.end() - kTagLen);
    change(body);
    const uint64_t tag = SipHash<2, 4>(kKey, body.data(), body.size());
    for (int i = 7; i >= 0; --i) body.push_back(uint8_t(tag >> (8 * i)));
    return body;
  };
  EXPECT_TRUE(Decode(kKey, retagged([](auto&) {})).ok());
  EXPECT_FALSE(Decode(kKey, retagged([](auto& b) { b[4] = 2; })).ok()) << "version";
  EXPECT_FALSE(Decode(kKey, retagged([](auto& b) { b[5] = 9; })).ok()) << "type";
  EXPECT_FALSE(Decode(kKey, retagged([](auto& b) { b[7] = 2; })).ok()) << "count past the end";
  EXPECT_FALSE(Decode(kKey, retagged([](auto& b) { b[7] = 0; })).ok()) << "bytes after the records";
  EXPECT_FALSE(Decode(kKey, retagged([](auto& b) { b[kHeaderLen + 1] = IPPROTO_ICMP; })).ok()) << "protocol";
  EXPECT_FALSE(Decode(kKey, retagged([](auto& b) { b[kHeaderLen] = 8; })).ok()) << "flags";
  EXPECT_FALSE(Decode(kKey, retagged([](auto& b) { b[kHeaderLen + 11] = 1; })).ok()) << "an SNAT port, not NAT";
  EXPECT_FALSE(Decode(kKey, retagged([](auto& b) { b[kHeaderLen] = 4; })).ok()) << "NAT, without its address";
  EXPECT_FALSE(Decode(kKey, std::vector<uint8_t>(good.begin(), good.begin() + 10)).ok()) << "short";
}

}  // namespace
}  // namespace lb::dataplane::flow_sync
