#include "control/control_core.h"

#include "control/metrics.h"

#include <arpa/inet.h>
#include <unistd.h>

#include <regex>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace lb::control {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

IpAddress Addr(const char* s) { return *IpAddress::Parse(s); }

ServiceConfig Dns(std::vector<const char*> backends, const char* vip = "10.1.0.10") {
  ServiceConfig s;
  s.vip = Addr(vip);
  s.protocol = IPPROTO_UDP;
  s.port = 53;
  s.table_size = 251;
  for (const char* b : backends) s.backends.push_back({Addr(b)});
  return s;
}

NodeSettings Settings() {
  NodeSettings n;
  n.encap.source_v4 = *IpPrefix::Parse("10.255.0.1/32");
  n.limits.max_services = 8;
  return n;
}

class FakeProbe : public DataplaneProbe {
 public:
  std::vector<WorkerView> Workers() const override { return {{0, 1, &counters, 10, 100}, {1, 2, &counters, 5, 100}}; }
  std::vector<std::string> HealthProblems() const override { return problems; }
  bool LinksUp() const override { return problems.empty(); }
  uint32_t WorkersAlive() const override { return 2; }
  std::optional<FlowLocation> FindFlow(const FlowKey&) override { return flow; }
  std::vector<PortView> Ports() const override { return ports; }

  dataplane::WorkerCounters counters;
  std::vector<PortView> ports;
  std::vector<std::string> problems;
  std::optional<FlowLocation> flow;
};

class ControlCoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = dataplane::SnapshotStore::Create(1);
    ASSERT_TRUE(store.ok());
    store_ = *std::move(store);
    core_ = std::make_unique<ControlCore>(Settings(), store_.get(), &probe_);
    ASSERT_TRUE(core_->Start().ok());
  }
  uint64_t SnapshotGeneration() const { return store_->current()->generation(); }

  std::unique_ptr<dataplane::SnapshotStore> store_;
  FakeProbe probe_;
  std::unique_ptr<ControlCore> core_;
};

TEST_F(ControlCoreTest, CreateGetListDelete) {
  auto created = core_->CreateService(Dns({"192.168.1.1", "192.168.1.2"}));
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->id, 1u);
  const ServiceId id = IdOf(created->config);
  EXPECT_EQ(id.ToString(), "10.1.0.10:53/udp");
  ASSERT_NE(store_->current()->FindService(Addr("10.1.0.10"), IPPROTO_UDP, htons(53)), nullptr)
      << "published to the dataplane";

  auto again = core_->CreateService(Dns({"192.168.1.9"}));
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(std::string(again.status().message()), HasSubstr("10.1.0.10:53/udp already exists (id 1)"));

  ASSERT_TRUE(core_->CreateService(Dns({"192.168.1.3"}, "10.1.0.11")).ok());
  const auto list = core_->ListServices();
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0].id, 1u);
  EXPECT_EQ(list[1].id, 2u);
  EXPECT_EQ(core_->GetService(id)->config.backends.size(), 2u);

  ASSERT_TRUE(core_->DeleteService(id).ok());
  EXPECT_EQ(core_->GetService(id).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(core_->DeleteService(id).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->current()->FindService(Addr("10.1.0.10"), IPPROTO_UDP, htons(53)), nullptr);
}

TEST_F(ControlCoreTest, InvalidRequestsNameTheFieldAndChangeNothing) {
  ASSERT_TRUE(core_->CreateService(Dns({"192.168.1.1"})).ok());
  const uint64_t generation = SnapshotGeneration();
  auto bad = Dns({"192.168.1.1"}, "10.1.0.11");
  bad.backends[0].weight = 100000;
  auto r = core_->CreateService(bad);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("service.backends[0].weight"));
  auto v6 = Dns({"fd00::1"}, "10.1.0.12");
  EXPECT_THAT(std::string(core_->CreateService(v6).status().message()),
              HasSubstr("service.backends[0].address: fd00::1 is IPv6 but encap.source_v6 is not set"));
  auto dup = core_->AddBackend(IdOf(Dns({})), {Addr("192.168.1.1")});
  EXPECT_EQ(dup.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(core_->RemoveBackend(IdOf(Dns({})), Addr("192.168.9.9"), 0).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(core_->ListServices().size(), 1u);
  EXPECT_EQ(SnapshotGeneration(), generation) << "nothing was published";
}

// Addresses that would hijack or loop traffic are refused, naming the field and why.
TEST_F(ControlCoreTest, AddressesThatLoopOrAreNotHostsAreRefused) {
  const std::pair<const char*, const char*> bad_backends[] = {
      {"127.0.0.1", "loopback address, never a backend"},
      {"224.0.0.1", "multicast address"},
      {"255.255.255.255", "broadcast address"},
      {"169.254.169.254", "link-local address"},
      {"0.0.0.0", "must be set"},
      {"10.1.0.10", "the service's own VIP"},
  };
  for (const auto& [address, why] : bad_backends) {
    auto r = core_->CreateService(Dns({address}));
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << address;
    EXPECT_THAT(std::string(r.status().message()), HasSubstr("service.backends[0].address")) << address;
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(why)) << address;
  }
  for (const char* vip : {"224.0.0.5", "127.0.0.2", "169.254.1.1", "ff02::1", "fe80::1", "::1"}) {
    auto r = core_->CreateService(Dns({"192.168.1.1"}, vip));
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << vip;
    EXPECT_THAT(std::string(r.status().message()), HasSubstr("service.vip: ")) << vip;
  }
  auto own = core_->CreateService(Dns({"192.168.1.1"}, "10.255.0.1"));
  EXPECT_THAT(std::string(own.status().message()), HasSubstr("encapsulation source addresses"));

  // Another service's VIP as a backend, or a new VIP that is another service's backend.
  ASSERT_TRUE(core_->CreateService(Dns({"192.168.1.1"})).ok());
  auto loop = core_->CreateService(Dns({"10.1.0.10"}, "10.1.0.11"));
  EXPECT_THAT(std::string(loop.status().message()), HasSubstr("backends[0].address: 10.1.0.10 is a VIP of this node"));
  auto reverse = core_->CreateService(Dns({"192.168.1.2"}, "192.168.1.1"));
  EXPECT_THAT(std::string(reverse.status().message()),
              HasSubstr("vip: 192.168.1.1 is a backend of service 10.1.0.10:53/udp"));
  EXPECT_EQ(core_->AddBackend(IdOf(Dns({})), {Addr("10.1.0.10")}).status().code(), absl::StatusCode::kInvalidArgument);
  // In an Apply: refused alone when partial.
  auto r = core_->Apply(1, {Dns({"192.168.1.1"}), Dns({"10.1.0.10"}, "10.1.0.12")}, /*partial=*/true);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->refused, 1u);
  EXPECT_THAT(std::string(r->outcomes[1].status.message()),
              HasSubstr("services[1].backends[0].address: 10.1.0.10 is a VIP"));
  EXPECT_EQ(core_->ListServices().size(), 1u);
}

