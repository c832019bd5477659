// Flow sync in the worker (dataplane/flow_sync.h): what a node announces, and what a node
// that learned it does when the flow's packets come to it after the backend set changed.
#include <rte_ring.h>

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "dataplane/worker.h"
#include "tests/dataplane/fixtures.h"
#include "tests/dataplane/worker_harness.h"

namespace lb::dataplane {
namespace {

using namespace lb::dataplane::test;
using lb::testing::Output;
using lb::testing::WorkerHarness;

constexpr uint32_t kRefreshMs = 5000;
constexpr std::string_view kSecret = "the cluster's secret, 32 bytes..";

Bytes Client(uint32_t n, uint8_t flags) {
  return In4(pb::Ipv4("192.0.2." + std::to_string(1 + n % 250), "10.1.0.20", IPPROTO_TCP,
                      pb::Tcp(uint16_t(10000 + n), 80, flags)));
}
Bytes UdpClient(uint32_t n) {
  return In4(pb::Ipv4("192.0.2." + std::to_string(1 + n % 250), "10.1.0.10", IPPROTO_UDP,
                      pb::Udp(uint16_t(20000 + n), 53, Payload(12))));
}

// TestConfig() scaled up: the four-backend service gets four more.
DataplaneConfig ScaledUp() {
  auto c = TestConfig();
  for (int i = 5; i <= 8; ++i) c.services[kMultiService].backends.push_back({Addr(("192.168.30." + std::to_string(i)).c_str())});
  return c;
}

// An LB node (one worker) of a cluster with flow sync: its announcements are kept in a
// ring, as the sync thread would take them.
class Node {
 public:
  Node() {
    static int serial = 0;
    ring_ = rte_ring_create_elem(("sync_test_" + std::to_string(serial++)).c_str(), sizeof(SyncedFlow), 4096,
                                 SOCKET_ID_ANY, RING_F_SP_ENQ | RING_F_SC_DEQ);
    EXPECT_NE(ring_, nullptr);
    h_ = std::make_unique<WorkerHarness>(Worker::Options{.flow_capacity = 4096,
                                                         .flow_hasher = FlowHasher::Keyed(kSecret),
                                                         .flow_sync_announce = ring_,
                                                         .flow_sync_refresh_ms = kRefreshMs});
  }
  ~Node() { rte_ring_free(ring_); }
  WorkerHarness& h() { return *h_; }

  // What the node announced since the last call.
  std::vector<SyncedFlow> Announced() {
    std::vector<SyncedFlow> out(rte_ring_count(ring_));
    rte_ring_sc_dequeue_bulk_elem(ring_, out.data(), sizeof(SyncedFlow), unsigned(out.size()), nullptr);
    return out;
  }
  // The backend (outer destination) of each frame.
  std::vector<Bytes> Backends(const std::vector<Bytes>& frames, Millis now = 1000) {
    const Output out = h_->Run(frames, now);
    EXPECT_EQ(out.wire.size(), frames.size());
    std::vector<Bytes> backends;
    for (const Bytes& f : out.wire) backends.push_back(OuterDestination4(f));
    return backends;
  }

