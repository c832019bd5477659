// Flow behaviour through Worker::ProcessBurst: pinning across backend changes, draining,
// down backends, what a SYN does when it meets an entry, a full table, fragments, and
// snapshots swapped while packets flow.
#include <rte_dev.h>
#include <rte_ethdev.h>

#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <thread>

#include "dataplane/worker/worker.h"
#include "tests/dataplane/fixtures.h"
#include "tests/dataplane/worker_harness.h"

namespace lb::dataplane {
namespace {

using namespace lb::dataplane::test;
using lb::testing::Output;
using lb::testing::WorkerHarness;

Bytes Client(uint32_t n, uint8_t flags, uint16_t dport = 80) {
  const std::string src = "192.0.2." + std::to_string(1 + n % 250);
  return In4(pb::Ipv4(src, "10.1.0.20", 6, pb::Tcp(uint16_t(10000 + n), dport, flags)));
}

// Sends one packet per client and returns the backend each went to.
std::vector<Bytes> BackendsOf(WorkerHarness& h, uint32_t clients, uint8_t flags, uint32_t first = 0,
                              Millis now = 1000) {
  std::vector<Bytes> in;
  for (uint32_t n = first; n < first + clients; ++n) in.push_back(Client(n, flags));
  const Output out = h.Run(in, now);
  EXPECT_EQ(out.wire.size(), in.size());
  std::vector<Bytes> backends;
  for (const Bytes& f : out.wire) backends.push_back(OuterDestination4(f));
  return backends;
}

Bytes V4(const char* a) { return pb::ParseAddress(a); }

// TestConfig() with a fifth backend in the four-backend service.
DataplaneConfig GrownConfig() {
  auto c = TestConfig();
  c.services[kMultiService].backends.push_back({Addr("192.168.30.5")});
  return c;
}

DataplaneConfig WithBackendState(const char* address, BackendState state) {
  auto c = TestConfig();
  for (auto& b : c.services[kMultiService].backends) {
    if (b.address == Addr(address)) b.state = state;
  }
  return c;
}

TEST(FlowTest, FlowsStayOnTheirBackendWhenOneIsAdded) {
  WorkerHarness h;
  ASSERT_TRUE(h.Apply(TestConfig()));
  const auto before = BackendsOf(h, 400, kSyn);

  const auto grown = GrownConfig();
  ASSERT_TRUE(h.Apply(grown));
  EXPECT_EQ(BackendsOf(h, 400, kAck), before) << "every established flow kept its backend";

  // Without the flow table (a fresh worker) Maglev alone would have moved about 1/5 of
  // them: the check above is not vacuous.
  WorkerHarness fresh;
  ASSERT_TRUE(fresh.Apply(grown));
  const auto stateless = BackendsOf(fresh, 400, kAck);
  int moved = 0;
  for (size_t i = 0; i < before.size(); ++i) moved += stateless[i] != before[i];
  EXPECT_GT(moved, 40);
  // New flows do reach the new backend.
  const auto fresh_flows = BackendsOf(h, 400, kSyn, 1000);
  EXPECT_GT(std::count(fresh_flows.begin(), fresh_flows.end(), V4("192.168.30.5")), 40);
}

// Two LB nodes that hold the cluster's secret send a flow to the same backend, whichever
// node ECMP gives it to; a node with another secret (or none) does not, for most flows.
TEST(FlowTest, NodesWithOneFlowHashSecretPickAlike) {
  auto node = [](std::optional<std::string_view> secret) {
    Worker::Options o{.flow_capacity = 4096};
    if (secret) o.flow_hasher = FlowHasher::Keyed(*secret);
    return std::make_unique<WorkerHarness>(o);
  };
  auto one = node("the cluster's secret, 32 bytes..");
  auto two = node("the cluster's secret, 32 bytes..");
  auto other = node("another cluster's secret........");
  auto public_hash = node(std::nullopt);
  for (auto* h : {one.get(), two.get(), other.get(), public_hash.get()}) ASSERT_TRUE(h->Apply(TestConfig()));
  const auto picks = BackendsOf(*one, 400, kSyn);
  EXPECT_EQ(BackendsOf(*two, 400, kAck), picks);
  auto differ = [&](const std::vector<Bytes>& b) {
    int n = 0;
    for (size_t i = 0; i < picks.size(); ++i) n += b[i] != picks[i];
    return n;
  };
  EXPECT_GT(differ(BackendsOf(*other, 400, kSyn)), 200);  // 3 in 4 expected: four backends
  EXPECT_GT(differ(BackendsOf(*public_hash, 400, kSyn)), 200);
}

TEST(FlowTest, DrainingKeepsFlowsAndTakesNoNewOnes) {
  WorkerHarness h;
  ASSERT_TRUE(h.Apply(TestConfig()));
  const auto before = BackendsOf(h, 200, kSyn);
  ASSERT_GT(std::count(before.begin(), before.end(), V4(kMulti[0])), 20);

  ASSERT_TRUE(h.Apply(WithBackendState(kMulti[0], BackendState::kDraining)));
  EXPECT_EQ(BackendsOf(h, 200, kAck), before) << "established flows stay, draining included";
  const auto fresh = BackendsOf(h, 300, kSyn, 5000);
  EXPECT_EQ(std::count(fresh.begin(), fresh.end(), V4(kMulti[0])), 0) << "no new flow drains";

  // A bare SYN on a flow of the draining backend opens a new connection: balanced anew.
  const uint64_t repicks = h.Count(Event::kFlowRepicks);
  const auto resyn = BackendsOf(h, 200, kSyn);
  int drained_flows = 0;
  for (size_t i = 0; i < before.size(); ++i) {
    if (before[i] != V4(kMulti[0])) {
      EXPECT_EQ(resyn[i], before[i]) << "a retransmitted SYN stays on an active backend";
      continue;
    }
    ++drained_flows;
    EXPECT_NE(resyn[i], V4(kMulti[0]));
  }
  EXPECT_EQ(h.Count(Event::kFlowRepicks), repicks + drained_flows);
}

TEST(FlowTest, DownOrRemovedBackendsLoseTheirFlows) {
  for (bool remove : {false, true}) {
    WorkerHarness h;
    ASSERT_TRUE(h.Apply(TestConfig()));
    const auto before = BackendsOf(h, 200, kSyn);
    auto c = WithBackendState(kMulti[1], BackendState::kDown);
    if (remove) {
      c = TestConfig();
      auto& b = c.services[kMultiService].backends;
      b.erase(b.begin() + 1);
    }
    ASSERT_TRUE(h.Apply(c));
    const auto after = BackendsOf(h, 200, kAck);
    int moved = 0;
    for (size_t i = 0; i < before.size(); ++i) {
      EXPECT_NE(after[i], V4(kMulti[1]));
      if (before[i] == V4(kMulti[1])) {
        ++moved;
      } else {
        EXPECT_EQ(after[i], before[i]) << "flows of other backends do not move";
      }
    }
    EXPECT_GT(moved, 20);
    EXPECT_EQ(h.Count(Event::kFlowRepicks), uint64_t(moved)) << (remove ? "removed" : "down");
  }
}

// What a SYN does when it meets an entry: on a closing flow (FIN or RST seen) it opens a
// new connection and is balanced by the current Maglev table; on a live flow it is a
// retransmission and stays.
TEST(FlowTest, SynOnAClosingEntryIsBalancedAnew) {
  WorkerHarness h;
  ASSERT_TRUE(h.Apply(TestConfig()));
  const auto pinned = BackendsOf(h, 300, kSyn);
  const auto grown = GrownConfig();
  ASSERT_TRUE(h.Apply(grown));
  WorkerHarness oracle;  // what Maglev alone now says
  ASSERT_TRUE(oracle.Apply(grown));
  const auto now_says = BackendsOf(oracle, 300, kSyn);

  // Close the even flows; then every flow sends a fresh SYN.
  std::vector<Bytes> fins;
  for (uint32_t n = 0; n < 300; n += 2) fins.push_back(Client(n, kFin | kAck));
  ASSERT_EQ(h.Run(fins).wire.size(), fins.size());
  const auto resyn = BackendsOf(h, 300, kSyn);
  int differ = 0;
  for (uint32_t n = 0; n < 300; ++n) {
    if (n % 2 == 0) {
      EXPECT_EQ(resyn[n], now_says[n]) << "closed flow " << n << " is balanced anew";
      differ += now_says[n] != pinned[n];
    } else {
      EXPECT_EQ(resyn[n], pinned[n]) << "live flow " << n << " stays";
    }
  }
  EXPECT_GT(differ, 10) << "the test must include flows whose backend changes";
}

// One burst to services that share a VIP, a protocol or a port: each packet reaches its
// own service (the worker remembers the burst's last service lookup; it must not answer
// for another VIP, protocol or port).
TEST(FlowTest, ABurstToNeighbouringServicesReachesEachOne) {
  WorkerHarness h;
  auto c = TestConfig();
  c.services = {
      Service("10.1.0.30", IPPROTO_UDP, 53, {"192.168.40.1"}), Service("10.1.0.30", IPPROTO_UDP, 54, {"192.168.40.2"}),
      Service("10.1.0.30", IPPROTO_TCP, 53, {"192.168.40.3"}), Service("10.1.0.31", IPPROTO_UDP, 53, {"192.168.40.4"})};
  ASSERT_TRUE(h.Apply(c));
  auto udp = [](const char* vip, uint16_t port) {
    return In4(pb::Ipv4("192.0.2.1", vip, 17, pb::Udp(1000, port, {1})));
  };
  auto tcp = [](const char* vip, uint16_t port) {
    return In4(pb::Ipv4("192.0.2.1", vip, 6, pb::Tcp(1000, port, kSyn)));
  };
  const std::vector<std::pair<Bytes, const char*>> cases = {
      {udp("10.1.0.30", 53), "192.168.40.1"}, {tcp("10.1.0.30", 53), "192.168.40.3"},
      {udp("10.1.0.30", 54), "192.168.40.2"}, {udp("10.1.0.31", 53), "192.168.40.4"},
      {udp("10.1.0.30", 53), "192.168.40.1"}, {udp("10.1.0.31", 53), "192.168.40.4"},
      {udp("10.1.0.30", 55), nullptr},        {udp("10.1.0.30", 54), "192.168.40.2"},
      {udp("10.1.0.30", 53), "192.168.40.1"}, {udp("10.1.0.30", 54), "192.168.40.2"},
  };
  std::vector<Bytes> in;
  for (const auto& [frame, backend] : cases) in.push_back(frame);
  const Output out = h.Run(in);
  ASSERT_EQ(out.wire.size(), cases.size() - 1);
  size_t w = 0;
  for (const auto& [frame, backend] : cases) {
    if (backend == nullptr) continue;
    EXPECT_EQ(OuterDestination4(out.wire[w++]), V4(backend)) << backend;
  }
  EXPECT_EQ(h.Count(DropReason::kNoService), 1u) << "UDP 55 has no service";
}

TEST(FlowTest, FullTableKeepsForwardingByHash) {
  WorkerHarness h(/*flow_capacity=*/2);  // the smallest table: two buckets of three ways
  ASSERT_TRUE(h.Apply(TestConfig()));
  const auto first = BackendsOf(h, 20, kSyn);
  EXPECT_EQ(h.Count(Event::kFlowInserts), 6u);
  EXPECT_EQ(h.Count(Event::kFlowTableFull), 14u);
  EXPECT_EQ(h.TotalDrops(), 0u);
  EXPECT_EQ(h.worker().flows().occupied(), 6u);
  // Flows without an entry still go where Maglev says, consistently.
  EXPECT_EQ(BackendsOf(h, 20, kAck), first);
}

// TestConfig() with timeouts a test can step through: SYN-sent 100 ms, established 10 s.
DataplaneConfig ShortSynTimeout() {
  auto c = TestConfig();
  c.timeouts.tcp_syn_sent = 100;
  c.timeouts.tcp_established = 10'000;
  return c;
}

// A SYN-only flow lives tcp_syn_sent; once a non-SYN packet follows it lives
// tcp_established; an expired entry is a miss and its way is reused.
TEST(FlowTest, FlowsExpireByState) {
  WorkerHarness h;
  ASSERT_TRUE(h.Apply(ShortSynTimeout()));
  BackendsOf(h, 100, kSyn, 0, /*now=*/1000);
  BackendsOf(h, 50, kAck, 0, /*now=*/1050);  // clients 0..49 become established
  EXPECT_EQ(h.Count(Event::kFlowHits), 50u);
  BackendsOf(h, 100, kAck, 0, /*now=*/1200);  // 50..99 expired at 1100
  EXPECT_EQ(h.Count(Event::kFlowHits), 100u);
  EXPECT_EQ(h.Count(Event::kFlowMisses), 150u);
  EXPECT_EQ(h.Count(Event::kFlowExpired), 50u) << "their ways were reclaimed";
  EXPECT_EQ(h.worker().flows().occupied(), 100u);
  BackendsOf(h, 50, kAck, 0, /*now=*/11'000);  // still within tcp_established of 1200
  EXPECT_EQ(h.Count(Event::kFlowHits), 150u);
}

// A flow first seen without a SYN (ECMP moved it here, or a forged ACK) lives only the
// SYN timeout until a second packet confirms it: an ACK flood ages out as fast as a SYN
// flood, while a real mid-stream connection becomes established.
TEST(FlowTest, FlowsFirstSeenWithoutSynAgeOutUnlessConfirmed) {
  WorkerHarness h;
  ASSERT_TRUE(h.Apply(ShortSynTimeout()));
  BackendsOf(h, 100, kAck, 0, /*now=*/1000);  // 100 flows first seen mid-stream
  BackendsOf(h, 50, kAck, 0, /*now=*/1050);   // clients 0..49 send a second packet
  EXPECT_EQ(h.Count(Event::kFlowHits), 50u);
  BackendsOf(h, 100, kAck, 0, /*now=*/1200);  // 50..99 expired at 1100: misses again
  EXPECT_EQ(h.Count(Event::kFlowHits), 100u);
  EXPECT_EQ(h.Count(Event::kFlowExpired), 50u) << "the unconfirmed entries were reclaimed";
  BackendsOf(h, 50, kAck, 0, /*now=*/5000);  // 0..49 are established: still held
  EXPECT_EQ(h.Count(Event::kFlowHits), 150u);
}

TEST(FlowTest, FragmentsOfADatagramReachOneBackend) {
  WorkerHarness h;
  ASSERT_TRUE(h.Apply(TestConfig()));
  // UDP to 10.1.0.20 (an all-ports service): first fragment with ports, later ones
  // without; each client's fragments must meet at one backend.
  std::map<std::string, std::set<Bytes>> backends_by_client;
  for (int c = 1; c <= 40; ++c) {
    const std::string src = "198.18.0." + std::to_string(c);
    const Bytes first =
        In4(pb::Ipv4(src, "10.1.0.20", 17, pb::Udp(5000, 53, Bytes(32)), {.mf = true, .id = uint16_t(c)}));
    const Bytes middle = In4(pb::Ipv4(src, "10.1.0.20", 17, Bytes(40),
                                      {.mf = true, .id = uint16_t(c), .frag_offset = 5, .l4_checksum = false}));
    const Bytes last =
        In4(pb::Ipv4(src, "10.1.0.20", 17, Bytes(8), {.id = uint16_t(c), .frag_offset = 10, .l4_checksum = false}));
    const Output out = h.Run(std::vector<Bytes>{first, middle, last});
    ASSERT_EQ(out.wire.size(), 3u);
    for (const Bytes& f : out.wire) backends_by_client[src].insert(OuterDestination4(f));
  }
  std::set<Bytes> used;
  for (const auto& [src, b] : backends_by_client) {
    EXPECT_EQ(b.size(), 1u) << src;
    used.insert(*b.begin());
  }
  EXPECT_GT(used.size(), 1u) << "fragments are still spread over backends";
  EXPECT_EQ(h.Count(Event::kFragments), 120u);
  EXPECT_EQ(h.Count(Event::kFlowInserts), 0u) << "fragments take no flow entry";
}

TEST(FlowTest, AmbiguousFragmentsAreDropped) {
  WorkerHarness h;
  auto c = TestConfig();
  c.services.push_back(Service("10.1.0.10", IPPROTO_UDP, 5353, {"192.168.10.9"}));
  ASSERT_TRUE(h.Apply(c));
  const Output out =
      h.Run(In4(pb::Ipv4("192.0.2.1", "10.1.0.10", 17, Bytes(16), {.frag_offset = 8, .l4_checksum = false})));
  EXPECT_TRUE(out.wire.empty());
  EXPECT_EQ(h.Count(DropReason::kFragmentAmbiguous), 1u);
  // With a single UDP service on the VIP the same fragment is forwarded.
  WorkerHarness single;
  ASSERT_TRUE(single.Apply(TestConfig()));
  EXPECT_EQ(single.Run(In4(pb::Ipv4("192.0.2.1", "10.1.0.10", 17, Bytes(16), {.frag_offset = 8, .l4_checksum = false})))
                .wire.size(),
            1u);
}

// The control thread publishes a new snapshot every few microseconds while the worker
// forwards: no packet may be lost or sent to a backend outside both configurations, and
// every replaced snapshot must be reclaimed (AddressSanitizer would report a worker
// reading a freed one).
TEST(FlowTest, SnapshotSwapsWhilePacketsFlow) {
  WorkerHarness h;
  const auto a = TestConfig();
  const auto b = GrownConfig();
  ASSERT_TRUE(h.Apply(a));

  std::atomic<bool> stop{false};
  std::atomic<int> published{0};
  std::thread control([&] {
    SnapshotBuilder builder;
    while (!stop.load(std::memory_order_relaxed)) {
      auto snap = builder.Build(published % 2 ? a : b);
      ASSERT_TRUE(snap.ok());
      h.store().Publish(*std::move(snap));
      h.store().Reclaim();
      published.fetch_add(1, std::memory_order_relaxed);
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  });
  const std::set<Bytes> allowed = {V4(kMulti[0]), V4(kMulti[1]), V4(kMulti[2]), V4(kMulti[3]), V4("192.168.30.5")};
  size_t sent = 0, forwarded = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  for (uint32_t round = 0; round < 2000 && std::chrono::steady_clock::now() < deadline; ++round) {
    std::vector<Bytes> in;
    for (uint32_t i = 0; i < 32; ++i) in.push_back(Client(round * 32 + i, i % 3 ? kAck : kSyn));
    const Output out = h.Run(in);  // reports a quiescent state after the burst
    sent += in.size();
    forwarded += out.wire.size();
    for (const Bytes& f : out.wire) EXPECT_TRUE(allowed.contains(OuterDestination4(f)));
  }
  stop = true;
  control.join();
  EXPECT_GT(published.load(), 50) << "the test must swap snapshots many times";
  EXPECT_EQ(forwarded, sent);
  EXPECT_EQ(h.TotalDrops(), 0u);
  // The worker (this thread) reports a quiescent state after the last publish: then
  // everything retired can go.
  h.store().Quiescent(0);
  EXPECT_EQ(h.store().Reclaim(), 0u);
}

// A net_ring vdev: its TX queue feeds its own RX queue, so the test sends with
// rte_eth_tx_burst what the worker then receives, and reads back what the worker sent.
class LoopbackPort {
 public:
  explicit LoopbackPort(const std::string& name) : name_(name) {
    if (rte_dev_probe(name.c_str()) != 0 || rte_eth_dev_get_port_by_name(name.c_str(), &port_) != 0) {
      ADD_FAILURE() << "cannot create " << name;
      return;
    }
    rte_eth_conf conf{};
    ok_ = rte_eth_dev_configure(port_, 1, 1, &conf) == 0 &&
          rte_eth_rx_queue_setup(port_, 0, 256, SOCKET_ID_ANY, nullptr, lb::testing::TestPool()) == 0 &&
          rte_eth_tx_queue_setup(port_, 0, 256, SOCKET_ID_ANY, nullptr) == 0 && rte_eth_dev_start(port_) == 0;
    EXPECT_TRUE(ok_) << name;
  }
  ~LoopbackPort() {
    rte_eth_dev_stop(port_);
    rte_eth_dev_close(port_);
  }
  bool ok() const { return ok_; }
  PortQueue queue() const { return {port_, 0}; }
  void Send(const Bytes& frame) {
    rte_mbuf* m = lb::testing::ToMbuf(frame);
    ASSERT_EQ(rte_eth_tx_burst(port_, 0, &m, 1), 1);
  }
  std::vector<Bytes> Receive() {
    rte_mbuf* m[kMaxBurst];
    const uint16_t n = rte_eth_rx_burst(port_, 0, m, kMaxBurst);
    std::vector<Bytes> frames;
    for (uint16_t i = 0; i < n; ++i) {
      frames.push_back(lb::testing::FromMbuf(m[i]));
      rte_pktmbuf_free(m[i]);
    }
    return frames;
  }

 private:
  std::string name_;
  uint16_t port_ = 0;
  bool ok_ = false;
};

// PollOnce through a real PMD: RX from one port, the wire output back out of it, and
// exception traffic out of a second port standing in for the TAP.
TEST(FlowTest, PollOnceMovesPacketsBetweenPorts) {
  LoopbackPort wire("net_ring_poll0");
  LoopbackPort kernel("net_ring_poll1");
  ASSERT_TRUE(wire.ok() && kernel.ok());
  WorkerHarness h;
  ASSERT_TRUE(h.Apply(TestConfig()));
  const Bytes arp = pb::Ether(kPortMac, kRouterMac, 0x0806, Bytes(28, 1));
  wire.Send(Client(1, kSyn));
  wire.Send(arp);

  EXPECT_EQ(h.worker().PollOnce(wire.queue(), wire.queue(), kernel.queue()), 2);
  const auto out = wire.Receive();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0][23], 4) << "IPIP on the wire";
  const auto to_kernel = kernel.Receive();
  ASSERT_EQ(to_kernel.size(), 1u);
  EXPECT_EQ(to_kernel[0], arp);
  EXPECT_EQ(h.Count(Event::kTxPackets), 1u);
  EXPECT_EQ(h.worker().PollOnce(wire.queue(), wire.queue(), kernel.queue()), 0);
}

}  // namespace
}  // namespace lb::dataplane