// With --vip_cidrs, a VIP outside them is refused: the node's own address (outside them)
// cannot be made a VIP that would take its BGP session.
TEST(ControlCoreVipCidrsTest, VipsOutsideTheAnnouncedPrefixesAreRefused) {
  auto store = dataplane::SnapshotStore::Create(1);
  ASSERT_TRUE(store.ok());
  NodeSettings settings = Settings();
  settings.vip_cidrs = {*IpPrefix::Parse("10.1.0.0/24")};
  ControlCore core(settings, store->get(), nullptr);
  ASSERT_TRUE(core.Start().ok());
  auto node = Dns({"192.168.1.1"}, "10.90.0.2");
  node.port = 179;
  node.protocol = IPPROTO_TCP;
  auto r = core.CreateService(node);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("service.vip: 10.90.0.2 is outside the prefixes this node announces (lbd --vip_cidrs: "
                        "10.1.0.0/24)"));
  EXPECT_TRUE(core.CreateService(Dns({"192.168.1.1"}, "10.1.0.10")).ok());
}

TEST(ControlCoreLimitsTest, BackendsOnlyInTheAllowedPrefixes) {
  NodeSettings settings = Settings();
  settings.limits.backend_cidrs = {*IpPrefix::Parse("10.244.0.0/16")};
  settings.limits.node_addresses = {Addr("10.244.0.1")};  // e.g. the node's cni0
  settings.nat.addresses = {Addr("10.254.0.1")};
  auto store = dataplane::SnapshotStore::Create(1);
  ASSERT_TRUE(store.ok());
  ControlCore core(settings, store->get(), nullptr);
  ASSERT_TRUE(core.Start().ok());
  EXPECT_TRUE(core.CreateService(Dns({"10.244.1.5"})).ok());
  auto outside = core.CreateService(Dns({"192.168.1.1"}, "10.1.0.11"));
  EXPECT_THAT(std::string(outside.status().message()), HasSubstr("outside the backend prefixes this node allows"));
  auto snat_vip = core.CreateService(Dns({"10.244.1.5"}, "10.254.0.1"));
  EXPECT_THAT(std::string(snat_vip.status().message()), HasSubstr("vip: 10.254.0.1 is an SNAT address"));
  auto snat_backend = core.CreateService(Dns({"10.254.0.1"}, "10.1.0.12"));
  EXPECT_THAT(std::string(snat_backend.status().message()),
              HasSubstr("backends[0].address: 10.254.0.1 is an SNAT address"));
  auto own = core.CreateService(Dns({"10.244.1.6", "10.244.0.1"}, "10.1.0.13"));
  EXPECT_THAT(std::string(own.status().message()),
              HasSubstr("backends[1].address: 10.244.0.1 is an LB node's own address"));
}

TEST_F(ControlCoreTest, ServiceLimitIsResourceExhausted) {
  for (int i = 0; i < 8; ++i) {
    const std::string vip = "10.1.0." + std::to_string(20 + i);
    ASSERT_TRUE(core_->CreateService(Dns({"192.168.1.1"}, vip.c_str())).ok());
  }
  EXPECT_EQ(core_->CreateService(Dns({"192.168.1.1"}, "10.1.0.99")).status().code(),
            absl::StatusCode::kResourceExhausted);
}

TEST_F(ControlCoreTest, BackendStateAndWeightReachTheMaglevTable) {
  ASSERT_TRUE(core_->CreateService(Dns({"192.168.1.1", "192.168.1.2"})).ok());
  const ServiceId id = IdOf(Dns({}));
  auto drained = core_->UpdateBackend(id, Addr("192.168.1.1"), 0, {.state = BackendState::kDraining});
  ASSERT_TRUE(drained.ok()) << drained.status();
  const auto* rec = store_->current()->FindService(id.vip, id.protocol, htons(id.port));
  ASSERT_NE(rec, nullptr);
  for (uint16_t i : rec->maglev()) EXPECT_EQ(i, 1) << "only 192.168.1.2 takes new flows";

  ASSERT_TRUE(core_->UpdateBackend(id, Addr("192.168.1.1"), 0, {.weight = 3, .state = BackendState::kActive}).ok());
  const Stats stats = core_->GetStats({.service = id});
  ASSERT_EQ(stats.services.size(), 1u);
  const auto& entries = stats.services[0].backends;
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_NEAR(double(entries[0].maglev_entries) / entries[1].maglev_entries, 3.0, 0.1);
}

