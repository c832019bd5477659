// AfPacketPort against the real kernel: a veth pair (the kernel's default offloads on) in
// a network namespace of the test's own, frames injected on the peer end through a
// packet socket with PACKET_VNET_HDR (so the kernel builds GSO frames and partial
// checksums as a local TCP sender would), and received through the port's ethdev as a
// worker does: Pull, then rte_eth_rx_burst. Root only (skipped otherwise).
#include "dataplane/dpdk/af_packet_port.h"

#include <rte_ethdev.h>
#include <rte_mbuf.h>

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "absl/strings/ascii.h"
#include "dataplane/dpdk/port.h"
#include "dataplane/offload.h"
#include "tests/dataplane/fixtures.h"
#include "tests/dataplane/worker_harness.h"

namespace lb::dataplane::test {
namespace {

constexpr uint8_t kPsh = 0x08;

// The peer end "peer0": a packet socket with PACKET_VNET_HDR, as a sender with offloads.
class Peer {
 public:
  Peer() {
    fd_ = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
    const int one = 1;
    setsockopt(fd_, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof(one));
    setsockopt(fd_, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(one));
    timeval timeout{.tv_sec = 2, .tv_usec = 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    sockaddr_ll addr{};
    addr.sll_family = AF_PACKET;
    addr.sll_protocol = htons(ETH_P_ALL);
    addr.sll_ifindex = int(if_nametoindex("peer0"));
    ok_ = fd_ >= 0 && bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  }
  ~Peer() { close(fd_); }
  bool ok() const { return ok_; }

  bool Send(const VnetHeader& vnet, const Bytes& frame) {
    Bytes buf(sizeof(vnet));
    std::memcpy(buf.data(), &vnet, sizeof(vnet));
    buf.insert(buf.end(), frame.begin(), frame.end());
    return send(fd_, buf.data(), buf.size(), 0) == ssize_t(buf.size());
  }
  // The next frame peer0 receives, without its virtio_net_hdr; empty after 2 s.
  Bytes Receive() {
    Bytes buf(70000);
    const ssize_t n = recv(fd_, buf.data(), buf.size(), 0);
    if (n < ssize_t(sizeof(VnetHeader))) return {};
    return Bytes(buf.begin() + sizeof(VnetHeader), buf.begin() + n);
  }

 private:
  int fd_ = -1;
  bool ok_ = false;
};

class AfPacketPortTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // A network namespace of this test's own (the test thread's, from here on), with the
    // veth pair: it goes when the process ends, also when a test fails.
    if (geteuid() != 0) return;
    if (unshare(CLONE_NEWNET) != 0) {
      setup_error_ = std::string("unshare(CLONE_NEWNET): ") + std::strerror(errno);
      return;
    }
    // No IPv6 in the namespace: the kernel's own frames (MLD, ND) would come in between.
    if (std::system(
            "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 && "
            "ip link add name port0 type veth peer name peer0 && ip link set port0 up && ip link set peer0 up") != 0) {
      setup_error_ = "ip link add name port0 type veth peer name peer0: failed";
    }
  }

  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (a network namespace and a veth pair)";
    ASSERT_EQ(setup_error_, "");
    auto port = dpdk::AfPacketPort::Open(
        "port0", {.queues = 2, .rx_frames = 64, .tx_frames = 64, .pool = lb::testing::TestPool()});
    ASSERT_TRUE(port.ok()) << port.status();
    port_ = *std::move(port);
    auto ethdev = dpdk::Port::Open(
        port_->ethdev_name(), {.rx_queues = 2, .tx_queues = 2, .pool = lb::testing::TestPool(), .mac = port_->mac()});
    ASSERT_TRUE(ethdev.ok()) << ethdev.status();
    ethdev_ = *std::move(ethdev);
    ASSERT_TRUE(peer_.ok());
  }

  void TearDown() override {
    ethdev_.reset();
    port_.reset();
  }

