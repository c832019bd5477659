// Packets in -> packets out through Worker::ProcessBurst on real rte_mbufs. Expected
// outputs are built byte by byte by tests/helpers/packet_builder (with its own
// checksums), so these tables check the rewrites against a second implementation.
#include "dataplane/worker/worker.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "tests/dataplane/fixtures.h"
#include "tests/dataplane/worker_harness.h"

namespace lb::dataplane {
namespace {

using namespace lb::dataplane::test;
using lb::testing::Output;
using lb::testing::WorkerHarness;

class WorkerTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(h_.Apply(TestConfig())); }

  // Runs one frame and expects exactly one frame on the wire, equal to `expected`.
  void ExpectWire(const Bytes& in, const Bytes& expected) {
    const Output out = h_.Run(in);
    ASSERT_EQ(out.wire.size(), 1u) << "kernel=" << out.kernel.size() << " drops=" << h_.TotalDrops();
    EXPECT_TRUE(out.kernel.empty());
    EXPECT_BYTES_EQ(out.wire[0], expected);
  }

  // Runs one frame and expects it dropped for `reason`.
  void ExpectDrop(const Bytes& in, DropReason reason) {
    const uint64_t before = h_.Count(reason);
    const Output out = h_.Run(in);
    EXPECT_TRUE(out.wire.empty());
    EXPECT_TRUE(out.kernel.empty());
    EXPECT_EQ(h_.Count(reason), before + 1) << kDropReasonInfo[size_t(reason)].name;
  }

  WorkerHarness h_;
};

// --- Encapsulations: exact output bytes -------------------------------------------------

TEST_F(WorkerTest, Ipv4InIpv4) {
  const pb::Ipv4Options in{.ttl = 64, .tos = 0xb8, .df = true, .id = 7};
  pb::Ipv4Options inner = in;
  inner.ttl = 63;
  ExpectWire(In4(pb::Ipv4("192.0.2.1", "10.1.0.10", 6, pb::Tcp(1234, 80, kSyn), in)),
             Out4(pb::Ipv4("10.255.0.1", "192.168.10.1", 4,
                           pb::Ipv4("192.0.2.1", "10.1.0.10", 6, pb::Tcp(1234, 80, kSyn), inner),
                           {.ttl = 64, .tos = 0xb8, .df = true})));
  EXPECT_EQ(h_.Count(Event::kForwarded), 1u);
  EXPECT_EQ(h_.Count(Event::kFlowInserts), 1u);
}

TEST_F(WorkerTest, VlanInPaddingOutAndNoDfGetsAnId) {
  // 802.1Q in, Ethernet padding after a short datagram; DF clear so the outer header
  // carries an identification (the worker's first: 0) and no DF.
  const Bytes inner_in = pb::Ipv4("192.0.2.1", "10.1.0.10", 17, pb::Udp(5353, 53, {1, 2, 3}));
  const Bytes inner_out = pb::Ipv4("192.0.2.1", "10.1.0.10", 17, pb::Udp(5353, 53, {1, 2, 3}), {.ttl = 63});
  ExpectWire(In4(inner_in, /*vlan=*/42, /*pad_to=*/64),
             Out4(pb::Ipv4("10.255.0.1", "192.168.10.1", 4, inner_out, {.ttl = 64})));
}

TEST_F(WorkerTest, EgressVlanTag) {
  auto c = TestConfig();
  c.next_hop.vlan = 100;
  ASSERT_TRUE(h_.Apply(c));
  const pb::Ipv4Options o{.df = true};
  pb::Ipv4Options inner = o;
  inner.ttl = 63;
  ExpectWire(In4(pb::Ipv4("192.0.2.1", "10.1.0.10", 6, pb::Tcp(1, 80, kAck), o)),
             Out4(pb::Ipv4("10.255.0.1", "192.168.10.1", 4,
                           pb::Ipv4("192.0.2.1", "10.1.0.10", 6, pb::Tcp(1, 80, kAck), inner), {.df = true}),
                  /*vlan=*/100));
}

TEST_F(WorkerTest, Ipv6InIpv6) {
  const uint32_t hash = Hash("2001:db8::1", 40000, "2001:db8:1::10", 80, 6);
  const Bytes inner_out =
      pb::Ipv6("2001:db8::1", "2001:db8:1::10", 6, pb::Tcp(40000, 80, kSyn), {.hop_limit = 9, .traffic_class = 0x28});
  ExpectWire(
      In6(pb::Ipv6("2001:db8::1", "2001:db8:1::10", 6, pb::Tcp(40000, 80, kSyn),
                   {.hop_limit = 10, .traffic_class = 0x28})),
      Out6(pb::Ipv6("fd00:ff::1", "fd00:10::1", 41, inner_out, {.traffic_class = 0x28, .flow_label = hash & 0xfffff})));
}