TEST_F(ControlCoreTest, ApplyDiffsAndIsIdempotent) {
  ASSERT_TRUE(core_->CreateService(Dns({"192.168.1.1"}, "10.1.0.50")).ok());  // will be deleted
  auto a = Dns({"192.168.1.1"});
  auto b = Dns({"192.168.1.2"}, "10.1.0.11");
  auto r = core_->Apply(5, {a, b});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->created, 2u);
  EXPECT_EQ(r->deleted, 1u);
  EXPECT_EQ(r->generation, 5u);
  const uint64_t id_a = core_->GetService(IdOf(a))->id;
  const uint64_t snap = SnapshotGeneration();

  r = core_->Apply(5, {a, b});  // the watcher repeating itself
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->unchanged, 2u);
  EXPECT_EQ(SnapshotGeneration(), snap) << "a no-op publishes nothing";

  b.backends.push_back({Addr("192.168.1.3")});
  r = core_->Apply(6, {b, a});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->updated, 1u);
  EXPECT_EQ(r->unchanged, 1u);
  EXPECT_EQ(core_->GetService(IdOf(a))->id, id_a) << "ids are stable";

  EXPECT_EQ(core_->Apply(4, {a}).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(core_->Apply(6, {a}).status().code(), absl::StatusCode::kFailedPrecondition)
      << "generation 6 was applied with other services";
  EXPECT_EQ(core_->ListServices().size(), 2u);
}

TEST_F(ControlCoreTest, ApplyIsAllOrNothing) {
  ASSERT_TRUE(core_->Apply(1, {Dns({"192.168.1.1"})}).ok());
  auto bad = Dns({"192.168.1.2"}, "10.1.0.11");
  bad.table_size = 100;
  auto r = core_->Apply(2, {Dns({"192.168.1.5"}), bad});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("services[1].table_size"));
  r = core_->Apply(2, {Dns({"192.168.1.5"}), Dns({"192.168.1.6"})});
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("services[1]: same VIP, protocol and port as services[0]"));
  ASSERT_EQ(core_->ListServices().size(), 1u);
  EXPECT_EQ(core_->ListServices()[0].config.backends[0].address, Addr("192.168.1.1"));
  EXPECT_TRUE(core_->Apply(2, {Dns({"192.168.1.5"})}).ok()) << "generation 2 still free";
}

TEST_F(ControlCoreTest, ExplainFlow) {
  ASSERT_TRUE(core_->CreateService(Dns({"192.168.1.1", "192.168.1.2"})).ok());
  FlowKey key;
  key.src = Addr("192.0.2.1");
  key.dst = Addr("10.9.9.9");
  key.src_port_be = htons(1000);
  key.dst_port_be = htons(53);
  key.protocol = IPPROTO_UDP;
  auto e = core_->ExplainFlow(key);
  ASSERT_TRUE(e.ok());
  EXPECT_FALSE(e->vip);
  EXPECT_THAT(e->decision, HasSubstr("not a VIP"));

  key.dst = Addr("10.1.0.10");
  key.dst_port_be = htons(54);
  e = core_->ExplainFlow(key);
  EXPECT_TRUE(e->vip);
  EXPECT_THAT(e->decision, HasSubstr("no_service"));

  key.dst_port_be = htons(53);
  e = core_->ExplainFlow(key);
  ASSERT_TRUE(e->backend.has_value());
  EXPECT_THAT(e->decision, HasSubstr("maglev"));
  EXPECT_EQ(e->backend, e->maglev_backend);

  // A worker holds the flow on the other backend: the flow table wins.
  const auto* rec = store_->current()->FindService(Addr("10.1.0.10"), IPPROTO_UDP, htons(53));
  const uint32_t other = e->maglev_backend->address == Addr("192.168.1.1") ? 1 : 0;
  const uint32_t slot = rec->backend_slots[other];
  probe_.flow = FlowLocation{1, {true, slot, rec->backends[slot].generation}};
  e = core_->ExplainFlow(key);
  EXPECT_THAT(e->decision, HasSubstr("flow-table: worker 1"));
  EXPECT_NE(e->backend, e->maglev_backend);
  EXPECT_EQ(e->worker, 1);
}

