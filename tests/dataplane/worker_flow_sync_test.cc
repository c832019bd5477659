// Flow sync in the worker (dataplane/flow_sync_wire.h): what a node announces, and what a node
// that learned it does when the flow's packets come to it after the backend set changed.
#include <rte_ring.h>

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "dataplane/worker/worker.h"
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
  for (int i = 5; i <= 8; ++i)
    c.services[kMultiService].backends.push_back({Addr(("192.168.30." + std::to_string(i)).c_str())});
  return c;
}

// An LB node (one worker, of `options`) of a cluster with flow sync: its announcements
// are kept in a ring, as the sync thread would take them.
class Node {
 public:
  explicit Node(Worker::Options options = {.flow_capacity = 4096}) {
    static int serial = 0;
    ring_ = rte_ring_create_elem(("sync_test_" + std::to_string(serial++)).c_str(), sizeof(SyncedFlow), 4096,
                                 SOCKET_ID_ANY, RING_F_SP_ENQ | RING_F_SC_DEQ);
    EXPECT_NE(ring_, nullptr);
    options.flow_hasher = FlowHasher::Keyed(kSecret);
    options.flow_sync_announce = ring_;
    options.flow_sync_refresh_ms = kRefreshMs;
    h_ = std::make_unique<WorkerHarness>(options);
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

// A connection's SYN reached B, its retransmission A (ECMP changed in between). B's entry
// never saw the handshake complete: A's announcement replaces it, so the connection keeps
// A's backend at B after B's SYN timeout too.
TEST(FlowSyncWorkerTest, AHandshakeThatCompletedOnAPeerReplacesTheEntryHere) {
  Node a, b;
  for (Node* n : {&a, &b}) ASSERT_TRUE(n->h().Apply(TestConfig()));
  b.h().Run(Client(3, kSyn), 1000);
  a.h().Run(Client(3, kSyn), 2000);
  a.h().Run(Client(3, kAck), 2010);
  SyncedFlow at_a = a.Announced().at(0);
  at_a.backend = Addr(kMulti[0]) == at_a.backend ? Addr(kMulti[1]) : Addr(kMulti[0]);  // not B's pick
  EXPECT_EQ(b.h().worker().Learn({&at_a, 1}, 2020), 1u);
  EXPECT_EQ(b.h().Count(Event::kHandshakesYielded), 1u);
  const Bytes a_backend = OuterDestination4(b.h().Run(Client(3, kAck), 2030).wire.at(0));
  EXPECT_EQ(IpAddress::FromV4Bytes(a_backend.data()), at_a.backend);
  EXPECT_EQ(b.Backends({Client(3, kAck)}, 15000), std::vector<Bytes>{a_backend}) << "past B's SYN timeout";
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

// ---- NAT: sessions survive their node (adopted sessions, nat.h)

constexpr const char* kNatVip = "10.1.0.50";
constexpr const char* kSnatA = "10.90.0.100";  // node A's SNAT address
constexpr const char* kSnatB = "10.90.0.101";  // node B's
constexpr uint16_t kPortMin = 2000;

// A node whose SNAT address is `snat` (ports kPortMin .. kPortMin + ports - 1), with a NAT
// service on kNatVip TCP 80 and UDP 53 over the first `backends` of kMulti and beyond.
DataplaneConfig NatNode(const char* snat, int backends, uint16_t ports = 100) {
  DataplaneConfig c = TestConfig();
  c.nat.addresses = {Addr(snat)};
  c.nat.port_min = kPortMin;
  c.nat.port_max = uint16_t(kPortMin + ports - 1);
  for (uint8_t proto : {uint8_t(IPPROTO_TCP), uint8_t(IPPROTO_UDP)}) {
    auto svc = Service(kNatVip, proto, proto == IPPROTO_TCP ? 80 : 53, {}, ForwardingMode::kNat);
    for (int i = 1; i <= backends; ++i) svc.backends.push_back({Addr(("192.168.30." + std::to_string(i)).c_str())});
    c.services.push_back(svc);
  }
  return c;
}
Worker::Options NatOptions(uint16_t ports = 100) {
  return {.flow_capacity = 4096,
          .nat_addresses = 1,
          .nat_port_min = kPortMin,
          .nat_port_max = uint16_t(kPortMin + ports - 1),
          .nat_adopted_capacity = 1024};
}

const Bytes kLine = {'l', 'i', 'n', 'e'};
std::string NatClient(uint32_t n) { return "192.0.2." + std::to_string(1 + n % 250); }
Bytes NatIn(uint32_t n, uint8_t flags, const Bytes& payload = {}) {
  return In4(pb::Ipv4(NatClient(n), kNatVip, IPPROTO_TCP, pb::Tcp(uint16_t(30000 + n), 80, flags, payload)));
}
// The backend's reply to what `to_backend` (a frame lbd sent a backend) carried.
Bytes ReplyTo(const Bytes& to_backend, uint8_t flags) {
  const uint8_t* ip = to_backend.data() + 14;
  const IpAddress snat = IpAddress::FromV4Bytes(ip + 12), backend = IpAddress::FromV4Bytes(ip + 16);
  const uint16_t snat_port = uint16_t(ip[20] << 8 | ip[21]);
  return In4(pb::Ipv4(backend.ToString(), snat.ToString(), IPPROTO_TCP, pb::Tcp(80, snat_port, flags, kLine)));
}
// What lbd sends the client for a reply to connection `n`.
Bytes ToClient(uint32_t n, uint8_t flags) {
  return Out4(
      pb::Ipv4(kNatVip, NatClient(n), IPPROTO_TCP, pb::Tcp(80, uint16_t(30000 + n), flags, kLine), {.ttl = 63}));
}

// Opens connections 0 .. count-1 through `node` (SYN, the backend's SYN-ACK, the ACK);
// returns what the node sent the backends for a data segment of each.
std::vector<Bytes> OpenNat(Node& node, uint32_t count, Millis now) {
  std::vector<Bytes> syns;
  for (uint32_t i = 0; i < count; ++i) syns.push_back(NatIn(i, kSyn));
  const Output opened = node.h().Run(syns, now);
  EXPECT_EQ(opened.wire.size(), count);
  std::vector<Bytes> syn_acks;
  for (const Bytes& f : opened.wire) syn_acks.push_back(ReplyTo(f, kSyn | kAck));
  EXPECT_EQ(node.h().Run(syn_acks, now + 1).wire.size(), count);
  std::vector<Bytes> data;
  for (uint32_t i = 0; i < count; ++i) data.push_back(NatIn(i, kAck, kLine));
  return node.h().Run(data, now + 2).wire;
}

TEST(FlowSyncWorkerTest, ANatSessionIsAnnouncedWithItsSnatAddressOnceEstablished) {
  Node a(NatOptions());
  ASSERT_TRUE(a.h().Apply(NatNode(kSnatA, 4)));
  const Output syn = a.h().Run(NatIn(1, kSyn), 1000);
  ASSERT_EQ(syn.wire.size(), 1u);
  a.h().Run(ReplyTo(syn.wire[0], kSyn | kAck), 1001);
  EXPECT_TRUE(a.Announced().empty()) << "not before the client's ACK";
  a.h().Run(NatIn(1, kAck), 1002);
  const auto announced = a.Announced();
  ASSERT_EQ(announced.size(), 1u);
  const SyncedFlow& f = announced[0];
  EXPECT_TRUE(f.nat);
  EXPECT_EQ(f.key.src, Addr(NatClient(1).c_str()));
  EXPECT_EQ(f.key.dst, Addr(kNatVip));
  EXPECT_EQ(f.snat, Addr(kSnatA));
  EXPECT_EQ(f.snat_port, kPortMin);
  EXPECT_EQ(f.backend, IpAddress::FromV4Bytes(syn.wire[0].data() + 14 + 16));
  EXPECT_EQ(f.backend_port, 80);
  EXPECT_EQ(f.state, uint8_t(FlowState::kTcpEstablished));
  // Replies alone keep it active: it is announced again in the next interval.
  for (Millis t = 2000; t < 1000 + 2 * kRefreshMs; t += 1000) a.h().Run(ReplyTo(syn.wire[0], kAck), t);
  EXPECT_GE(a.Announced().size(), 1u);
}

// Node A dies after the backend set grew: ECMP brings A's clients to B, and the ToR routes
// A's SNAT address to B (its backup announcement). B translates both ways exactly as A did.
TEST(FlowSyncWorkerTest, AnAdoptedNatSessionGoesOnThroughAnotherNodeBothWays) {
  constexpr uint32_t kConnections = 60;
  Node a(NatOptions()), b(NatOptions()), unsynced(NatOptions());
  ASSERT_TRUE(a.h().Apply(NatNode(kSnatA, 4)));
  for (Node* n : {&b, &unsynced}) ASSERT_TRUE(n->h().Apply(NatNode(kSnatB, 4)));
  const std::vector<Bytes> at_a = OpenNat(a, kConnections, 1000);
  ASSERT_EQ(at_a.size(), kConnections);
  const auto announced = a.Announced();
  ASSERT_EQ(announced.size(), kConnections);
  EXPECT_EQ(b.h().worker().Learn(announced, 1010), kConnections);
  EXPECT_EQ(b.h().worker().Learn(announced, 1020), kConnections) << "announced again: refreshed";

  for (Node* n : {&b, &unsynced}) ASSERT_TRUE(n->h().Apply(NatNode(kSnatB, 8)));
  for (uint32_t i = 0; i < kConnections; ++i) {
    const Output to_backend = b.h().Run(NatIn(i, kAck, kLine), 2000);
    ASSERT_EQ(to_backend.wire.size(), 1u) << i;
    EXPECT_EQ(to_backend.wire[0], at_a[i]) << "connection " << i << ": A's SNAT address and port, A's backend";
    const Output to_client = b.h().Run(ReplyTo(at_a[i], kAck), 2001);
    ASSERT_EQ(to_client.wire.size(), 1u) << i;
    EXPECT_EQ(to_client.wire[0], ToClient(i, kAck)) << i;
  }
  EXPECT_EQ(b.h().Count(Event::kFlowsRescued), kConnections);
  EXPECT_EQ(b.h().Count(Event::kNatSessions), 0u) << "no session of B's own";
  EXPECT_EQ(b.h().TotalDrops(), 0u);
  const auto carried = b.Announced();
  ASSERT_EQ(carried.size(), kConnections) << "B carries them now, and tells the others";
  EXPECT_EQ(carried[0].snat, Addr(kSnatA));

  // Without the sessions, B could carry none of them.
  EXPECT_TRUE(unsynced.h().Run(NatIn(0, kAck, kLine), 2000).wire.empty());
  EXPECT_EQ(unsynced.h().Count(DropReason::kNatNotSyn), 1u);
  const Output reply = unsynced.h().Run(ReplyTo(at_a[0], kAck), 2001);
  EXPECT_TRUE(reply.wire.empty());
}

// A connection's SYN reached B, its retransmission A (ECMP changed in between), and A
// completed it. B's session never completed its handshake: it yields to A's announced
// one, so that B carries the connection on A's port should it come back to B (on B's own
// port the backend, which never saw it, would reset it).
TEST(FlowSyncWorkerTest, AHandshakeThatCompletedOnAPeerReplacesTheOneThatDidNotHere) {
  Node a(NatOptions()), b(NatOptions());
  ASSERT_TRUE(a.h().Apply(NatNode(kSnatA, 4)));
  ASSERT_TRUE(b.h().Apply(NatNode(kSnatB, 4)));
  ASSERT_EQ(b.h().Run(NatIn(1, kSyn), 1000).wire.size(), 1u);  // the first SYN: unanswered
  const std::vector<Bytes> at_a = OpenNat(a, 2, 2000);         // the retransmission, at A
  const auto announced = a.Announced();
  ASSERT_EQ(announced.size(), 2u);
  EXPECT_EQ(b.h().worker().Learn(announced, 2010), 2u);
  EXPECT_EQ(b.h().Count(Event::kHandshakesYielded), 1u);
  const Output to_backend = b.h().Run(NatIn(1, kAck, kLine), 3000);
  ASSERT_EQ(to_backend.wire.size(), 1u);
  EXPECT_EQ(to_backend.wire[0], at_a[1]) << "A's SNAT address and port, A's backend";
  EXPECT_EQ(b.h().worker().nat().in_use(0), 0u) << "B's own port is free again";

  // An established session of B's own stands: the peer's word does not replace it.
  Node c(NatOptions());
  ASSERT_TRUE(c.h().Apply(NatNode(kSnatB, 4)));
  const std::vector<Bytes> at_c = OpenNat(c, 2, 1000);
  EXPECT_EQ(c.h().worker().Learn(announced, 2010), 0u);
  EXPECT_EQ(c.h().Count(Event::kHandshakesYielded), 0u);
  const Output own = c.h().Run(NatIn(1, kAck, kLine), 3000);
  ASSERT_EQ(own.wire.size(), 1u);
  EXPECT_EQ(own.wire[0], at_c[1]);
}

// Node A comes back with empty tables while B carries A's sessions; the ToR routes A's
// SNAT address to A again. A learned them from B: it translates their replies, and gives
// new connections no port that would repeat one of theirs toward the same backend.
TEST(FlowSyncWorkerTest, ANodeThatCameBackTakesItsSessionsRepliesAndAvoidsTheirPorts) {
  Node a(NatOptions(/*ports=*/2)), b(NatOptions()), fresh_a(NatOptions(/*ports=*/2));
  ASSERT_TRUE(a.h().Apply(NatNode(kSnatA, 1, 2)));
  ASSERT_TRUE(b.h().Apply(NatNode(kSnatB, 1)));
  ASSERT_TRUE(fresh_a.h().Apply(NatNode(kSnatA, 1, 2)));
  const std::vector<Bytes> at_a = OpenNat(a, 1, 1000);  // port kPortMin, the one backend
  ASSERT_EQ(at_a.size(), 1u);
  b.h().worker().Learn(a.Announced(), 1010);
  ASSERT_EQ(b.h().Run(NatIn(0, kAck, kLine), 1020).wire.size(), 1u);  // B carries it...
  const auto carried = b.Announced();                                 // ...and announces it
  ASSERT_EQ(carried.size(), 1u);
  EXPECT_EQ(fresh_a.h().worker().Learn(carried, 1030), 1u);

  const Output to_client = fresh_a.h().Run(ReplyTo(at_a[0], kAck), 1040);
  ASSERT_EQ(to_client.wire.size(), 1u) << "drops: " << fresh_a.h().TotalDrops();
  EXPECT_EQ(to_client.wire[0], ToClient(0, kAck));
  // A new connection to the same backend: kPortMin would give it the adopted one's 4-tuple.
  const Output fresh = fresh_a.h().Run(NatIn(5, kSyn), 1050);
  ASSERT_EQ(fresh.wire.size(), 1u);
  EXPECT_EQ(uint16_t(fresh.wire[0][14 + 20] << 8 | fresh.wire[0][14 + 21]), kPortMin + 1);
  EXPECT_EQ(fresh_a.h().Count(Event::kNatPortsSkipped), 1u);
  // With both ports held (one by the adopted session), the next is refused, not doubled.
  EXPECT_TRUE(fresh_a.h().Run(NatIn(6, kSyn), 1060).wire.empty());
  EXPECT_EQ(fresh_a.h().Count(DropReason::kNatPortsExhausted), 1u);
}

// ICMP errors about an adopted session are translated as its own node would: the
// backend's port unreachable reaches the client, the client's about a reply the backend.
TEST(FlowSyncWorkerTest, IcmpErrorsAboutAnAdoptedSessionAreTranslatedBothWays) {
  Node a(NatOptions()), b(NatOptions());
  ASSERT_TRUE(a.h().Apply(NatNode(kSnatA, 1)));
  ASSERT_TRUE(b.h().Apply(NatNode(kSnatB, 1)));
  const std::vector<Bytes> at_a = OpenNat(a, 1, 1000);
  ASSERT_EQ(at_a.size(), 1u);
  b.h().worker().Learn(a.Announced(), 1010);
  const std::string client = NatClient(0);
  const char* backend = "192.168.30.1";
  // The backend quotes the segment as it got it (from A's SNAT address and port).
  const Bytes as_received = pb::Ipv4(kSnatA, backend, IPPROTO_TCP, pb::Tcp(kPortMin, 80, kAck, kLine), {.ttl = 63});
  const Bytes as_sent = pb::Ipv4(client, kNatVip, IPPROTO_TCP, pb::Tcp(30000, 80, kAck, kLine), {.ttl = 63});
  ASSERT_EQ(Bytes(at_a[0].begin() + 14, at_a[0].end()), as_received) << "the test's premise";
  const Output to_client =
      b.h().Run(In4(pb::Ipv4(backend, kSnatA, IPPROTO_ICMP, pb::Icmp(3, 3, 0, as_received))), 2000);
  ASSERT_EQ(to_client.wire.size(), 1u) << "drops: " << b.h().TotalDrops();
  EXPECT_EQ(to_client.wire[0], Out4(pb::Ipv4(kNatVip, client, IPPROTO_ICMP, pb::Icmp(3, 3, 0, as_sent), {.ttl = 63})));
  // The client's host quotes a reply as it got it (from the VIP).
  const Bytes as_client_got = pb::Ipv4(kNatVip, client, IPPROTO_TCP, pb::Tcp(80, 30000, kAck, kLine), {.ttl = 63});
  const Bytes as_backend_sent = pb::Ipv4(backend, kSnatA, IPPROTO_TCP, pb::Tcp(80, kPortMin, kAck, kLine), {.ttl = 63});
  const Output to_backend =
      b.h().Run(In4(pb::Ipv4(client, kNatVip, IPPROTO_ICMP, pb::Icmp(3, 4, 1400, as_client_got))), 2001);
  ASSERT_EQ(to_backend.wire.size(), 1u) << "drops: " << b.h().TotalDrops();
  EXPECT_EQ(to_backend.wire[0],
            Out4(pb::Ipv4(client, backend, IPPROTO_ICMP, pb::Icmp(3, 4, 1400, as_backend_sent), {.ttl = 63})));
  EXPECT_EQ(b.h().Count(Event::kNatIcmpErrors), 2u);
  EXPECT_EQ(b.h().Count(Event::kFlowsRescued), 0u) << "errors do not make the session this node's";
}

TEST(FlowSyncWorkerTest, AnAdoptedSessionEndsWithItsBackendOrItsTimeout) {
  Node a(NatOptions()), b(NatOptions());
  ASSERT_TRUE(a.h().Apply(NatNode(kSnatA, 1)));
  ASSERT_TRUE(b.h().Apply(NatNode(kSnatB, 1)));
  OpenNat(a, 2, 1000);
  const auto announced = a.Announced();
  ASSERT_EQ(announced.size(), 2u);
  b.h().worker().Learn(announced, 1010);
  // Connection 0's backend goes away on B: its session cannot go on.
  DataplaneConfig other_backend = NatNode(kSnatB, 1);
  for (auto& svc : other_backend.services) {
    if (svc.mode == ForwardingMode::kNat) svc.backends = {{Addr("192.168.30.9")}};
  }
  ASSERT_TRUE(b.h().Apply(other_backend));
  EXPECT_TRUE(b.h().Run(NatIn(0, kAck, kLine), 2000).wire.empty());
  EXPECT_EQ(b.h().Count(DropReason::kNatNotSyn), 1u);
  EXPECT_EQ(b.h().Count(Event::kFlowRepicks), 1u);
  // Connection 1, never announced again, is gone after its timeout and a refresh interval.
  ASSERT_TRUE(b.h().Apply(NatNode(kSnatB, 1)));
  const Millis established = TestConfig().timeouts.tcp_established;
  EXPECT_TRUE(b.h().Run(NatIn(1, kAck, kLine), 1010 + established + kRefreshMs + 1).wire.empty());
  EXPECT_EQ(b.h().Count(Event::kFlowsRescued), 0u);
}

TEST(FlowSyncWorkerTest, NatSessionsOfUnknownServicesOrBackendsAreCountedNotAdopted) {
  Node a(NatOptions()), b(NatOptions());
  ASSERT_TRUE(a.h().Apply(NatNode(kSnatA, 1)));
  ASSERT_TRUE(b.h().Apply(NatNode(kSnatB, 1)));
  OpenNat(a, 1, 1000);
  const SyncedFlow f = a.Announced().at(0);
  SyncedFlow unknown_backend = f, dsr_service = f, family = f;
  unknown_backend.backend = Addr("192.168.99.1");
  dsr_service.key.dst = Addr("10.1.0.20");  // TestConfig's kMultiService: DSR
  family.snat = Addr("fd00:90::100");
  const SyncedFlow flows[] = {unknown_backend, dsr_service, family};
  EXPECT_EQ(b.h().worker().Learn(flows, 1020), 0u);
  EXPECT_EQ(b.h().Count(Event::kFlowsLearnedUnknown), 3u);
}

}  // namespace
}  // namespace lb::dataplane