TEST_F(WorkerTest, Ipv4InIpv6) {
  const uint32_t hash = Hash("192.0.2.1", 999, "10.1.0.12", 53, 17);
  ExpectWire(In4(pb::Ipv4("192.0.2.1", "10.1.0.12", 17, pb::Udp(999, 53, {9}), {.df = true})),
             Out6(pb::Ipv6("fd00:ff::1", "fd00:10::3", 4,
                           pb::Ipv4("192.0.2.1", "10.1.0.12", 17, pb::Udp(999, 53, {9}), {.ttl = 63, .df = true}),
                           {.flow_label = hash & 0xfffff})));
}

TEST_F(WorkerTest, Ipv6InIpv4) {
  ExpectWire(In6(pb::Ipv6("2001:db8::1", "2001:db8:1::12", 6, pb::Tcp(5, 80, kAck))),
             Out4(pb::Ipv4("10.255.0.1", "192.168.10.3", 41,
                           pb::Ipv6("2001:db8::1", "2001:db8:1::12", 6, pb::Tcp(5, 80, kAck), {.hop_limit = 63}),
                           {.df = true})));
}

TEST_F(WorkerTest, GueOverIpv4) {
  const uint32_t hash = Hash("192.0.2.1", 3333, "10.1.0.11", 53, 17);
  const Bytes inner = pb::Ipv4("192.0.2.1", "10.1.0.11", 17, pb::Udp(3333, 53, {7, 7}), {.ttl = 63});
  // IPv4 GUE goes without a UDP checksum (0).
  ExpectWire(In4(pb::Ipv4("192.0.2.1", "10.1.0.11", 17, pb::Udp(3333, 53, {7, 7}))),
             Out4(pb::Ipv4("10.255.0.1", "192.168.10.2", 17,
                           pb::Udp(GueSourcePort(hash), 6080, pb::Concat(pb::Gue(4), inner)), {.l4_checksum = false})));
}

TEST_F(WorkerTest, GueOverIpv6HasAChecksum) {
  const uint32_t hash = Hash("2001:db8::7", 3333, "2001:db8:1::11", 53, 17);
  const Bytes inner =
      pb::Ipv6("2001:db8::7", "2001:db8:1::11", 17, pb::Udp(3333, 53, Bytes(33, 0xab)), {.hop_limit = 63});
  ExpectWire(
      In6(pb::Ipv6("2001:db8::7", "2001:db8:1::11", 17, pb::Udp(3333, 53, Bytes(33, 0xab)))),
      Out6(pb::Ipv6("fd00:ff::1", "fd00:10::2", 17, pb::Udp(GueSourcePort(hash), 6080, pb::Concat(pb::Gue(41), inner)),
                    {.flow_label = hash & 0xfffff})));
}

TEST_F(WorkerTest, OuterSourceVariesPerFlowWithinThePrefix) {
  auto c = TestConfig();
  c.encap.source_v4 = *IpPrefix::Parse("10.255.0.0/24");
  ASSERT_TRUE(h_.Apply(c));
  std::set<Bytes> sources;
  std::vector<Bytes> in;
  for (uint16_t port = 1000; port < 1064; ++port) {
    in.push_back(In4(pb::Ipv4("192.0.2.1", "10.1.0.10", 6, pb::Tcp(port, 80, kSyn))));
  }
  const Output out = h_.Run(in);
  ASSERT_EQ(out.wire.size(), in.size());
  for (const Bytes& f : out.wire) {
    EXPECT_EQ(Bytes(f.begin() + 26, f.begin() + 29), (Bytes{10, 255, 0}));
    sources.insert(Bytes(f.begin() + 26, f.begin() + 30));
  }
  EXPECT_GT(sources.size(), 40u) << "64 flows should use many of the 256 sources";
}

TEST_F(WorkerTest, OnLinkBackendsGetTheirOwnMac) {
  auto c = TestConfig();
  const MacAddress backend_mac = {0x02, 0, 0, 0, 0, 0xcc};
  c.neighbors[Addr("192.168.10.1")] = backend_mac;
  ASSERT_TRUE(h_.Apply(c));
  const pb::Ipv4Options o{.df = true};
  pb::Ipv4Options inner = o;
  inner.ttl = 63;
  const pb::Mac mac = {0x02, 0, 0, 0, 0, 0xcc};
  ExpectWire(In4(pb::Ipv4("192.0.2.1", "10.1.0.10", 6, pb::Tcp(7, 80, kAck), o)),
             pb::Ether(mac, kPortMac, 0x0800,
                       pb::Ipv4("10.255.0.1", "192.168.10.1", 4,
                                pb::Ipv4("192.0.2.1", "10.1.0.10", 6, pb::Tcp(7, 80, kAck), inner), {.df = true})));
}