TEST_F(ControlCoreTest, NeighborsMakeBackendsOnLink) {
  ASSERT_TRUE(core_->CreateService(Dns({"192.168.1.1", "192.168.1.2"})).ok());
  ASSERT_TRUE(core_->CreateService(Dns({"192.168.7.1"}, "10.1.0.11")).ok());
  const auto prefixes = std::vector<IpPrefix>{*IpPrefix::Parse("192.168.1.0/24")};
  auto unresolved = core_->UnresolvedOnLinkBackends(prefixes, 10);
  std::sort(unresolved.begin(), unresolved.end());
  EXPECT_EQ(unresolved, (std::vector<IpAddress>{Addr("192.168.1.1"), Addr("192.168.1.2")}));
  const auto* other_before = store_->current()->FindService(Addr("10.1.0.11"), IPPROTO_UDP, htons(53));
  const MacAddress mac = {2, 0, 0, 0, 0, 7};
  ASSERT_TRUE(core_->UpdateNeighbors({{Addr("192.168.1.2"), mac}, {Addr("192.168.1.254"), mac}}).ok());
  const auto* rec = store_->current()->FindService(Addr("10.1.0.10"), IPPROTO_UDP, htons(53));
  const dataplane::BackendRecord& b = rec->backends[rec->backend_slots[1]];
  EXPECT_TRUE(b.on_link);
  EXPECT_EQ(b.neighbor_mac, mac);
  EXPECT_FALSE(rec->backends[rec->backend_slots[0]].on_link);
  EXPECT_EQ(store_->current()->FindService(Addr("10.1.0.11"), IPPROTO_UDP, htons(53)), other_before)
      << "a service without the changed addresses keeps its record";
  EXPECT_EQ(core_->UnresolvedOnLinkBackends(prefixes, 10), std::vector<IpAddress>{Addr("192.168.1.1")});
  const Stats s = core_->GetStats({.service = IdOf(Dns({}))});
  ASSERT_EQ(s.services.size(), 1u);
  ASSERT_EQ(s.services[0].backends.size(), 2u);
  EXPECT_FALSE(s.services[0].backends[0].neighbor_mac.has_value());
  EXPECT_EQ(s.services[0].backends[1].neighbor_mac, mac);

  // The same entry again (a state change of the kernel's) publishes nothing.
  const uint64_t generation = SnapshotGeneration();
  ASSERT_TRUE(core_->UpdateNeighbors({{Addr("192.168.1.2"), mac}}).ok());
  EXPECT_EQ(SnapshotGeneration(), generation);
  // The entry goes: the backend is reached through the gateway again.
  ASSERT_TRUE(core_->UpdateNeighbors({{Addr("192.168.1.2"), std::nullopt}}).ok());
  rec = store_->current()->FindService(Addr("10.1.0.10"), IPPROTO_UDP, htons(53));
  EXPECT_FALSE(rec->backends[rec->backend_slots[1]].on_link);
}

// A change costs what it changes: a backend change rebuilds its own service's record and
// shares every other one with the snapshot before.
TEST_F(ControlCoreTest, ABackendChangeRebuildsOnlyItsService) {
  std::vector<ServiceConfig> services;
  for (int i = 0; i < 6; ++i) {
    services.push_back(Dns({"192.168.1.1", "192.168.1.2"}, ("10.1.0." + std::to_string(20 + i)).c_str()));
  }
  ASSERT_TRUE(core_->Apply(1, services).ok());
  std::vector<const dataplane::ServiceRecord*> before;
  for (const auto& s : services) before.push_back(store_->current()->FindService(s.vip, IPPROTO_UDP, htons(53)));
  const uint64_t generation = SnapshotGeneration();
  ASSERT_TRUE(core_->UpdateBackend(IdOf(services[2]), Addr("192.168.1.1"), 0, {.weight = 5}).ok());
  EXPECT_EQ(SnapshotGeneration(), generation + 1);
  for (size_t i = 0; i < services.size(); ++i) {
    const auto* now = store_->current()->FindService(services[i].vip, IPPROTO_UDP, htons(53));
    if (i == 2) {
      EXPECT_NE(now, before[i]);
    } else {
      EXPECT_EQ(now, before[i]) << i;
    }
  }
  // Apply with one service changed: the same.
  services[2].backends[0].weight = 5;  // as it is now
  services[4].backends.push_back({Addr("192.168.1.3")});
  auto r = core_->Apply(2, services);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->updated, 1u);
  EXPECT_EQ(r->unchanged, 5u);
  EXPECT_EQ(store_->current()->FindService(services[0].vip, IPPROTO_UDP, htons(53)), before[0]);
  EXPECT_NE(store_->current()->FindService(services[4].vip, IPPROTO_UDP, htons(53)), before[4]);
}

// A partial Apply refuses each bad service alone, says which field and why, and applies
// the rest; limits are counted in request order.
TEST_F(ControlCoreTest, PartialApplyRefusesServicesAlone) {
  auto keep = Dns({"192.168.1.1"});
  auto bad = Dns({"192.168.1.2"}, "10.1.0.11");
  ASSERT_TRUE(core_->Apply(1, {keep, bad}).ok());
  bad.table_size = 100;  // not a prime
  auto other = Dns({"192.168.1.3"}, "10.1.0.12");
  auto r = core_->Apply(2, {keep, bad, other}, /*partial=*/true);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->unchanged, 1u);
  EXPECT_EQ(r->created, 1u);
  EXPECT_EQ(r->refused, 1u);
  EXPECT_EQ(r->deleted, 0u) << "a refused service is reported as refused, not deleted";
  ASSERT_EQ(r->outcomes.size(), 3u);
  EXPECT_EQ(r->outcomes[1].kind, ServiceOutcome::Kind::kRefused);
  EXPECT_EQ(r->outcomes[1].index, 1);
  EXPECT_EQ(r->outcomes[1].status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r->outcomes[1].status.message()), HasSubstr("services[1].table_size: 100 must be"));
  EXPECT_THAT(std::string(r->outcomes[1].status.message()), HasSubstr("(the version in force stays)"));
  auto in_force = core_->GetService(IdOf(bad));
  ASSERT_TRUE(in_force.ok()) << "a refused update leaves the service as it was";
  EXPECT_EQ(in_force->config.table_size, 251u);
  EXPECT_TRUE(core_->GetService(IdOf(other)).ok());
  // A refused new service is absent afterwards.
  auto bad_new = Dns({"192.168.1.2"}, "10.1.0.13");
  bad_new.table_size = 100;
  r = core_->Apply(0, {keep, bad, other, bad_new}, /*partial=*/true);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->outcomes[3].kind, ServiceOutcome::Kind::kRefused);
  EXPECT_EQ(core_->GetService(IdOf(bad_new)).status().code(), absl::StatusCode::kNotFound);

  // Limits (8 services here): the first eight in request order are kept.
  std::vector<ServiceConfig> many;
  for (int i = 0; i < 10; ++i) many.push_back(Dns({"192.168.1.1"}, ("10.1.0." + std::to_string(30 + i)).c_str()));
  r = core_->Apply(3, many, /*partial=*/true);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->created, 8u);
  EXPECT_EQ(r->refused, 2u);
  EXPECT_EQ(r->outcomes[8].status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(r->outcomes[8].status.message()), HasSubstr("services[8]: lbd holds at most 8 services"));
  EXPECT_TRUE(core_->GetService(IdOf(many[7])).ok());
  EXPECT_FALSE(core_->GetService(IdOf(many[9])).ok());
  // All or nothing (the default) refuses the same request whole.
  EXPECT_EQ(core_->Apply(4, many).status().code(), absl::StatusCode::kResourceExhausted);
}

