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
  ExpectInvalid(c, C::kInvalidArgument, "services[0].table_size: 300 must be 0 (by the backend count) or a prime");
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
  EXPECT_EQ(s.FindService(Addr("10.1.0.10"), IPPROTO_UDP, htons(53)), s.services()[0].get());
  EXPECT_EQ(s.FindService(Addr("10.1.0.10"), IPPROTO_UDP, htons(54)), s.services()[1].get());
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

// The backend in `slot` of the snapshot's first service, or nullptr for a free slot.
const BackendRecord* BackendAt(const Snapshot& s, uint32_t slot) {
  const ServiceRecord& svc = s.service(0);
  return slot < svc.backends.size() && svc.backends[slot].in_use ? &svc.backends[slot] : nullptr;
}

// A backend keeps its slot while it exists; a removed backend's slot is free, and a new
// backend that reuses it gets another generation.
TEST(SnapshotBuilderTest, BackendSlotsAreStable) {
  SnapshotBuilder builder;
  auto c = BaseConfig();
  auto s1 = builder.Build(c);
  ASSERT_TRUE(s1.ok());
  const auto slots1 = (*s1)->service(0).backend_slots;
  ASSERT_EQ(slots1.size(), 3u);

  // Reordered and with one added: same slots for the same backends.
  std::swap(c.services[0].backends[0], c.services[0].backends[2]);
  c.services[0].backends.push_back({Addr("192.168.10.4")});
  auto s2 = builder.Build(c);
  ASSERT_TRUE(s2.ok());
  const auto& slots2 = (*s2)->service(0).backend_slots;
  EXPECT_EQ(slots2[0], slots1[2]);
  EXPECT_EQ(slots2[2], slots1[0]);
  EXPECT_EQ(slots2[1], slots1[1]);
  EXPECT_GT((*s2)->generation(), (*s1)->generation());

  // Removing 192.168.10.2 frees its slot; the next new backend reuses it.
  const uint32_t removed_slot = slots2[1];
  const uint32_t old_gen = BackendAt(**s2, removed_slot)->generation;
  c.services[0].backends.erase(c.services[0].backends.begin() + 1);
  auto s3 = builder.Build(c);
  ASSERT_TRUE(s3.ok());
  EXPECT_EQ(BackendAt(**s3, removed_slot), nullptr);
  c.services[0].backends.push_back({Addr("192.168.10.5")});
  auto s4 = builder.Build(c);
  ASSERT_TRUE(s4.ok());
  const BackendRecord* reused = BackendAt(**s4, removed_slot);
  ASSERT_NE(reused, nullptr);
  EXPECT_EQ(reused->address, Addr("192.168.10.5"));
  EXPECT_NE(reused->generation, old_gen);
}