TEST_F(WorkerTest, UnknownGatewayDropsInsteadOfSendingToNoOne) {
  auto c = TestConfig();
  c.next_hop.gateway_mac = {};
  ASSERT_TRUE(h_.Apply(c));
  ExpectDrop(In4(pb::Ipv4("192.0.2.1", "10.1.0.10", 6, pb::Tcp(7, 80, kSyn))), DropReason::kNoNextHop);
  // An on-link backend needs no gateway.
  c.neighbors[Addr("192.168.10.1")] = {0x02, 0, 0, 0, 0, 0xcc};
  ASSERT_TRUE(h_.Apply(c));
  EXPECT_EQ(h_.Run(In4(pb::Ipv4("192.0.2.1", "10.1.0.10", 6, pb::Tcp(7, 80, kSyn)))).wire.size(), 1u);
}

// --- ICMP ------------------------------------------------------------------------------

TEST_F(WorkerTest, EchoRequestToVipIsAnswered) {
  const Bytes body = {'p', 'i', 'n', 'g'};
  ExpectWire(In4(pb::Ipv4("192.0.2.1", "10.1.0.10", 1, pb::Icmp(8, 0, 0x00420001, body), {.ttl = 50, .id = 99})),
             Reply4(pb::Ipv4("10.1.0.10", "192.0.2.1", 1, pb::Icmp(0, 0, 0x00420001, body), {.ttl = 64, .id = 99})));
  ExpectWire(In6(pb::Ipv6("2001:db8::1", "2001:db8:1::10", 58, pb::Icmp(128, 0, 0x00420001, body), {.hop_limit = 50})),
             Reply6(pb::Ipv6("2001:db8:1::10", "2001:db8::1", 58, pb::Icmp(129, 0, 0x00420001, body))));
  EXPECT_EQ(h_.Count(Event::kEchoReplies), 2u);
}

TEST_F(WorkerTest, EchoRequestWithABadChecksumIsNotAnswered) {
  Bytes bad_ip = In4(pb::Ipv4("192.0.2.1", "10.1.0.10", 1, pb::Icmp(8, 0, 1)));
  bad_ip[15] ^= 0x2e;  // TOS changed after the header checksum was computed
  ExpectDrop(bad_ip, DropReason::kBadChecksum);
  Bytes bad_icmp = In6(pb::Ipv6("2001:db8::1", "2001:db8:1::10", 58, pb::Icmp(128, 0, 1, {1, 2})));
  bad_icmp.back() ^= 1;
  ExpectDrop(bad_icmp, DropReason::kBadChecksum);
}

TEST_F(WorkerTest, TooBigOnceEncapsulatedIpv4) {
  // 1500-byte datagram with DF: 1520 bytes in IPIP exceeds the 1500 MTU.
  const Bytes datagram =
      pb::Ipv4("192.0.2.1", "10.1.0.10", 6, pb::Tcp(1234, 80, kAck, Bytes(1460, 0x5a)), {.df = true});
  ASSERT_EQ(datagram.size(), 1500u);
  const Bytes quote(datagram.begin(), datagram.begin() + 548);  // 576 - 20 - 8
  ExpectWire(In4(datagram), Reply4(pb::Ipv4("10.1.0.10", "192.0.2.1", 1, pb::Icmp(3, 4, 1480, quote))));
  EXPECT_EQ(h_.Count(Event::kTooBigSent), 1u);

  // Rate limited: the default allows 100 a second; a second at the same instant with a
  // limit of 1 a second is refused.
  auto c = TestConfig();
  c.icmp_too_big_per_second = 1;
  WorkerHarness limited;
  ASSERT_TRUE(limited.Apply(c));
  EXPECT_EQ(limited.Run(In4(datagram)).wire.size(), 1u);
  EXPECT_TRUE(limited.Run(In4(datagram)).wire.empty());
  EXPECT_EQ(limited.Count(DropReason::kTooBigRateLimited), 1u);
  EXPECT_EQ(limited.Run(In4(datagram), /*now=*/2100).wire.size(), 1u) << "a second later";
}

TEST_F(WorkerTest, TooBigWithoutDfIsDropped) {
  ExpectDrop(In4(pb::Ipv4("192.0.2.1", "10.1.0.10", 6, pb::Tcp(1234, 80, kAck, Bytes(1460)))), DropReason::kTooBig);
}