// A Service that grows beyond a limit (here: max_services, 8, and the table memory) is
// refused its growth; the services that serve keep serving, wherever the grower stands in
// the request (the watcher sends the oldest Service first, and its new ports with it).
TEST_F(ControlCoreTest, GrowthBeyondALimitNeverEvictsAServingService) {
  std::vector<ServiceConfig> serving;
  for (int i = 0; i < 8; ++i) serving.push_back(Dns({"192.168.1.1"}, ("10.1.0." + std::to_string(30 + i)).c_str()));
  ASSERT_TRUE(core_->Apply(1, serving).ok());
  // The oldest grows by two ports, sent right after it.
  std::vector<ServiceConfig> grown = {serving[0]};
  for (uint16_t port : {54, 55}) {
    auto more = serving[0];
    more.port = port;
    grown.push_back(more);
  }
  grown.insert(grown.end(), serving.begin() + 1, serving.end());
  auto r = core_->Apply(2, grown, /*partial=*/true);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->unchanged, 8u);
  EXPECT_EQ(r->refused, 2u);
  EXPECT_EQ(r->deleted, 0u);
  ASSERT_EQ(r->outcomes.size(), 10u);
  EXPECT_EQ(r->outcomes[1].kind, ServiceOutcome::Kind::kRefused) << "reported in the request's order";
  EXPECT_EQ(r->outcomes[2].kind, ServiceOutcome::Kind::kRefused);
  for (const ServiceConfig& s : serving) EXPECT_TRUE(core_->GetService(IdOf(s)).ok()) << IdOf(s).ToString();
  // An update that grows one beyond the table memory: refused, and it keeps its tables.
  NodeSettings settings = Settings();
  settings.limits.max_table_memory = 4 * (251 * 2 + 128) + 100;
  auto store = dataplane::SnapshotStore::Create(1);
  ASSERT_TRUE(store.ok());
  ControlCore core(settings, store->get(), nullptr);
  ASSERT_TRUE(core.Start().ok());
  const std::vector<ServiceConfig> three(serving.begin(), serving.begin() + 3);
  ASSERT_TRUE(core.Apply(1, three).ok());
  std::vector<ServiceConfig> bigger = three;
  bigger[0].table_size = 1021;
  bigger.push_back(Dns({"192.168.1.1"}, "10.1.0.50"));  // and a new one, which fits beside the old tables
  r = core.Apply(2, bigger, /*partial=*/true);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->outcomes[0].kind, ServiceOutcome::Kind::kRefused);
  EXPECT_THAT(std::string(r->outcomes[0].status.message()), HasSubstr("max_table_memory"));
  EXPECT_EQ(r->unchanged, 2u);
  EXPECT_EQ(r->outcomes[3].kind, ServiceOutcome::Kind::kCreated);
  EXPECT_EQ(core.GetService(IdOf(three[0]))->config.table_size, 251u);
  EXPECT_EQ(core.GetStats().table_memory, 4u * (251 * 2 + 128));
}

// Table memory is bounded in all, counted from the configuration (the same on every node).
TEST_F(ControlCoreTest, TableMemoryIsBounded) {
  NodeSettings settings = Settings();
  settings.limits.max_table_memory = 3 * (1021 * 2 + 128);
  auto store = dataplane::SnapshotStore::Create(1);
  ASSERT_TRUE(store.ok());
  ControlCore core(settings, store->get(), nullptr);
  ASSERT_TRUE(core.Start().ok());
  auto auto_sized = Dns({"192.168.1.1"});
  auto_sized.table_size = 0;  // by the backend count: 1021 for one backend
  for (int i = 0; i < 3; ++i) {
    auto s = auto_sized;
    s.vip = Addr(("10.1.0." + std::to_string(40 + i)).c_str());
    ASSERT_TRUE(core.CreateService(s).ok());
  }
  EXPECT_EQ(core.GetStats().table_memory, 3u * (1021 * 2 + 128));
  EXPECT_EQ(core.GetService(IdOf(auto_sized)).status().code(), absl::StatusCode::kNotFound);
  auto_sized.vip = Addr("10.1.0.99");
  auto r = core.CreateService(auto_sized);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("max_table_memory"));
  // A backend more needs a bigger record: refused too, and nothing changes.
  auto grow = core.AddBackend(IdOf([&] {
                                auto s = auto_sized;
                                s.vip = Addr("10.1.0.40");
                                return s;
                              }()),
                              {Addr("192.168.1.2")});
  EXPECT_EQ(grow.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(core.GetStats().table_memory, 3u * (1021 * 2 + 128));
}