  // Pulls and receives on both queues until `count` packets the test sent (from
  // kRouterMac) came, or 2 s passed. Anything else the kernel sends is left out.
  std::vector<Bytes> ReceiveAtPort(size_t count) {
    std::vector<Bytes> got;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (got.size() < count && std::chrono::steady_clock::now() < deadline) {
      for (uint16_t q = 0; q < 2; ++q) {
        port_->pump(q)->Pull(counters_);
        rte_mbuf* pkts[kMaxBurst];
        const uint16_t n = rte_eth_rx_burst(ethdev_->id(), q, pkts, kMaxBurst);
        for (uint16_t i = 0; i < n; ++i) {
          Bytes frame = lb::testing::FromMbuf(pkts[i]);
          rte_pktmbuf_free(pkts[i]);
          if (frame.size() >= 12 && std::equal(kRouterMac.begin(), kRouterMac.end(), frame.begin() + 6)) {
            got.push_back(std::move(frame));
          }
        }
        if (n > 0) queues_seen_ |= 1u << q;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return got;
  }

  inline static std::string setup_error_;
  std::unique_ptr<dpdk::AfPacketPort> port_;
  std::unique_ptr<dpdk::Port> ethdev_;
  Peer peer_;
  WorkerCounters counters_;
  uint32_t queues_seen_ = 0;
};

TEST_F(AfPacketPortTest, AGsoFrameFromTheKernelArrivesAsTheSegmentsOnTheWire) {
  const Bytes payload = Payload(20000);
  constexpr uint16_t kMss = 1448;
  Bytes frame = In4(pb::Ipv4("192.0.2.1", "10.0.0.1", IPPROTO_TCP, TcpSeq(1000, kAck | kPsh, payload),
                             {.df = true, .id = 77, .l4_checksum = false}));
  MakePartial(frame, 14, 34, 16, true);
  ASSERT_TRUE(peer_.Send({.flags = VnetHeader::kNeedsChecksum,
                          .gso_type = VnetHeader::kGsoTcpV4,
                          .hdr_len = 54,
                          .gso_size = kMss,
                          .csum_start = 34,
                          .csum_offset = 16},
                         frame));
  const std::vector<Bytes> expected = Tcp4Segments(1000, kAck | kPsh, payload, kMss, 77);
  const std::vector<Bytes> got = ReceiveAtPort(expected.size());
  EXPECT_EQ(got, expected);
  EXPECT_EQ(counters_.Get(Event::kGsoFrames), 1u);
  EXPECT_EQ(counters_.Get(Event::kGsoSegments), expected.size());
  EXPECT_NE(queues_seen_, 3u) << "one flow, one queue";
}

TEST_F(AfPacketPortTest, APartialChecksumIsCompleted) {
  const Bytes complete = In4(pb::Ipv4("192.0.2.1", "10.0.0.1", IPPROTO_UDP, pb::Udp(1000, 53, Payload(64))));
  Bytes partial = complete;
  MakePartial(partial, 14, 34, 6, true);
  ASSERT_TRUE(peer_.Send({.flags = VnetHeader::kNeedsChecksum, .csum_start = 34, .csum_offset = 6}, partial));
  EXPECT_EQ(ReceiveAtPort(1), std::vector<Bytes>{complete});
  EXPECT_EQ(counters_.Get(Event::kChecksumsCompleted), 1u);
}

TEST_F(AfPacketPortTest, AVlanTaggedFrameKeepsItsTag) {
  // The kernel takes the tag off before packet sockets see the frame; the port puts it back.
  const Bytes tagged = In4(pb::Ipv4("192.0.2.1", "10.0.0.1", IPPROTO_UDP, pb::Udp(1000, 53, Payload(30))), 42);
  ASSERT_TRUE(peer_.Send({}, tagged));
  EXPECT_EQ(ReceiveAtPort(1), std::vector<Bytes>{tagged});
}

TEST_F(AfPacketPortTest, WhatTheWorkerSendsLeavesAsItIs) {
  const Bytes frame = In4(pb::Ipv4("10.0.0.1", "192.0.2.1", IPPROTO_UDP, pb::Udp(53, 1000, Payload(100))));
  rte_mbuf* m = lb::testing::ToMbuf(frame);
  ASSERT_NE(m, nullptr);
  ASSERT_EQ(rte_eth_tx_burst(ethdev_->id(), 1, &m, 1), 1);
  port_->pump(1)->Push(counters_);
  EXPECT_EQ(peer_.Receive(), frame);
}

// The NIC-side drop an operator must see: frames that arrive faster than the port is
// polled overflow the kernel's RX ring (64 frames a queue here). The kernel counts them
// (PACKET_STATISTICS, read every kStatisticsEvery pulls) and the port reports them as
// rx_ring_full; the ethdev's own counters count exactly what was handed over.
TEST_F(AfPacketPortTest, AFullRingShowsAsKernelDrops) {
  const Bytes frame = In4(pb::Ipv4("192.0.2.1", "10.0.0.1", IPPROTO_UDP, pb::Udp(1000, 53, Payload(32))));
  constexpr int kSent = 1000;  // one flow: one queue, 64 frames
  for (int i = 0; i < kSent; ++i) ASSERT_TRUE(peer_.Send({}, frame));
  size_t received = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (counters_.Get(DropReason::kRxRingFull) == 0 && std::chrono::steady_clock::now() < deadline) {
    for (uint16_t q = 0; q < 2; ++q) {
      port_->pump(q)->Pull(counters_);
      rte_mbuf* pkts[kMaxBurst];
      const uint16_t n = rte_eth_rx_burst(ethdev_->id(), q, pkts, kMaxBurst);
      for (uint16_t i = 0; i < n; ++i) {
        if (lb::testing::FromMbuf(pkts[i]) == frame) ++received;
        rte_pktmbuf_free(pkts[i]);
      }
    }
  }
  const uint64_t dropped = counters_.Get(DropReason::kRxRingFull);
  EXPECT_GT(dropped, 0u) << "the ring overflowed: the kernel dropped frames";
  EXPECT_LT(received, size_t(kSent)) << received << " received";
  EXPECT_LE(received + dropped, size_t(kSent)) << "no frame counted twice";
  EXPECT_GE(ethdev_->ReadCounters().rx_packets, received) << "the ethdev counted what it handed over";
}

TEST_F(AfPacketPortTest, TheEthdevHasTheInterfacesMac) {
  // As ip(8) sees it (this thread's namespace: /sys shows the host's).
  char address[18] = {};
  FILE* f = popen("ip -o link show port0 | grep -o 'link/ether [0-9a-f:]*' | cut -d' ' -f2", "r");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(std::fscanf(f, "%17s", address), 1);
  pclose(f);
  EXPECT_EQ(absl::AsciiStrToLower(ethdev_->MacString()), address);
  EXPECT_TRUE(port_->LinkUp());
}

}  // namespace
}  // namespace lb::dataplane::test