TEST_F(WorkerTest, PacketTooBigIpv6) {
  const Bytes datagram = pb::Ipv6("2001:db8::1", "2001:db8:1::10", 6, pb::Tcp(1234, 80, kAck, Bytes(1440, 0x33)));
  ASSERT_EQ(datagram.size(), 1500u);
  const Bytes quote(datagram.begin(), datagram.begin() + 1232);  // 1280 - 40 - 8
  ExpectWire(In6(datagram), Reply6(pb::Ipv6("2001:db8:1::10", "2001:db8::1", 58, pb::Icmp(2, 0, 1460, quote))));
}

TEST_F(WorkerTest, IcmpErrorGoesToTheFlowsBackend) {
  // Establish flows on the four-backend service, then send, for each, a router's
  // "fragmentation needed" about the backend's reply (VIP -> client). Each must reach
  // the backend that serves the flow.
  for (uint16_t port = 2000; port < 2020; ++port) {
    const Output flow = h_.Run(In4(pb::Ipv4("192.0.2.7", "10.1.0.20", 6, pb::Tcp(port, 80, kSyn))));
    ASSERT_EQ(flow.wire.size(), 1u);
    const Bytes backend = OuterDestination4(flow.wire[0]);
    const Bytes reply = pb::Ipv4("10.1.0.20", "192.0.2.7", 6, pb::Tcp(80, port, kSyn | kAck), {.df = true});
    const Bytes error =
        pb::Ipv4("198.51.100.1", "10.1.0.20", 1, pb::Icmp(3, 4, 1400, Bytes(reply.begin(), reply.begin() + 28)));
    const Output out = h_.Run(In4(error));
    ASSERT_EQ(out.wire.size(), 1u);
    EXPECT_EQ(OuterDestination4(out.wire[0]), backend) << port;
    EXPECT_EQ(out.wire[0][23], 4) << "IPIP";
    EXPECT_EQ(Bytes(out.wire[0].begin() + 34, out.wire[0].end()),
              pb::Ipv4("198.51.100.1", "10.1.0.20", 1, pb::Icmp(3, 4, 1400, Bytes(reply.begin(), reply.begin() + 28)),
                       {.ttl = 63}));
  }
  EXPECT_EQ(h_.Count(Event::kIcmpErrorsForwarded), 20u);
  // An error about a port no service has is not forwarded.
  const Bytes stray = pb::Ipv4("10.1.0.10", "192.0.2.7", 17, pb::Udp(9999, 1));
  ExpectDrop(In4(pb::Ipv4("198.51.100.1", "10.1.0.10", 1, pb::Icmp(3, 3, 0, stray))), DropReason::kIcmpUnmatched);
}

TEST_F(WorkerTest, OtherIcmpToVipIsDropped) {
  ExpectDrop(In4(pb::Ipv4("192.0.2.1", "10.1.0.10", 1, pb::Icmp(13, 0, 0))),  // timestamp
             DropReason::kIcmpUnsupported);
}

// --- Classification and drops ------------------------------------------------------------

TEST_F(WorkerTest, NotForAVipGoesToTheKernel) {
  const Bytes arp = pb::Ether(kPortMac, kRouterMac, 0x0806, Bytes(28, 1));
  const Bytes bgp = In4(pb::Ipv4("192.0.2.254", "192.0.2.10", 6, pb::Tcp(179, 40000, kAck)));
  const Output out = h_.Run(std::vector<Bytes>{arp, bgp});
  ASSERT_EQ(out.kernel.size(), 2u);
  EXPECT_BYTES_EQ(out.kernel[0], arp);
  EXPECT_BYTES_EQ(out.kernel[1], bgp);
  EXPECT_TRUE(out.wire.empty());
  EXPECT_EQ(h_.Count(Event::kToKernel), 2u);
}

