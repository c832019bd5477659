// lbd's flow-sync thread (control/lbd/flow_syncer.h) against an attacker on the path: it
// takes a peer's datagram once, only from that peer, only when dated near its clock, and
// only what the peer may announce, at the peer's budget. The node under test runs on
// 127.0.0.1; its peer is played by a socket on 127.0.0.2 that encodes as a node would, and
// an off-path sender by one on 127.0.0.3.
#include "control/lbd/flow_syncer.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <rte_ring.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <string>
#include <thread>

namespace lb::control {
namespace {

using dataplane::SyncedFlow;
namespace fs = dataplane::flow_sync;

const SipKey kClusterKey = fs::KeyFromSecret("the cluster's flow-hash secret..");
const IpAddress kSelf = *IpAddress::Parse("127.0.0.1");
const IpAddress kPeer = *IpAddress::Parse("127.0.0.2");
const IpAddress kOffPath = *IpAddress::Parse("127.0.0.3");
const IpAddress kPeerSnat = *IpAddress::Parse("10.93.0.2");
const IpAddress kSelfSnat = *IpAddress::Parse("10.93.0.1");

uint64_t WallMicros() {
  return uint64_t(
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
}

SyncedFlow Flow(uint16_t client_port) {
  SyncedFlow f;
  f.key.src = *IpAddress::Parse("192.0.2.1");
  f.key.dst = *IpAddress::Parse("10.100.0.10");
  f.key.src_port_be = htons(client_port);
  f.key.dst_port_be = htons(80);
  f.key.protocol = IPPROTO_TCP;
  f.backend = *IpAddress::Parse("10.92.1.2");
  f.state = 2;
  return f;
}
SyncedFlow Session(uint16_t client_port, const IpAddress& snat) {
  SyncedFlow f = Flow(client_port);
  f.nat = true;
  f.snat = snat;
  f.snat_port = 2000;
  return f;
}

// A UDP socket bound to `address` (any port), which sends to the node under test.
class Sender {
 public:
  Sender(const IpAddress& address, uint16_t to_port) : to_port_(to_port) {
    fd_ = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    std::memcpy(&a.sin_addr, address.bytes.data() + 12, 4);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0) << std::strerror(errno);
  }
  ~Sender() { close(fd_); }
  void Send(const std::vector<uint8_t>& d) {
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(to_port_);
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(sendto(fd_, d.data(), d.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof(to)), ssize_t(d.size()));
  }
  int fd() const { return fd_; }

 private:
  int fd_ = -1;
  uint16_t to_port_;
};

class FlowSyncerTest : public ::testing::Test {
 protected:
  void Start(uint32_t learn_per_second = 1'000'000) {
    port_ = uint16_t(20000 + getpid() % 20000);
    announce_ = rte_ring_create_elem(("fs_announce_" + std::to_string(serial_)).c_str(), sizeof(SyncedFlow), 1024,
                                     SOCKET_ID_ANY, RING_F_SP_ENQ | RING_F_SC_DEQ);
    learn_ = rte_ring_create_elem(("fs_learn_" + std::to_string(serial_++)).c_str(), sizeof(SyncedFlow), 65536,
                                  SOCKET_ID_ANY, RING_F_SP_ENQ | RING_F_SC_DEQ);
    ASSERT_NE(announce_, nullptr);
    ASSERT_NE(learn_, nullptr);
    FlowSyncer::Options o;
    o.self = kSelf;
    o.self_snat_addresses = {kSelfSnat};
    o.peers = {{.address = kPeer, .snat_addresses = {kPeerSnat}}};
    o.port = port_;
    o.key = kClusterKey;
    o.max_skew_ms = 2000;
    o.learn_per_second = learn_per_second;
    o.journal = {.tcp_ttl_ms = 60'000, .udp_ttl_ms = 60'000, .capacity = 4096};
    auto s = FlowSyncer::Start(o, {announce_}, {learn_});
    ASSERT_TRUE(s.ok()) << s.status();
    syncer_ = *std::move(s);
    peer_ = std::make_unique<Sender>(kPeer, port_);
  }
  void TearDown() override {
    syncer_.reset();
    rte_ring_free(announce_);
    rte_ring_free(learn_);
  }