TEST_F(ControlCoreTest, StatsAndHealth) {
  probe_.counters.Add(dataplane::Event::kForwarded, 7);
  probe_.counters.Add(dataplane::DropReason::kNoService, 2);
  const Stats s = core_->GetStats();
  EXPECT_EQ(s.events[size_t(dataplane::Event::kForwarded)], 14u) << "summed over two workers";
  EXPECT_EQ(s.drops[size_t(dataplane::DropReason::kNoService)], 4u);
  EXPECT_EQ(s.flows, 15u);
  EXPECT_EQ(s.flow_capacity, 200u);
  EXPECT_TRUE(core_->GetHealth().healthy);
  ASSERT_TRUE(core_->SetDrained(true).ok());
  EXPECT_FALSE(core_->GetHealth().healthy);
  EXPECT_TRUE(core_->GetHealth().drained);
  ASSERT_TRUE(core_->SetDrained(false).ok());
  EXPECT_TRUE(core_->GetHealth().healthy);
  probe_.problems = {"port 0: link down"};
  const Health h = core_->GetHealth();
  EXPECT_FALSE(h.healthy);
  EXPECT_EQ(h.problems, probe_.problems);
}

TEST_F(ControlCoreTest, AwaitingTheFirstApplyIsUnhealthyUntilOneSucceeds) {
  core_->AwaitFirstApply();
  Health h = core_->GetHealth();
  EXPECT_FALSE(h.healthy);
  ASSERT_EQ(h.problems.size(), 1u);
  EXPECT_THAT(h.problems[0], ::testing::HasSubstr("waiting for the first Apply"));
  // Services made one by one are not the cluster's configuration; a failed Apply neither.
  ASSERT_TRUE(core_->CreateService(Dns({"192.168.1.1"})).ok());
  EXPECT_FALSE(core_->Apply(1, {Dns({"10.1.0.10"})}).ok()) << "its own VIP as a backend loops";
  EXPECT_FALSE(core_->GetHealth().healthy);
  // An empty cluster is a complete configuration too.
  ASSERT_TRUE(core_->Apply(2, {}).ok());
  EXPECT_TRUE(core_->GetHealth().healthy);
}

TEST_F(ControlCoreTest, ADrainInItsFileSurvivesARestart) {
  const std::string file = ::testing::TempDir() + "/drained." + std::to_string(getpid());
  unlink(file.c_str());
  ASSERT_TRUE(core_->PersistDrainIn(file).ok());
  EXPECT_FALSE(core_->GetHealth().drained);
  ASSERT_TRUE(core_->SetDrained(true).ok());
  EXPECT_EQ(access(file.c_str(), F_OK), 0) << "recorded";

  // lbd restarts: a new core over the same file starts drained.
  ControlCore restarted(Settings(), store_.get(), &probe_);
  ASSERT_TRUE(restarted.PersistDrainIn(file).ok());
  EXPECT_TRUE(restarted.GetHealth().drained);
  EXPECT_FALSE(restarted.GetHealth().healthy);
  ASSERT_TRUE(restarted.SetDrained(false).ok());
  EXPECT_NE(access(file.c_str(), F_OK), 0) << "removed on undrain";

  // A drain it cannot record is refused and changes nothing.
  ControlCore unwritable(Settings(), store_.get(), &probe_);
  ASSERT_TRUE(unwritable.PersistDrainIn("/nonexistent-dir/drained").ok());
  EXPECT_EQ(unwritable.SetDrained(true).code(), absl::StatusCode::kUnavailable);
  EXPECT_FALSE(unwritable.GetHealth().drained);
}