// Floods toward the kernel are bounded: traffic to an announced VIP CIDR without a VIP
// never reaches it, and the rest comes from a per-worker budget, with ARP and ND, BGP and
// BFD, and flow sync on budgets of their own that a flood of the rest cannot exhaust.
TEST_F(WorkerTest, FloodsTowardTheKernelAreBounded) {
  auto c = TestConfig();
  c.vip_cidrs = {*IpPrefix::Parse("10.1.0.0/24"), *IpPrefix::Parse("2001:db8:1::/64")};
  c.exception_budgets[ExceptionClass::kOther] = 5;
  c.control_peers = {Addr("192.0.2.254")};
  ASSERT_TRUE(h_.Apply(c));
  ExpectDrop(In4(pb::Ipv4("192.0.2.1", "10.1.0.99", 17, pb::Udp(1, 53))), DropReason::kNoVip);
  ExpectDrop(In4(pb::Ipv4("192.0.2.1", "10.1.0.99", 6, pb::Tcp(1, 179, kSyn))), DropReason::kNoVip);

  std::vector<Bytes> flood;
  for (int i = 0; i < 40; ++i)
    flood.push_back(In4(pb::Ipv4("192.0.2.1", "192.0.2.10", 6, pb::Tcp(uint16_t(1000 + i), 22, kSyn))));
  const Bytes arp = pb::Ether(kPortMac, kRouterMac, 0x0806, Bytes(28, 1));
  const Bytes bgp = In4(pb::Ipv4("192.0.2.254", "192.0.2.10", 6, pb::Tcp(179, 40000, kAck), {.ttl = 255}));
  const Bytes bfd = In4(pb::Ipv4("192.0.2.254", "192.0.2.10", 17, pb::Udp(49152, 3784), {.ttl = 255}));
  const Bytes nd = In6(pb::Ipv6("fe80::1", "ff02::1:ff00:10", 58, pb::Icmp(135, 0, 0), {.hop_limit = 255}));
  flood.insert(flood.begin() + 20, {arp, bgp, bfd, nd});
  const Output out = h_.Run(flood, 1000);
  EXPECT_EQ(out.kernel.size(), 5u + 4u) << "a second's budget of 5, and all four control frames";
  EXPECT_EQ(h_.Count(DropReason::kExceptionRateLimited), 35u);
  EXPECT_EQ(std::count(out.kernel.begin(), out.kernel.end(), bgp), 1);
  EXPECT_EQ(std::count(out.kernel.begin(), out.kernel.end(), bfd), 1);
  // A second later the budget is back.
  EXPECT_EQ(h_.Run(flood[0], 2000).kernel.size(), 1u);
}

// One budget per class: a flood of packets that look like one class (here 40 of each,
// with the peers' own addresses as their sources) spends that class's budget alone, and
// the other classes' packets still reach the kernel.
TEST_F(WorkerTest, EachControlClassSpendsABudgetOfItsOwn) {
  auto c = TestConfig();
  for (uint32_t& budget : c.exception_budgets.per_second) budget = 5;
  c.control_peers = {Addr("192.0.2.254")};
  c.flow_sync_peers = {Addr("192.0.2.11")};
  c.flow_sync_port = 7300;
  ASSERT_TRUE(h_.Apply(c));
  const Bytes arp = pb::Ether(kPortMac, kRouterMac, 0x0806, Bytes(28, 1));
  const Bytes bgp = In4(pb::Ipv4("192.0.2.254", "192.0.2.10", 6, pb::Tcp(179, 40000, kAck), {.ttl = 255}));
  const Bytes sync = In4(pb::Ipv4("192.0.2.11", "192.0.2.10", 17, pb::Udp(40000, 7300)));
  const Bytes ssh = In4(pb::Ipv4("192.0.2.1", "192.0.2.10", 6, pb::Tcp(1000, 22, kSyn)));
  struct Class {
    const char* name;
    Bytes packet;
    DropReason over_budget;
  };
  const Class classes[] = {{"neighbour", arp, DropReason::kExceptionNeighborRateLimited},
                           {"routing", bgp, DropReason::kExceptionRoutingRateLimited},
                           {"flow sync", sync, DropReason::kExceptionSyncRateLimited},
                           {"other", ssh, DropReason::kExceptionRateLimited}};
  Millis now = 1000;
  for (const Class& flooded : classes) {
    now += 2000;  // every budget full again
    std::vector<Bytes> burst(40, flooded.packet);
    for (const Class& other : classes) {
      if (&other != &flooded) burst.insert(burst.begin() + 20, other.packet);
    }
    const uint64_t dropped = h_.Count(flooded.over_budget);
    const Output out = h_.Run(burst, now);
    EXPECT_EQ(h_.Count(flooded.over_budget) - dropped, 35u) << flooded.name;
    for (const Class& other : classes) {
      EXPECT_EQ(std::count(out.kernel.begin(), out.kernel.end(), other.packet), &other == &flooded ? 5 : 1)
          << other.name << " while " << flooded.name << " is flooded";
    }
  }
}