 private:
  rte_ring* ring_ = nullptr;
  std::unique_ptr<WorkerHarness> h_;
};

std::vector<Bytes> Clients(uint32_t n, uint8_t flags) {
  std::vector<Bytes> out;
  for (uint32_t i = 0; i < n; ++i) out.push_back(Client(i, flags));
  return out;
}

TEST(FlowSyncWorkerTest, AnEstablishedConnectionIsAnnouncedOnceThenEveryRefreshInterval) {
  Node a;
  ASSERT_TRUE(a.h().Apply(TestConfig()));
  a.h().Run(Client(1, kSyn), 1000);
  EXPECT_TRUE(a.Announced().empty()) << "a SYN alone announces nothing (a SYN flood is not synced)";
  const Output out = a.h().Run(Client(1, kAck), 1010);
  const auto announced = a.Announced();
  ASSERT_EQ(announced.size(), 1u);
  EXPECT_EQ(announced[0].key.protocol, IPPROTO_TCP);
  EXPECT_EQ(announced[0].key.src, Addr("192.0.2.2"));
  EXPECT_EQ(announced[0].backend.ToString(), IpAddress::FromV4Bytes(OuterDestination4(out.wire[0]).data()).ToString());
  EXPECT_EQ(announced[0].state, uint8_t(FlowState::kTcpEstablished));
  for (Millis t = 1500; t < 1000 + kRefreshMs / 2; t += 500) a.h().Run(Client(1, kAck), t);
  EXPECT_TRUE(a.Announced().empty()) << "not again within the interval";
  for (Millis t = 1000 + kRefreshMs / 2; t < 1000 + 2 * kRefreshMs; t += 500) a.h().Run(Client(1, kAck), t);
  const size_t again = a.Announced().size();
  EXPECT_GE(again, 1u);
  EXPECT_LE(again, 2u);
  EXPECT_EQ(a.h().Count(Event::kFlowsAnnounced), 1 + again);
}

TEST(FlowSyncWorkerTest, AUdpFlowIsAnnouncedFromItsSecondPacket) {
  Node a;
  ASSERT_TRUE(a.h().Apply(TestConfig()));
  a.h().Run(UdpClient(1), 1000);
  EXPECT_TRUE(a.Announced().empty()) << "a lone query is not synced";
  a.h().Run(UdpClient(1), 1100);
  EXPECT_EQ(a.Announced().size(), 1u);
}

// The case flow sync is for: connections established through node A, the backend set
// scaled up on both nodes, then ECMP moves the connections to node B (A died).
TEST(FlowSyncWorkerTest, ALearnedConnectionKeepsItsBackendAfterAScaleUp) {
  constexpr uint32_t kConnections = 300;
  Node a, b, unsynced;
  for (Node* n : {&a, &b, &unsynced}) ASSERT_TRUE(n->h().Apply(TestConfig()));
  a.h().Run(Clients(kConnections, kSyn), 1000);
  const auto pinned = a.Backends(Clients(kConnections, kAck), 1010);
  const auto announced = a.Announced();
  ASSERT_EQ(announced.size(), kConnections);
  EXPECT_EQ(b.h().worker().Learn(announced, 1020), kConnections);

  for (Node* n : {&a, &b, &unsynced}) ASSERT_TRUE(n->h().Apply(ScaledUp()));
  const auto at_b = b.Backends(Clients(kConnections, kAck), 2000);
  EXPECT_EQ(at_b, pinned) << "every connection kept its backend on the node that learned it";
  EXPECT_EQ(b.h().Count(Event::kFlowsRescued), kConnections);
  EXPECT_EQ(b.h().Count(Event::kFlowsMidstream), 0u);
  EXPECT_EQ(b.Announced().size(), kConnections) << "B carries them now, and tells the others";

  // Without flow sync the same move breaks about half of them (4 of 8 backends are new):
  // the check above is not vacuous.
  const auto at_unsynced = unsynced.Backends(Clients(kConnections, kAck), 2000);
  int moved = 0;
  for (size_t i = 0; i < pinned.size(); ++i) moved += at_unsynced[i] != pinned[i];
  EXPECT_GT(moved, int(kConnections / 4));
  EXPECT_EQ(unsynced.h().Count(Event::kFlowsMidstream), kConnections);
}

TEST(FlowSyncWorkerTest, LearnedEntriesAgeOutUnlessAnnouncedAgain) {
  Node a, b;
  for (Node* n : {&a, &b}) ASSERT_TRUE(n->h().Apply(TestConfig()));
  a.h().Run(Client(7, kSyn), 1000);
  const auto pinned = a.Backends({Client(7, kAck)}, 1010);
  const auto announced = a.Announced();
  ASSERT_EQ(announced.size(), 1u);
  b.h().worker().Learn(announced, 1020);
  for (Node* n : {&a, &b}) ASSERT_TRUE(n->h().Apply(ScaledUp()));
  // The established timeout (300 s in TestConfig) plus the refresh interval later, the
  // entry is gone; refreshed before that, it stays.
  const Millis established = TestConfig().timeouts.tcp_established;
  b.h().worker().Learn(announced, 1020 + established - 100);
  EXPECT_EQ(b.Backends({Client(7, kAck)}, 1020 + established + kRefreshMs), pinned);
  Node c;
  ASSERT_TRUE(c.h().Apply(TestConfig()));
  c.h().worker().Learn(announced, 1020);
  ASSERT_TRUE(c.h().Apply(ScaledUp()));
  c.Backends({Client(7, kAck)}, 1020 + established + kRefreshMs + 1);
  EXPECT_EQ(c.h().Count(Event::kFlowsRescued), 0u) << "expired";
}

TEST(FlowSyncWorkerTest, WhatANodeCarriesItselfIsNotOverwritten) {
  Node a, b;
  for (Node* n : {&a, &b}) ASSERT_TRUE(n->h().Apply(TestConfig()));
  b.h().Run(Client(3, kSyn), 1000);
  const auto own = b.Backends({Client(3, kAck)}, 1010);
  SyncedFlow other = b.Announced().at(0);
  other.backend = Addr(kMulti[0]) == other.backend ? Addr(kMulti[1]) : Addr(kMulti[0]);
  EXPECT_EQ(b.h().worker().Learn({&other, 1}, 1020), 0u);
  EXPECT_EQ(b.Backends({Client(3, kAck)}, 1030), own);
}

TEST(FlowSyncWorkerTest, FlowsOfUnknownServicesOrBackendsAreCountedNotLearned) {
  Node a, b;
  for (Node* n : {&a, &b}) ASSERT_TRUE(n->h().Apply(TestConfig()));
  a.h().Run(Client(4, kSyn), 1000);
  a.h().Run(Client(4, kAck), 1010);
  SyncedFlow f = a.Announced().at(0);
  SyncedFlow unknown_backend = f, unknown_service = f;
  unknown_backend.backend = Addr("192.168.99.1");
  unknown_service.key.dst_port_be = htons(8443);
  const SyncedFlow flows[] = {unknown_backend, unknown_service};
  EXPECT_EQ(b.h().worker().Learn(flows, 1020), 0u);
  EXPECT_EQ(b.h().Count(Event::kFlowsLearnedUnknown), 2u);
}

}  // namespace
}  // namespace lb::dataplane
