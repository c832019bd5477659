#include "dataplane/snapshot.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <set>

namespace lb::dataplane {
namespace {

using ::testing::HasSubstr;

IpAddress Addr(const char* s) { return *IpAddress::Parse(s); }

DataplaneConfig BaseConfig() {
  DataplaneConfig c;
  c.encap.source_v4 = *IpPrefix::Parse("10.255.0.0/24");
  c.encap.source_v6 = *IpPrefix::Parse("fd00:ff::/120");
  ServiceConfig dns;
  dns.vip = Addr("10.1.0.10");
  dns.protocol = IPPROTO_UDP;
  dns.port = 53;
  dns.table_size = 307;
  dns.backends = {{Addr("192.168.10.1")}, {Addr("192.168.10.2")}, {Addr("fd00::3")}};
  c.services.push_back(dns);
  return c;
}

void ExpectInvalid(const DataplaneConfig& c, absl::StatusCode code, const std::string& field) {
  const absl::Status s = ValidateConfig(c, Limits{});
  EXPECT_EQ(s.code(), code) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr(field)) << s;
}

TEST(ValidateConfigTest, AcceptsAGoodConfig) { EXPECT_TRUE(ValidateConfig(BaseConfig(), {}).ok()); }

TEST(ValidateConfigTest, NamesTheOffendingField) {
  using C = absl::StatusCode;
  auto c = BaseConfig();
  c.services[0].table_size = 300;
  ExpectInvalid(c, C::kInvalidArgument, "services[0].table_size: 300 must be a prime");
  c = BaseConfig();
  c.services[0].protocol = 1;
  ExpectInvalid(c, C::kInvalidArgument, "services[0].protocol");
  c = BaseConfig();
  c.services[0].vip = IpAddress{};
  ExpectInvalid(c, C::kInvalidArgument, "services[0].vip: must be set");
  c = BaseConfig();
  c.services[0].backends[1].address = c.services[0].backends[0].address;
  ExpectInvalid(c, C::kInvalidArgument, "services[0].backends[1]: same address and port as services[0].backends[0]");
  c = BaseConfig();
  c.services[0].backends[2].weight = 70000;
  ExpectInvalid(c, C::kInvalidArgument, "services[0].backends[2].weight");
  c = BaseConfig();
  c.encap.source_v6 = IpPrefix{};
  ExpectInvalid(c, C::kInvalidArgument,
                "services[0].backends[2].address: fd00::3 is IPv6 but encap.source_v6 is not set");
  c = BaseConfig();
  c.services.push_back(c.services[0]);
  ExpectInvalid(c, C::kInvalidArgument, "services[1]: same VIP, protocol and port as services[0]");
  c = BaseConfig();
  c.mtu = 100;
  ExpectInvalid(c, C::kInvalidArgument, "mtu");
  c = BaseConfig();
  c.timeouts.udp = 0;
  ExpectInvalid(c, C::kInvalidArgument, "timeouts.udp");
  c = BaseConfig();
  c.encap.source_v4 = *IpPrefix::Parse("fd00::/64");
  ExpectInvalid(c, C::kInvalidArgument, "encap.source_v4");
  c = BaseConfig();
  c.services[0].table_size = 2;
  ExpectInvalid(c, C::kInvalidArgument, "cannot hold 3 active backends");
  c = BaseConfig();
  const absl::Status s = ValidateConfig(c, Limits{.max_backends_per_service = 2});
  EXPECT_EQ(s.code(), C::kResourceExhausted);
  EXPECT_THAT(std::string(s.message()), HasSubstr("services[0].backends"));
  EXPECT_EQ(ValidateConfig(c, Limits{.max_services = 0}).code(), C::kResourceExhausted);
  EXPECT_EQ(ValidateConfig(c, Limits{.max_backends_total = 2}).code(), C::kResourceExhausted);
}

TEST(SnapshotBuilderTest, FindsServicesExactThenAllPorts) {
  auto c = BaseConfig();
  ServiceConfig any;
  any.vip = Addr("10.1.0.10");
  any.protocol = IPPROTO_UDP;
  any.port = 0;
  any.table_size = 307;
  any.backends = {{Addr("192.168.20.1")}};
  c.services.push_back(any);
  SnapshotBuilder builder;
  auto snap = builder.Build(c);
  ASSERT_TRUE(snap.ok()) << snap.status();
  const Snapshot& s = **snap;
  EXPECT_EQ(s.FindService(Addr("10.1.0.10"), IPPROTO_UDP, htons(53)), &s.services()[0]);
  EXPECT_EQ(s.FindService(Addr("10.1.0.10"), IPPROTO_UDP, htons(54)), &s.services()[1]);
  EXPECT_EQ(s.FindService(Addr("10.1.0.10"), IPPROTO_TCP, htons(53)), nullptr);
  EXPECT_EQ(s.FindService(Addr("10.1.0.11"), IPPROTO_UDP, htons(53)), nullptr);
  ASSERT_NE(s.FindVip(Addr("10.1.0.10")), nullptr);
  EXPECT_EQ(s.FindVip(Addr("10.1.0.10"))->fragment_service_udp, 1u) << "all-ports service wins";
  EXPECT_EQ(s.FindVip(Addr("10.1.0.10"))->fragment_service_tcp, kNoServiceIndex);
  EXPECT_EQ(s.FindVip(Addr("10.1.0.11")), nullptr);
}

TEST(SnapshotBuilderTest, FragmentServiceIsAmbiguousWithSeveralPorts) {
  auto c = BaseConfig();
  c.services.push_back(c.services[0]);
  c.services[1].port = 5353;
  SnapshotBuilder builder;
  auto snap = builder.Build(c);
  ASSERT_TRUE(snap.ok());
  EXPECT_EQ((*snap)->FindVip(Addr("10.1.0.10"))->fragment_service_udp, kAmbiguousServiceIndex);
}

// A backend keeps its slot while it exists; a removed backend's slot changes generation,
// and a reused slot is the oldest freed one.
TEST(SnapshotBuilderTest, BackendSlotsAreStable) {
  SnapshotBuilder builder;
  auto c = BaseConfig();
  auto s1 = builder.Build(c);
  ASSERT_TRUE(s1.ok());
  const auto slots1 = (*s1)->services()[0].backend_slots;
  ASSERT_EQ(slots1.size(), 3u);

  // Reordered and with one added: same slots for the same backends.
  std::swap(c.services[0].backends[0], c.services[0].backends[2]);
  c.services[0].backends.push_back({Addr("192.168.10.4")});
  auto s2 = builder.Build(c);
  ASSERT_TRUE(s2.ok());
  const auto& slots2 = (*s2)->services()[0].backend_slots;
  EXPECT_EQ(slots2[0], slots1[2]);
  EXPECT_EQ(slots2[2], slots1[0]);
  EXPECT_EQ(slots2[1], slots1[1]);
  EXPECT_GT((*s2)->generation(), (*s1)->generation());

  // Removing 192.168.10.2 bumps its slot's generation; the next new backend reuses it.
  const uint32_t removed_slot = slots2[1];
  const uint32_t old_gen = (*s2)->backend(removed_slot)->generation;
  c.services[0].backends.erase(c.services[0].backends.begin() + 1);
  auto s3 = builder.Build(c);
  ASSERT_TRUE(s3.ok());
  EXPECT_EQ((*s3)->backend(removed_slot), nullptr);
  c.services[0].backends.push_back({Addr("192.168.10.5")});
  auto s4 = builder.Build(c);
  ASSERT_TRUE(s4.ok());
  const BackendRecord* reused = (*s4)->backend(removed_slot);
  ASSERT_NE(reused, nullptr);
  EXPECT_EQ(reused->address, Addr("192.168.10.5"));
  EXPECT_NE(reused->generation, old_gen);
}

TEST(SnapshotBuilderTest, FailedBuildChangesNothing) {
  SnapshotBuilder builder;
  auto c = BaseConfig();
  auto s1 = builder.Build(c);
  ASSERT_TRUE(s1.ok());
  auto bad = c;
  bad.services[0].backends.clear();
  bad.services[0].table_size = 4;
  EXPECT_FALSE(builder.Build(bad).ok());
  auto s2 = builder.Build(c);
  ASSERT_TRUE(s2.ok());
  EXPECT_EQ((*s2)->services()[0].backend_slots, (*s1)->services()[0].backend_slots);
  for (uint32_t slot : (*s2)->services()[0].backend_slots) {
    EXPECT_EQ((*s2)->backend(slot)->generation, (*s1)->backend(slot)->generation);
  }
  EXPECT_EQ((*s2)->generation(), (*s1)->generation() + 1);
}

TEST(SnapshotBuilderTest, DrainingAndDownBackendsTakeNoEntries) {
  auto c = BaseConfig();
  c.services[0].backends[0].state = BackendState::kDraining;
  c.services[0].backends[2].state = BackendState::kDown;
  SnapshotBuilder builder;
  auto snap = builder.Build(c);
  ASSERT_TRUE(snap.ok());
  for (uint16_t i : (*snap)->services()[0].maglev) EXPECT_EQ(i, 1) << "only backends[1] is active";
}

// The outer source of a backend's headers: the configured prefix, with its host bits
// (at most the low 32) taken from the flow hash.
TEST(EncapHeaderTest, SourceVariesOnlyHostBits) {
  SnapshotBuilder builder;
  auto snap = builder.Build(BaseConfig());
  ASSERT_TRUE(snap.ok());
  const auto prefix4 = *IpPrefix::Parse("10.255.0.0/24");
  const auto prefix6 = *IpPrefix::Parse("fd00:ff::/120");
  const auto& backends = (*snap)->services()[0].backend_slots;
  const EncapHeader& h4 = (*snap)->backend(backends[0])->encap;
  const EncapHeader& h6 = (*snap)->backend(backends[2])->encap;
  ASSERT_EQ(h4.len, 14 + 20);
  ASSERT_EQ(h6.len, 14 + 40);
  std::set<IpAddress> seen;
  for (uint32_t h = 0; h < 4096; h += 7) {
    const uint32_t low4 = htonl(h4.SourceLow(FlowHash(&h, 4)));
    const IpAddress a = IpAddress::FromV4Bytes(&low4);
    EXPECT_TRUE(prefix4.Contains(a)) << a.ToString();
    seen.insert(a);
    uint8_t v6[16];
    std::memcpy(v6, &h6.bytes[14 + 8], 12);  // the fixed part, from the header
    const uint32_t low6 = htonl(h6.SourceLow(h));
    std::memcpy(v6 + 12, &low6, 4);
    EXPECT_TRUE(prefix6.Contains(IpAddress::FromV6Bytes(v6))) << h;
  }
  EXPECT_GT(seen.size(), 200u);
}

// NAT services' backends get no encapsulation header.
TEST(EncapHeaderTest, NoneForNat) {
  auto c = BaseConfig();
  c.services[0].mode = ForwardingMode::kNat;
  c.services[0].backends.pop_back();  // no 4 <-> 6 translation
  c.nat.addresses = {Addr("10.254.0.1")};
  SnapshotBuilder builder;
  auto snap = builder.Build(c);
  ASSERT_TRUE(snap.ok()) << snap.status();
  for (uint32_t slot : (*snap)->services()[0].backend_slots) EXPECT_EQ((*snap)->backend(slot)->encap.len, 0);
}

}  // namespace
}  // namespace lb::dataplane