// BGP and BFD from a peer, and ND, must come from the link: TTL 255 (GTSM). Look-alikes
// routed here are dropped, whatever their source claims; BGP and BFD from others are
// nobody's control traffic and share the other budget.
TEST_F(WorkerTest, RoutingAndNeighbourDiscoveryMustComeFromTheLink) {
  auto c = TestConfig();
  c.control_peers = {Addr("192.0.2.254")};
  ASSERT_TRUE(h_.Apply(c));
  ExpectDrop(In4(pb::Ipv4("192.0.2.254", "192.0.2.10", 6, pb::Tcp(179, 40000, kAck), {.ttl = 254})),
             DropReason::kOffLinkControl);
  ExpectDrop(In4(pb::Ipv4("192.0.2.254", "192.0.2.10", 6, pb::Tcp(40000, 179, kSyn), {.ttl = 64})),
             DropReason::kOffLinkControl);
  ExpectDrop(In4(pb::Ipv4("192.0.2.254", "192.0.2.10", 17, pb::Udp(49152, 3784), {.ttl = 64})),
             DropReason::kOffLinkControl);
  ExpectDrop(In6(pb::Ipv6("fe80::1", "ff02::1:ff00:10", 58, pb::Icmp(135, 0, 0), {.hop_limit = 64})),
             DropReason::kOffLinkControl);
  const Bytes stranger = In4(pb::Ipv4("198.51.100.7", "192.0.2.10", 6, pb::Tcp(40000, 179, kSyn), {.ttl = 255}));
  const Bytes lldp = pb::Ether(kPortMac, kRouterMac, 0x88cc, Bytes(40, 1));
  const Bytes qinq = pb::Ether(kPortMac, kRouterMac, 0x88a8, Bytes(40, 1));
  EXPECT_EQ(h_.Run(std::vector<Bytes>{stranger, lldp, qinq}).kernel.size(), 3u);
  EXPECT_EQ(h_.Count(Event::kToKernel), 3u);
  // Counted as the other class: spent from --exception_pps.
  c.exception_budgets[ExceptionClass::kOther] = 1;
  ASSERT_TRUE(h_.Apply(c));
  h_.Run(std::vector<Bytes>{stranger, lldp, qinq}, 5000);
  EXPECT_EQ(h_.Count(DropReason::kExceptionRateLimited), 2u);
}

// A node without BGP (--control_peers=none): no packet is routing traffic.
TEST_F(WorkerTest, WithoutPeersNothingIsRoutingTraffic) {
  auto c = TestConfig();
  c.exception_budgets[ExceptionClass::kOther] = 1;
  ASSERT_TRUE(h_.Apply(c));
  const Bytes bgp = In4(pb::Ipv4("192.0.2.254", "192.0.2.10", 6, pb::Tcp(179, 40000, kAck), {.ttl = 255}));
  EXPECT_EQ(h_.Run(std::vector<Bytes>{bgp, bgp}).kernel.size(), 1u);
  EXPECT_EQ(h_.Count(DropReason::kExceptionRateLimited), 1u);
}

// Source ranges (Kubernetes' loadBalancerSourceRanges): a client outside them is dropped,
// on every packet (a flow that began before the ranges were set stops too), and the
// service's other clients and other services are untouched.
TEST_F(WorkerTest, OnlyClientsWithinTheSourceRangesAreServed) {
  auto c = TestConfig();
  c.services[0].source_ranges = {*IpPrefix::Parse("192.0.2.0/25"), *IpPrefix::Parse("2001:db8:99::/48")};
  const Bytes inside = In4(pb::Ipv4("192.0.2.1", "10.1.0.10", 6, pb::Tcp(1000, 80, kSyn)));
  const Bytes outside = In4(pb::Ipv4("192.0.2.200", "10.1.0.10", 6, pb::Tcp(1000, 80, kSyn)));
  const Bytes outside_dns = In4(pb::Ipv4("192.0.2.200", "10.1.0.10", 17, pb::Udp(1000, 53)));
  // Before: both served, and the outside client's flow is in the table.
  EXPECT_EQ(h_.Run(std::vector<Bytes>{inside, outside}).wire.size(), 2u);
  ASSERT_TRUE(h_.Apply(c));
  const Output out = h_.Run(std::vector<Bytes>{inside, outside, outside_dns}, 2000);
  ASSERT_EQ(out.wire.size(), 2u) << "the inside client, and the other service (UDP 53) from outside";
  EXPECT_EQ(h_.Count(DropReason::kSourceNotAllowed), 1u);
  // A fragment of the service from outside is dropped too.
  const Bytes fragment = In4(pb::Ipv4("192.0.2.200", "10.1.0.10", 6, pb::Tcp(1000, 80, kAck), {.mf = true}));
  ExpectDrop(fragment, DropReason::kSourceNotAllowed);
  // The ranges lifted: every client again.
  c.services[0].source_ranges.clear();
  ASSERT_TRUE(h_.Apply(c));
  EXPECT_EQ(h_.Run(outside, 3000).wire.size(), 1u);
}