TEST(SnapshotBuilderTest, BackendsAreFoundByAddressAndPort) {
  SnapshotBuilder builder;
  auto c = BaseConfig();
  // Slots that do not follow address order, and one address on two ports.
  c.services[0].backends = {{Addr("192.168.10.9")}, {Addr("fd00::3")}, {Addr("192.168.10.1")}, {Addr("192.168.10.1")}};
  c.services[0].backends[3].port = 5353;
  auto snap = builder.Build(c);
  ASSERT_TRUE(snap.ok()) << snap.status();
  const ServiceRecord& svc = (*snap)->service(0);
  for (size_t j = 0; j < c.services[0].backends.size(); ++j) {
    const BackendConfig& b = c.services[0].backends[j];
    uint32_t slot = 99;
    const BackendRecord* found = svc.FindBackend(b.address, b.port, &slot);
    ASSERT_NE(found, nullptr) << b.address.ToString() << ":" << b.port;
    EXPECT_EQ(slot, svc.backend_slots[j]);
    EXPECT_EQ(found->address, b.address);
    EXPECT_EQ(found->port, b.port);
  }
  uint32_t slot;
  EXPECT_EQ(svc.FindBackend(Addr("192.168.10.2"), 0, &slot), nullptr);
  EXPECT_EQ(svc.FindBackend(Addr("192.168.10.9"), 53, &slot), nullptr);
  EXPECT_EQ(svc.FindBackend(Addr("fe00::1"), 0, &slot), nullptr);
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
  EXPECT_EQ((*s2)->service(0).backend_slots, (*s1)->service(0).backend_slots);
  for (uint32_t slot : (*s2)->service(0).backend_slots) {
    EXPECT_EQ(BackendAt(**s2, slot)->generation, BackendAt(**s1, slot)->generation);
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
  for (uint16_t i : (*snap)->service(0).maglev()) EXPECT_EQ(i, 1) << "only backends[1] is active";
}

// The outer source of a backend's headers: the configured prefix, with its host bits
// (at most the low 32) taken from the flow hash.
TEST(EncapHeaderTest, SourceVariesOnlyHostBits) {
  SnapshotBuilder builder;
  auto snap = builder.Build(BaseConfig());
  ASSERT_TRUE(snap.ok());
  const auto prefix4 = *IpPrefix::Parse("10.255.0.0/24");
  const auto prefix6 = *IpPrefix::Parse("fd00:ff::/120");
  const auto& backends = (*snap)->service(0).backend_slots;
  const EncapHeader& h4 = BackendAt(**snap, backends[0])->encap;
  const EncapHeader& h6 = BackendAt(**snap, backends[2])->encap;
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
  for (uint32_t slot : (*snap)->service(0).backend_slots) EXPECT_EQ(BackendAt(**snap, slot)->encap.len, 0);
}

// A change rebuilds what it touches: an untouched service keeps its record, a service
// whose Maglev inputs are the same keeps its table, and any change of the inputs makes a
// new one (the table is only ever shared, never modified).
TEST(SnapshotBuilderTest, SharesWhatAChangeDoesNotTouch) {
  SnapshotBuilder builder;
  auto c = BaseConfig();
  c.services.push_back(c.services[0]);
  c.services[1].port = 5353;
  auto s1 = builder.Build(c);
  ASSERT_TRUE(s1.ok());
  const auto table1 = (*s1)->service(0).maglev_table();

  // Another service changes: this one's record is rebuilt by Build() (it rebuilds every
  // service) but shares its table.
  c.services[1].backends.pop_back();
  auto s2 = builder.Build(c);
  ASSERT_TRUE(s2.ok());
  EXPECT_EQ((*s2)->service(0).maglev_table(), table1);
  EXPECT_NE((*s2)->service(1).maglev_table(), (*s1)->service(1).maglev_table());

  // A new draining backend takes no entries: same table. A weight change: a new one.
  c.services[0].backends.push_back({Addr("192.168.10.9"), 0, 1, BackendState::kDraining});
  auto s3 = builder.Build(c);
  ASSERT_TRUE(s3.ok());
  EXPECT_EQ((*s3)->service(0).maglev_table(), table1);
  c.services[0].backends[0].weight = 3;
  auto s4 = builder.Build(c);
  ASSERT_TRUE(s4.ok());
  EXPECT_NE((*s4)->service(0).maglev_table(), table1);
  // The same backends with new weights give the table a fresh build would give.
  SnapshotBuilder fresh;
  auto s5 = fresh.Build(c);
  ASSERT_TRUE(s5.ok());
  const auto a = (*s4)->service(0).maglev(), b = (*s5)->service(0).maglev();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ((*s4)->service(0).backends[a[i]].address, (*s5)->service(0).backends[b[i]].address) << i;
  }
}

// Generations are unique across services: a flow pinned in a deleted service is not
// taken for a backend of the service that replaces it, even in the same slot.
TEST(SnapshotBuilderTest, RecreatedServiceGetsNewGenerations) {
  SnapshotBuilder builder;
  auto c = BaseConfig();
  auto s1 = builder.Build(c);
  ASSERT_TRUE(s1.ok());
  const std::vector<BackendRecord> before = (*s1)->service(0).backends;
  auto without = c;
  without.services.clear();
  ASSERT_TRUE(builder.Build(without).ok());
  auto s3 = builder.Build(c);
  ASSERT_TRUE(s3.ok());
  for (size_t slot = 0; slot < before.size(); ++slot) {
    EXPECT_EQ((*s3)->service(0).Backend(uint32_t(slot), before[slot].generation), nullptr) << slot;
  }
}

TEST(MaglevTableSizeTest, FollowsTheBackendCount) {
  EXPECT_EQ(MaglevTableSizeFor(0), 1021u);
  EXPECT_EQ(MaglevTableSizeFor(3), 1021u);
  EXPECT_EQ(MaglevTableSizeFor(10), 1021u);
  EXPECT_EQ(MaglevTableSizeFor(11), 4093u);
  EXPECT_EQ(MaglevTableSizeFor(100), 16381u);
  EXPECT_EQ(MaglevTableSizeFor(164), 65537u);
  EXPECT_EQ(MaglevTableSizeFor(65535), kMaxMaglevTableSize);
  for (uint32_t n : {1u, 7u, 40u, 500u, 5000u, 40000u}) {
    EXPECT_TRUE(IsPrime(MaglevTableSizeFor(n)));
    EXPECT_GE(MaglevTableSizeFor(n), std::min<uint64_t>(100 * n, kMaxMaglevTableSize));
  }
  ServiceConfig s;
  s.backends.resize(3);
  EXPECT_EQ(EffectiveTableSize(s), 1021u);
  s.table_size = 65537;
  EXPECT_EQ(EffectiveTableSize(s), 65537u);
}

}  // namespace
}  // namespace lb::dataplane