TEST_F(ControlCoreTest, PrometheusMetrics) {
  ASSERT_TRUE(core_->CreateService(Dns({"192.168.1.1", "192.168.1.2"})).ok());
  probe_.counters.Add(dataplane::DropReason::kNoBackend, 3);
  const std::string text = RenderPrometheus(core_->GetStats({.top_backends = 1}), core_->GetHealth());
  EXPECT_THAT(text, HasSubstr("# TYPE lb_drops_total counter\n"));
  EXPECT_THAT(text, HasSubstr("lb_drops_total{worker=\"1\",reason=\"no_backend\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("lb_events_total{worker=\"0\",event=\"rx_packets\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("lb_backend_maglev_entries{service=\"10.1.0.10:53/"
                              "udp\",backend=\"192.168.1.1\",port=\"0\"} "));
  EXPECT_THAT(text, Not(HasSubstr("backend=\"192.168.1.2\""))) << "one backend asked for";
  EXPECT_THAT(text, HasSubstr("lb_service_packets_total{service=\"10.1.0.10:53/udp\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("lb_service_backends{service=\"10.1.0.10:53/udp\",state=\"active\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("lb_healthy 1\n"));
  EXPECT_THAT(text, HasSubstr("lb_backends 2\n"));
  EXPECT_THAT(text, HasSubstr("lb_table_memory_bytes 758\n")) << "251 entries x 2 + 2 backends x 128";
  EXPECT_THAT(text, HasSubstr("lb_flows{worker=\"0\"} 10\n"));
}

TEST_F(ControlCoreTest, PortCountersReachStatsAndMetrics) {
  probe_.ports = {
      {.name = "0000:3b:00.0",
       .role = "wire",
       .driver = "net_ice",
       .link_up = true,
       .counters = {.rx_packets = 1000,
                    .tx_packets = 990,
                    .rx_bytes = 64000,
                    .tx_bytes = 80000,
                    .rx_missed = 7,
                    .rx_errors = 1,
                    .tx_errors = 2,
                    .rx_nombuf = 3}},
      {.name = "lb0", .role = "exception", .driver = "net_tap", .link_up = true, .counters = {.rx_packets = 5}}};
  const auto stats = core_->GetStats();
  ASSERT_EQ(stats.ports.size(), 2u);
  EXPECT_EQ(stats.ports[0].counters.rx_missed, 7u);
  const std::string text = RenderPrometheus(stats, core_->GetHealth());
  EXPECT_THAT(text, HasSubstr("lb_port_rx_missed_total{port=\"0000:3b:00.0\",role=\"wire\"} 7\n"));
  EXPECT_THAT(text, HasSubstr("lb_port_rx_nombuf_total{port=\"0000:3b:00.0\",role=\"wire\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("lb_port_tx_errors_total{port=\"0000:3b:00.0\",role=\"wire\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("lb_port_rx_packets_total{port=\"lb0\",role=\"exception\"} 5\n"));
  EXPECT_THAT(text, HasSubstr("lb_port_up{port=\"lb0\",role=\"exception\"} 1\n"));
}

// Prometheus's conventions: every name is lb_..., and ends in _total exactly when it is a
// counter (lb_snat_ports was once a gauge named lb_snat_ports_total).
TEST_F(ControlCoreTest, MetricNamesFollowPrometheusConventions) {
  ASSERT_TRUE(core_->CreateService(Dns({"192.168.1.1"})).ok());
  auto stats = core_->GetStats();
  stats.snat.push_back({.address = *IpAddress::Parse("10.254.0.1"), .ports_in_use = 1, .ports_total = 64512});
  stats.ports.push_back({.name = "net_ring_wire", .role = "wire"});
  const std::string text = RenderPrometheus(stats, core_->GetHealth());
  static const std::regex kType(R"(# TYPE (\S+) (\S+))");
  int seen = 0;
  for (std::sregex_iterator it(text.begin(), text.end(), kType), end; it != end; ++it, ++seen) {
    const std::string name = (*it)[1], type = (*it)[2];
    EXPECT_EQ(name.rfind("lb_", 0), 0u) << name;
    EXPECT_EQ(name.size() > 6 && name.substr(name.size() - 6) == "_total", type == "counter") << name << " " << type;
  }
  EXPECT_GT(seen, 10);
  EXPECT_THAT(text, HasSubstr("lb_snat_ports{address=\"10.254.0.1\"} 64512\n"));
}

// --- Traffic per service and backend ------------------------------------------------

class ControlCoreTrafficTest : public ::testing::Test {
 protected:
  void Start(NodeSettings settings, uint32_t services, uint32_t backends) {
    auto store = dataplane::SnapshotStore::Create(1);
    ASSERT_TRUE(store.ok());
    store_ = *std::move(store);
    traffic_ = dataplane::TrafficTable::Create(2, services, backends);
    core_ = std::make_unique<ControlCore>(settings, store_.get(), &probe_, traffic_);
    ASSERT_TRUE(core_->Start().ok());
  }
  const dataplane::ServiceRecord& Record(const char* vip) const {
    return *store_->current()->FindService(Addr(vip), IPPROTO_UDP, htons(53));
  }
  uint32_t BackendId(const char* vip, const char* backend) const {
    uint32_t slot = 0;
    const dataplane::BackendRecord* b = Record(vip).FindBackend(Addr(backend), 0, &slot);
    return b == nullptr ? 0 : b->traffic_id;
  }

  std::unique_ptr<dataplane::SnapshotStore> store_;
  std::shared_ptr<dataplane::TrafficTable> traffic_;
  FakeProbe probe_;
  std::unique_ptr<ControlCore> core_;
};

// What the workers counted reaches GetStats and /metrics: every service's totals, summed
// over the workers, and the backends the query asks for.
TEST_F(ControlCoreTrafficTest, WorkersTrafficReachesStatsAndMetrics) {
  Start(Settings(), 16, 64);
  ASSERT_TRUE(core_->CreateService(Dns({"192.168.1.1", "192.168.1.2", "192.168.1.3"})).ok());
  ASSERT_TRUE(core_->CreateService(Dns({"192.168.2.1"}, "10.1.0.11")).ok());
  const uint32_t svc = Record("10.1.0.10").traffic_id;
  const uint32_t b2 = BackendId("10.1.0.10", "192.168.1.2"), b3 = BackendId("10.1.0.10", "192.168.1.3");
  ASSERT_NE(svc, 0u);
  ASSERT_NE(b2, 0u);
  for (int i = 0; i < 5; ++i) traffic_->cells(0).Forwarded(svc, b2, 100);
  for (int i = 0; i < 2; ++i) traffic_->cells(1).Forwarded(svc, b3, 1000);
  traffic_->cells(1).NewFlow(svc);
  traffic_->cells(0).Dropped(svc);

  Stats stats = core_->GetStats({.top_backends = 2});
  ASSERT_EQ(stats.services.size(), 2u);
  const Stats::ServiceStats& web = stats.services[0];
  EXPECT_EQ(IdOf(web.service.config).ToString(), "10.1.0.10:53/udp");
  EXPECT_EQ(web.traffic.packets, 7u);
  EXPECT_EQ(web.traffic.bytes, 2500u);
  EXPECT_EQ(web.traffic.new_flows, 1u);
  EXPECT_EQ(web.traffic.drops, 1u);
  ASSERT_EQ(web.backends.size(), 2u) << "the two busiest of all services";
  EXPECT_EQ(web.backends[0].index, 1u);
  EXPECT_EQ(web.backends[0].traffic.packets, 5u);
  EXPECT_EQ(web.backends[1].index, 2u);
  EXPECT_EQ(web.backends[1].traffic.bytes, 2000u);
  EXPECT_TRUE(stats.services[1].backends.empty());
  EXPECT_EQ(stats.services[1].traffic.packets, 0u);

  const std::string text = RenderPrometheus(stats, core_->GetHealth());
  EXPECT_THAT(text, HasSubstr("lb_service_packets_total{service=\"10.1.0.10:53/udp\"} 7\n"));
  EXPECT_THAT(text, HasSubstr("lb_service_bytes_total{service=\"10.1.0.10:53/udp\"} 2500\n"));
  EXPECT_THAT(text, HasSubstr("lb_service_new_flows_total{service=\"10.1.0.10:53/udp\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("lb_service_drops_total{service=\"10.1.0.10:53/udp\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("lb_backend_packets_total{service=\"10.1.0.10:53/udp\",backend=\"192.168.1.2\","
                              "port=\"0\"} 5\n"));
  EXPECT_THAT(text, Not(HasSubstr("backend=\"192.168.1.1\"")));

  // One service with every backend; a service deleted and created again starts from zero.
  stats = core_->GetStats({.service = IdOf(Dns({}))});
  ASSERT_EQ(stats.services.size(), 1u);
  EXPECT_EQ(stats.services[0].backends.size(), 3u);
  ASSERT_TRUE(core_->DeleteService(IdOf(Dns({}))).ok());
  ASSERT_TRUE(core_->CreateService(Dns({"192.168.1.1"})).ok());
  stats = core_->GetStats({.service = IdOf(Dns({}))});
  ASSERT_EQ(stats.services.size(), 1u);
  EXPECT_EQ(stats.services[0].traffic.packets, 0u);
  EXPECT_EQ(stats.services[0].backends[0].traffic.packets, 0u);
  EXPECT_EQ(stats.traffic_uncounted, 0u);
}

// 4096 services of 100 backends: GetStats returns no backend rows unless asked, and
// /metrics holds 7 series a service and a bounded rest (docs/lbd.md, Cardinality).
TEST_F(ControlCoreTrafficTest, MetricsCardinalityIsBoundedAt4096x100) {
  constexpr uint32_t kServices = 4096, kBackends = 100;
  NodeSettings settings = Settings();
  settings.limits.max_services = kServices;
  Start(settings, 2 * kServices, 2 * kServices * kBackends);
  std::vector<ServiceConfig> services;
  for (uint32_t i = 0; i < kServices; ++i) {
    ServiceConfig s = Dns({});
    s.vip = IpAddress::FromV4(0xac100000u + i);  // 172.16.0.0/16
    s.table_size = 1021;
    for (uint32_t b = 0; b < kBackends; ++b) s.backends.push_back({IpAddress::FromV4(0x0a000000u + i * 256 + b)});
    services.push_back(s);
  }
  auto applied = core_->Apply(1, services);
  ASSERT_TRUE(applied.ok()) << applied.status();
  // Some traffic, so that the busiest are a choice.
  const dataplane::ServiceRecord& hot = *store_->current()->FindService(services[7].vip, IPPROTO_UDP, htons(53));
  traffic_->cells(0).Forwarded(hot.traffic_id, hot.backends[3].traffic_id, 64);

  const auto series = [](const std::string& text) {
    size_t n = 0;
    for (size_t at = 0; at < text.size(); at = text.find('\n', at) + 1) n += text[at] != '#';
    return n;
  };
  Stats stats = core_->GetStats();
  ASSERT_EQ(stats.services.size(), kServices);
  size_t rows = 0;
  for (const auto& s : stats.services) rows += s.backends.size();
  EXPECT_EQ(rows, 0u);
  const size_t by_default = series(RenderPrometheus(stats, core_->GetHealth()));
  EXPECT_GE(by_default, 7u * kServices);
  EXPECT_LE(by_default, 7u * kServices + 300) << "7 per service, and the node's own";

  stats = core_->GetStats({.top_backends = 100});
  rows = 0;
  for (const auto& s : stats.services) rows += s.backends.size();
  EXPECT_EQ(rows, 100u);
  ASSERT_EQ(stats.services[7].backends.size(), 1u) << "the one with traffic; the rest of the 100 tie at 0";
  EXPECT_EQ(stats.services[7].backends[0].index, 3u);
  const size_t with_top = series(RenderPrometheus(stats, core_->GetHealth()));
  EXPECT_EQ(with_top, by_default + 3 * 100);
  std::printf("/metrics at %u x %u: %zu series; %zu with --metrics_top_backends=100\n", kServices, kBackends,
              by_default, with_top);
  EXPECT_EQ(stats.traffic_uncounted, 0u);
}

}  // namespace
}  // namespace lb::control