TEST_F(WorkerTest, DropsByReason) {
  ExpectDrop(In4(pb::Ipv4("192.0.2.1", "10.1.0.10", 6, pb::Tcp(1, 443, kSyn))), DropReason::kNoService);
  ExpectDrop(In4(pb::Ipv4("192.0.2.1", "10.1.0.10", 47, Bytes(8))), DropReason::kNoService);
  ExpectDrop(In4(pb::Ipv4("192.0.2.1", "10.1.0.13", 17, pb::Udp(1, 53))), DropReason::kNoBackend);
  ExpectDrop(In4(pb::Ipv4("192.0.2.1", "10.1.0.10", 6, pb::Tcp(1, 80, kSyn), {.ttl = 1})), DropReason::kTtlExceeded);
  Bytes truncated = In4(pb::Ipv4("192.0.2.1", "10.1.0.10", 6, pb::Tcp(1, 80, kSyn)));
  truncated.resize(40);
  ExpectDrop(truncated, DropReason::kTruncated);
  Bytes malformed = In4(pb::Ipv4("192.0.2.1", "10.1.0.10", 6, pb::Tcp(1, 80, kSyn)));
  malformed[14] = 0x42;
  ExpectDrop(malformed, DropReason::kMalformed);
}

TEST_F(WorkerTest, NothingConfiguredMeansEverythingToTheKernel) {
  WorkerHarness empty;
  const Output out = empty.Run(In4(pb::Ipv4("192.0.2.1", "10.1.0.10", 6, pb::Tcp(1, 80, kSyn))));
  EXPECT_EQ(out.kernel.size(), 1u);
}

// --- Partial checksums (kernel offloads) ------------------------------------------------

// What a Linux sender with checksum offload (veth, virtio, a local socket) hands on: the
// TCP/UDP checksum field holds only the folded pseudo-header sum; af_packet delivers the
// frame so. `l3` is the IP header's offset in `frame`. (Summed here word by word, apart
// from the code under test.)
Bytes WithPartialChecksum(Bytes frame, size_t l3) {
  uint8_t* ip = frame.data() + l3;
  const bool v4 = (ip[0] >> 4) == 4;
  const size_t ihl = v4 ? size_t(ip[0] & 0x0f) * 4 : 40;
  const uint8_t protocol = v4 ? ip[9] : ip[6];
  const uint32_t l4_len = uint32_t(frame.size() - l3 - ihl);
  const uint8_t* addresses = ip + (v4 ? 12 : 8);
  uint32_t sum = protocol + (l4_len >> 16) + (l4_len & 0xffff);
  for (size_t i = 0; i < (v4 ? 8u : 32u); i += 2) sum += uint32_t(addresses[i] << 8 | addresses[i + 1]);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >> 16);
  uint8_t* field = ip + ihl + (protocol == IPPROTO_TCP ? 16 : 6);
  field[0] = uint8_t(sum >> 8);
  field[1] = uint8_t(sum);
  return frame;
}

// lbd sets the option for net_af_packet ports. With it, a partial checksum leaves the
// worker exactly as a complete one does without it; a complete one is left alone.
TEST(PartialChecksumTest, CompletedOnPortsThatAskForIt) {
  // Outer IPv4 IDs count packets per worker: `plain` and `completing` see as many.
  WorkerHarness plain, left_alone;
  WorkerHarness completing(Worker::Options{.flow_capacity = 4096, .complete_partial_checksums = true});
  for (WorkerHarness* h : {&plain, &left_alone, &completing}) ASSERT_TRUE(h->Apply(TestConfig()));
  const Bytes payload(100, 0x5a);
  const Bytes frames[] = {
      In4(pb::Ipv4("192.0.2.1", "10.1.0.10", 17, pb::Udp(5353, 53, payload))),
      In4(pb::Ipv4("192.0.2.1", "10.1.0.10", 6, pb::Tcp(1234, 80, kSyn, payload))),
      In4(pb::Ipv4("192.0.2.1", "10.1.0.11", 17, pb::Udp(5354, 53, payload))),  // GUE
      In6(pb::Ipv6("2001:db8::1", "2001:db8:1::10", 6, pb::Tcp(1235, 80, kSyn, payload))),
  };
  uint64_t completed = 0;
  for (const Bytes& complete : frames) {
    const Bytes partial = WithPartialChecksum(complete, 14);
    ASSERT_NE(partial, complete);
    const Output expected = plain.Run(complete);
    const Output fixed = completing.Run(partial);
    const Output left = left_alone.Run(partial);
    ASSERT_EQ(expected.wire.size(), 1u);
    ASSERT_EQ(fixed.wire.size(), 1u);
    ASSERT_EQ(left.wire.size(), 1u);
    EXPECT_BYTES_EQ(fixed.wire[0], expected.wire[0]);
    EXPECT_NE(pb::Hex(left.wire[0]), pb::Hex(expected.wire[0])) << "without the option it stays partial";
    EXPECT_EQ(completing.Count(Event::kChecksumsCompleted), ++completed);
    const Output expected_again = plain.Run(complete);
    const Output untouched = completing.Run(complete);
    ASSERT_EQ(untouched.wire.size(), 1u);
    EXPECT_BYTES_EQ(untouched.wire[0], expected_again.wire[0]);
    EXPECT_EQ(completing.Count(Event::kChecksumsCompleted), completed) << "a complete checksum is left alone";
  }
  EXPECT_EQ(left_alone.Count(Event::kChecksumsCompleted), 0u);
}