  // A datagram as the peer would send it, `stamp_offset_us` from now.
  std::vector<uint8_t> FromPeer(fs::MessageType type, std::vector<SyncedFlow> flows, int64_t stamp_offset_us = 0,
                                const IpAddress& as = kPeer) {
    std::vector<uint8_t> d;
    fs::Encode(fs::SenderKey(kClusterKey, as), type, uint64_t(int64_t(WallMicros()) + stamp_offset_us), flows, d);
    return d;
  }
  // Waits until the node has received `n` datagrams in all.
  void AwaitReceived(uint64_t n) {
    for (int i = 0; i < 400 && syncer_->View().datagrams_received < n; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    ASSERT_GE(syncer_->View().datagrams_received, n);
  }
  std::vector<SyncedFlow> Learned() {
    std::vector<SyncedFlow> out(rte_ring_count(learn_));
    rte_ring_sc_dequeue_bulk_elem(learn_, out.data(), sizeof(SyncedFlow), unsigned(out.size()), nullptr);
    return out;
  }

  static inline int serial_ = 0;
  uint16_t port_ = 0;
  rte_ring* announce_ = nullptr;
  rte_ring* learn_ = nullptr;
  std::unique_ptr<FlowSyncer> syncer_;
  std::unique_ptr<Sender> peer_;
};

TEST_F(FlowSyncerTest, APeersFlowsAreLearnedOnce) {
  Start();
  const std::vector<uint8_t> d = FromPeer(fs::MessageType::kFlows, {Flow(1), Flow(2)});
  peer_->Send(d);
  AwaitReceived(1);
  EXPECT_EQ(Learned(), (std::vector<SyncedFlow>{Flow(1), Flow(2)}));
  // The same datagram again, as an attacker who captured it would send it.
  for (int i = 0; i < 100; ++i) peer_->Send(d);
  AwaitReceived(101);
  EXPECT_TRUE(Learned().empty());
  EXPECT_EQ(syncer_->View().datagrams_replayed, 100u);
  EXPECT_EQ(syncer_->View().flows_received, 2u);
}

TEST_F(FlowSyncerTest, ADatagramPassesOnlyFromItsSender) {
  Start();
  // The peer's datagram sent from an address that is not a peer: not even decoded.
  Sender off_path(kOffPath, port_);
  off_path.Send(FromPeer(fs::MessageType::kFlows, {Flow(1)}));
  // An off-path node's datagram (with the secret) sent from the peer's address: its tag
  // was made for another sender.
  peer_->Send(FromPeer(fs::MessageType::kFlows, {Flow(2)}, 0, kOffPath));
  AwaitReceived(2);
  EXPECT_EQ(syncer_->View().datagrams_rejected, 2u);
  EXPECT_TRUE(Learned().empty());
}

TEST_F(FlowSyncerTest, DatagramsDatedOutsideTheClockWindowAreRefused) {
  Start();
  peer_->Send(FromPeer(fs::MessageType::kFlows, {Flow(1)}, -3'000'000));  // captured 3 s ago
  peer_->Send(FromPeer(fs::MessageType::kFlows, {Flow(2)}, +3'000'000));  // dated ahead
  AwaitReceived(2);
  EXPECT_EQ(syncer_->View().datagrams_stale, 2u);
  EXPECT_TRUE(Learned().empty());
  // Within the window (and newer than the last taken): taken.
  peer_->Send(FromPeer(fs::MessageType::kFlows, {Flow(3)}, -1'000'000));
  AwaitReceived(3);
  EXPECT_EQ(Learned(), std::vector<SyncedFlow>{Flow(3)});
  // Older than the last taken, though within the window: a replay.
  peer_->Send(FromPeer(fs::MessageType::kFlows, {Flow(4)}, -1'500'000));
  AwaitReceived(4);
  EXPECT_EQ(syncer_->View().datagrams_replayed, 1u);
  EXPECT_TRUE(Learned().empty());
}

// Its own, and this node's (sessions it carried while this node was away), never a third
// node's.
TEST_F(FlowSyncerTest, APeerAnnouncesSessionsOnlyOnItsOwnSnatAddressesOrThisNodes) {
  Start();
  const IpAddress third = *IpAddress::Parse("10.93.0.3");
  peer_->Send(
      FromPeer(fs::MessageType::kFlows, {Session(1, kPeerSnat), Session(2, third), Flow(3), Session(4, kSelfSnat)}));
  AwaitReceived(1);
  EXPECT_EQ(Learned(), (std::vector<SyncedFlow>{Session(1, kPeerSnat), Flow(3), Session(4, kSelfSnat)}));
  EXPECT_EQ(syncer_->View().sessions_refused, 1u);
}

// Per peer: what it sent was taken, learned, rejected or refused, when it was last heard
// and how late its last datagram was.
TEST_F(FlowSyncerTest, EachPeerIsAccountedForOnItsOwn) {
  Start();
  ASSERT_EQ(syncer_->View().peer_stats.size(), 1u);
  EXPECT_EQ(syncer_->View().peer_stats[0].last_heard_unix_ms, 0) << "never heard";
  const int64_t before_ms = int64_t(WallMicros() / 1000);
  peer_->Send(FromPeer(fs::MessageType::kFlows, {Flow(1), Flow(2), Session(3, *IpAddress::Parse("10.93.0.3"))},
                       -200'000));                                         // 200 ms late, one refused
  peer_->Send(FromPeer(fs::MessageType::kFlows, {Flow(4)}, -3'000'000));   // stale: rejected
  peer_->Send(FromPeer(fs::MessageType::kFlows, {Flow(5)}, 0, kOffPath));  // not its tag: rejected
  AwaitReceived(3);
  const FlowSyncView::Peer p = syncer_->View().peer_stats[0];
  EXPECT_EQ(p.address, "127.0.0.2");
  EXPECT_EQ(p.datagrams, 1u);
  EXPECT_EQ(p.flows_learned, 2u);
  EXPECT_EQ(p.flows_refused, 1u);
  EXPECT_EQ(p.datagrams_rejected, 2u);
  EXPECT_GE(p.last_heard_unix_ms, before_ms);
  EXPECT_LE(p.last_heard_unix_ms, int64_t(WallMicros() / 1000));
  EXPECT_GE(p.delay_us, 200'000);
  EXPECT_LT(p.delay_us, 1'200'000);
}

TEST_F(FlowSyncerTest, APeerIsHeldToItsLearnBudget) {
  Start(/*learn_per_second=*/100);
  std::vector<SyncedFlow> flows;
  for (uint16_t p = 1; p <= 50; ++p) flows.push_back(Flow(p));
  // 200 flows at once: at most a second's worth (100) is taken.
  for (int i = 0; i < 4; ++i) peer_->Send(FromPeer(fs::MessageType::kFlows, flows, i));
  AwaitReceived(4);
  const size_t learned = Learned().size();
  EXPECT_LE(learned, 101u);
  EXPECT_GE(learned, 50u);
  EXPECT_EQ(syncer_->View().flows_over_budget, 200 - learned);
}

TEST_F(FlowSyncerTest, ReplayedDumpRequestsAtTenThousandASecondCostNoDump) {
  Start();
  // The node knows two flows (its journal): the peer's dump request is answered with them.
  const std::vector<uint8_t> flows = FromPeer(fs::MessageType::kFlows, {Flow(1), Flow(2)});
  peer_->Send(flows);
  AwaitReceived(1);
  EXPECT_EQ(Learned().size(), 2u);
  const std::vector<uint8_t> request = FromPeer(fs::MessageType::kDumpRequest, {});
  peer_->Send(request);
  AwaitReceived(2);
  for (int i = 0; i < 400 && syncer_->View().dumps_sent == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(syncer_->View().dumps_sent, 1u);
  // A fresh request right after: refused (a node asks once a second).
  peer_->Send(FromPeer(fs::MessageType::kDumpRequest, {}));
  AwaitReceived(3);
  EXPECT_EQ(syncer_->View().dump_requests_refused, 1u);

  // 10,000 a second for a second, of the captured request and the captured flows:
  // nothing is learned, nothing dumped, and the sync thread's CPU stays small.
  rusage before{}, after{};
  getrusage(RUSAGE_SELF, &before);
  const auto start = std::chrono::steady_clock::now();
  uint64_t sent = 0;
  for (int tick = 0; tick < 100; ++tick) {
    for (int i = 0; i < 50; ++i, sent += 2) {
      peer_->Send(request);
      peer_->Send(flows);
    }
    std::this_thread::sleep_until(start + std::chrono::milliseconds(10 * (tick + 1)));
  }
  getrusage(RUSAGE_SELF, &after);
  for (int i = 0; i < 200 && syncer_->View().datagrams_replayed < sent; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const FlowSyncView v = syncer_->View();
  EXPECT_EQ(v.dumps_sent, 1u);
  EXPECT_TRUE(Learned().empty());
  // What the socket did not drop was refused as a replay; nothing else happened.
  EXPECT_GT(v.datagrams_replayed, sent / 2);
  EXPECT_EQ(v.datagrams_replayed + 3, v.datagrams_received);
  auto cpu_ms = [](const rusage& r) {
    return (r.ru_utime.tv_sec + r.ru_stime.tv_sec) * 1000.0 + (r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1000.0;
  };
  // The whole process (this thread's sending included) in that second: each replay costs
  // the sync thread one tag. A bound, not a speed claim.
  EXPECT_LT(cpu_ms(after) - cpu_ms(before), 900.0);
}

}  // namespace
}  // namespace lb::control