// --- Traffic per service and backend --------------------------------------------------

// Packets through a VIP are counted in its service's and in their backend's traffic,
// exactly: every packet sent, its IP bytes, the flows started, and the drops.
TEST(WorkerTrafficTest, EveryPacketIsCountedOnceInItsServiceAndBackend) {
  auto traffic = TrafficTable::Create(1, 64, 64);
  WorkerHarness h(Worker::Options{.flow_capacity = 4096}, traffic);
  ASSERT_TRUE(h.Apply(TestConfig()));
  const Snapshot& snap = *h.store().current();
  const ServiceRecord* web = snap.FindService(Addr("10.1.0.20"), IPPROTO_TCP, htons(80));
  const ServiceRecord* empty = snap.FindService(Addr("10.1.0.13"), IPPROTO_UDP, htons(53));
  ASSERT_NE(web, nullptr);
  ASSERT_NE(empty, nullptr);

  // 50 connections of 4 packets each (a SYN, then 3 of varying length), in 4 bursts.
  std::vector<Bytes> frames;
  uint64_t sent_bytes = 0;
  for (int round = 0; round < 4; ++round) {
    for (uint16_t c = 0; c < 50; ++c) {
      const Bytes payload(size_t(round * 100 + c), 'x');
      const Bytes ip = pb::Ipv4("192.0.2.1", "10.1.0.20", IPPROTO_TCP,
                                pb::Tcp(uint16_t(20000 + c), 80, round == 0 ? kSyn : kAck, payload), {.df = true});
      sent_bytes += ip.size();
      frames.push_back(In4(ip));
    }
  }
  const Output out = h.Run(frames);
  ASSERT_EQ(out.wire.size(), 200u) << "drops: " << h.TotalDrops();

  // What each backend got, read from the outer headers that left.
  std::map<std::string, BackendTraffic> got;
  for (const Bytes& f : out.wire) {
    char dst[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &f[14 + 16], dst, sizeof(dst));
    BackendTraffic& t = got[dst];
    ++t.packets;
    t.bytes += f.size() - 14 - 20;  // the inner packet, as the client sent it
  }
  ASSERT_GT(got.size(), 1u) << "50 flows over 4 backends";
  for (const char* backend : kMulti) {
    uint32_t slot = 0;
    const BackendRecord* b = web->FindBackend(Addr(backend), 0, &slot);
    ASSERT_NE(b, nullptr);
    ASSERT_NE(b->traffic_id, 0u);
    const BackendTraffic counted = traffic->Backend(b->traffic_id);
    EXPECT_EQ(counted.packets, got[backend].packets) << backend;
    EXPECT_EQ(counted.bytes, got[backend].bytes) << backend;
  }
  const ServiceTraffic t = traffic->Service(web->traffic_id);
  EXPECT_EQ(t.packets, 200u);
  EXPECT_EQ(t.bytes, sent_bytes);
  EXPECT_EQ(t.new_flows, 50u);
  EXPECT_EQ(t.drops, 0u);

  // A service without backends counts its drops; traffic for no service counts nowhere.
  for (int i = 0; i < 3; ++i) {
    h.Run(In4(pb::Ipv4("192.0.2.1", "10.1.0.13", IPPROTO_UDP, pb::Udp(uint16_t(1000 + i), 53, {1}))));
  }
  h.Run(In4(pb::Ipv4("192.0.2.1", "10.9.9.9", IPPROTO_UDP, pb::Udp(1, 53, {1}))));
  EXPECT_EQ(traffic->Service(empty->traffic_id).drops, 3u);
  EXPECT_EQ(traffic->Service(empty->traffic_id).packets, 0u);
  EXPECT_EQ(traffic->Service(web->traffic_id).drops, 0u);
  EXPECT_EQ(h.Count(DropReason::kNoBackend), 3u);
}

}  // namespace
}  // namespace lb::dataplane
