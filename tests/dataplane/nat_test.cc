// NAT mode through the real worker: packets in -> packets out, both directions, with
// checksums computed independently by the packet builder (so every incremental
// adjustment is checked against a full computation).
#include <gtest/gtest.h>

#include <set>

#include "tests/dataplane/fixtures.h"
#include "tests/dataplane/worker_harness.h"

namespace lb::dataplane {
namespace {

using namespace lb::dataplane::test;
using lb::testing::Output;
using lb::testing::WorkerHarness;

constexpr const char* kClient = "198.51.100.7";
constexpr const char* kVip = "10.1.0.50";
constexpr const char* kBackend = "192.168.50.1";
constexpr const char* kSnat = "10.90.0.100";
constexpr uint16_t kPortMin = 2000;

pb::Ipv4Options Ttl(uint8_t ttl) { return {.ttl = ttl}; }
pb::Ipv6Options HopLimit(uint8_t h) { return {.hop_limit = h}; }

DataplaneConfig NatConfig(uint16_t port_max = kPortMin + 99) {
  DataplaneConfig c = TestConfig();
  c.nat.addresses = {Addr(kSnat), Addr("fd00:90::100")};
  c.nat.port_min = kPortMin;
  c.nat.port_max = port_max;
  auto dns = Service(kVip, IPPROTO_UDP, 53, {kBackend}, ForwardingMode::kNat);
  dns.backends[0].port = 5353;                                                  // port translation
  auto web = Service(kVip, IPPROTO_TCP, 80, {kBackend}, ForwardingMode::kNat);  // port 0: the VIP's
  auto dns6 = Service("2001:db8:1::50", IPPROTO_UDP, 53, {"fd00:50::1"}, ForwardingMode::kNat);
  c.services.push_back(dns);
  c.services.push_back(web);
  c.services.push_back(dns6);
  return c;
}

class NatTest : public ::testing::Test {
 protected:
  explicit NatTest(uint32_t worker = 0, uint32_t workers = 1, uint16_t port_max = kPortMin + 99)
      : w_(Worker::Options{.id = worker,
                           .flow_capacity = 4096,
                           .workers = workers,
                           .nat_addresses = 2,
                           .nat_port_min = kPortMin,
                           .nat_port_max = port_max}) {
    EXPECT_TRUE(w_.Apply(NatConfig(port_max)));
  }

  // Sends `in` and expects exactly `expected` on the wire.
  void ExpectWire(const Bytes& in, const Bytes& expected, Millis now = 1000) {
    const Output out = w_.Run(in, now);
    ASSERT_EQ(out.wire.size(), 1u) << "drops: " << w_.TotalDrops();
    EXPECT_EQ(out.wire[0], expected);
  }

  WorkerHarness w_;
};

const Bytes kQuery = {'q', 'u', 'e', 'r', 'y'};
const Bytes kAnswer = {'a', 'n', 's', 'w', 'e', 'r', '!'};

TEST_F(NatTest, UdpBothWaysWithPortTranslation) {
  ExpectWire(In4(pb::Ipv4(kClient, kVip, IPPROTO_UDP, pb::Udp(40000, 53, kQuery))),
             Out4(pb::Ipv4(kSnat, kBackend, IPPROTO_UDP, pb::Udp(kPortMin, 5353, kQuery), Ttl(63))));
  ExpectWire(In4(pb::Ipv4(kBackend, kSnat, IPPROTO_UDP, pb::Udp(5353, kPortMin, kAnswer))),
             Out4(pb::Ipv4(kVip, kClient, IPPROTO_UDP, pb::Udp(53, 40000, kAnswer), Ttl(63))));
  // The same client flow keeps its port; another flow takes the next one.
  ExpectWire(In4(pb::Ipv4(kClient, kVip, IPPROTO_UDP, pb::Udp(40000, 53, kQuery))),
             Out4(pb::Ipv4(kSnat, kBackend, IPPROTO_UDP, pb::Udp(kPortMin, 5353, kQuery), Ttl(63))));
  ExpectWire(In4(pb::Ipv4(kClient, kVip, IPPROTO_UDP, pb::Udp(40001, 53, kQuery))),
             Out4(pb::Ipv4(kSnat, kBackend, IPPROTO_UDP, pb::Udp(kPortMin + 1, 5353, kQuery), Ttl(63))));
  EXPECT_EQ(w_.Count(Event::kNatSessions), 2u);
  EXPECT_EQ(w_.Count(Event::kNatForwarded), 3u);
  EXPECT_EQ(w_.Count(Event::kNatReplies), 1u);
  EXPECT_EQ(w_.worker().nat().in_use(0), 2u);
  EXPECT_EQ(w_.TotalDrops(), 0u);
}

// NAT: the client side is counted in the service's and the backend's traffic; the
// replies are not (they are the node-wide nat_replies).
TEST(NatTrafficTest, TheClientSideIsCountedExactly) {
  auto traffic = TrafficTable::Create(1, 64, 64);
  WorkerHarness w(
      Worker::Options{
          .flow_capacity = 4096, .nat_addresses = 2, .nat_port_min = kPortMin, .nat_port_max = kPortMin + 99},
      traffic);
  ASSERT_TRUE(w.Apply(NatConfig()));
  const ServiceRecord* dns = w.store().current()->FindService(Addr(kVip), IPPROTO_UDP, htons(53));
  ASSERT_NE(dns, nullptr);
  uint64_t bytes = 0;
  for (uint16_t port = 40000; port < 40010; ++port) {
    for (int i = 0; i < 3; ++i) {
      const Bytes ip = pb::Ipv4(kClient, kVip, IPPROTO_UDP, pb::Udp(port, 53, kQuery));
      bytes += ip.size();
      ASSERT_EQ(w.Run(In4(ip)).wire.size(), 1u);
    }
  }
  ASSERT_EQ(w.Run(In4(pb::Ipv4(kBackend, kSnat, IPPROTO_UDP, pb::Udp(5353, kPortMin, kAnswer)))).wire.size(), 1u);
  const ServiceTraffic t = traffic->Service(dns->traffic_id);
  EXPECT_EQ(t.packets, 30u);
  EXPECT_EQ(t.bytes, bytes);
  EXPECT_EQ(t.new_flows, 10u);
  EXPECT_EQ(t.drops, 0u);
  const BackendTraffic b = traffic->Backend(dns->backends[0].traffic_id);
  EXPECT_EQ(b.packets, 30u);
  EXPECT_EQ(b.bytes, bytes);
}

// Source ranges hold in NAT mode too: a client outside them opens no session.
TEST_F(NatTest, AClientOutsideTheSourceRangesOpensNoSession) {
  DataplaneConfig c = NatConfig();
  c.services[c.services.size() - 3].source_ranges = {*IpPrefix::Parse(std::string(kClient) + "/32")};  // dns
  ASSERT_TRUE(w_.Apply(c));
  ExpectWire(In4(pb::Ipv4(kClient, kVip, IPPROTO_UDP, pb::Udp(40000, 53, kQuery))),
             Out4(pb::Ipv4(kSnat, kBackend, IPPROTO_UDP, pb::Udp(kPortMin, 5353, kQuery), Ttl(63))));
  EXPECT_TRUE(w_.Run(In4(pb::Ipv4("198.51.100.99", kVip, IPPROTO_UDP, pb::Udp(40000, 53, kQuery)))).wire.empty());
  EXPECT_EQ(w_.Count(DropReason::kSourceNotAllowed), 1u);
  EXPECT_EQ(w_.Count(Event::kNatSessions), 1u);
}

// A new flow whose packets fill one burst: the worker looks flows up ahead of their
// turn, before the burst's first packet has created this one, and each later packet must
// still find the session the first opened.
TEST_F(NatTest, ANewFlowsPacketsInOneBurstShareOneSession) {
  const Bytes in = In4(pb::Ipv4(kClient, kVip, IPPROTO_UDP, pb::Udp(40000, 53, kQuery)));
  const Bytes expected = Out4(pb::Ipv4(kSnat, kBackend, IPPROTO_UDP, pb::Udp(kPortMin, 5353, kQuery), Ttl(63)));
  const Output out = w_.Run(std::vector<Bytes>(kMaxBurst, in));
  ASSERT_EQ(out.wire.size(), size_t(kMaxBurst)) << "drops: " << w_.TotalDrops();
  for (const Bytes& b : out.wire) EXPECT_EQ(b, expected);
  EXPECT_EQ(w_.Count(Event::kNatSessions), 1u);
  EXPECT_EQ(w_.worker().nat().in_use(0), 1u);
}

TEST_F(NatTest, ZeroUdpChecksumStaysZero) {
  pb::Ipv4Options no_sum{.l4_checksum = false};
  Bytes udp = pb::Udp(40000, 53, kQuery);  // checksum left 0 by l4_checksum = false
  const Output out = w_.Run(In4(pb::Ipv4(kClient, kVip, IPPROTO_UDP, udp, no_sum)));
  ASSERT_EQ(out.wire.size(), 1u);
  no_sum.ttl = 63;
  EXPECT_EQ(out.wire[0], Out4(pb::Ipv4(kSnat, kBackend, IPPROTO_UDP, pb::Udp(kPortMin, 5353, kQuery), no_sum)));
}

TEST_F(NatTest, TcpStatesAndTimeouts) {
  // Backend port 0: the VIP's port is kept.
  ExpectWire(In4(pb::Ipv4(kClient, kVip, IPPROTO_TCP, pb::Tcp(40000, 80, kSyn))),
             Out4(pb::Ipv4(kSnat, kBackend, IPPROTO_TCP, pb::Tcp(kPortMin, 80, kSyn), Ttl(63))), 1000);
  ExpectWire(In4(pb::Ipv4(kBackend, kSnat, IPPROTO_TCP, pb::Tcp(80, kPortMin, kSyn | kAck))),
             Out4(pb::Ipv4(kVip, kClient, IPPROTO_TCP, pb::Tcp(80, 40000, kSyn | kAck), Ttl(63))), 1100);
  ExpectWire(In4(pb::Ipv4(kClient, kVip, IPPROTO_TCP, pb::Tcp(40000, 80, kAck, kQuery))),
             Out4(pb::Ipv4(kSnat, kBackend, IPPROTO_TCP, pb::Tcp(kPortMin, 80, kAck, kQuery), Ttl(63))), 1200);
  // Established: replies alone keep the session (and the client side's entry) alive
  // well past the SYN timeout (10 s).
  for (Millis t = 5000; t <= 60000; t += 5000) {
    ExpectWire(In4(pb::Ipv4(kBackend, kSnat, IPPROTO_TCP, pb::Tcp(80, kPortMin, kAck, kAnswer))),
               Out4(pb::Ipv4(kVip, kClient, IPPROTO_TCP, pb::Tcp(80, 40000, kAck, kAnswer), Ttl(63))), t);
  }
  ExpectWire(In4(pb::Ipv4(kClient, kVip, IPPROTO_TCP, pb::Tcp(40000, 80, kAck))),
             Out4(pb::Ipv4(kSnat, kBackend, IPPROTO_TCP, pb::Tcp(kPortMin, 80, kAck), Ttl(63))), 61000);
  EXPECT_EQ(w_.Count(Event::kNatSessions), 1u) << "one connection, one session";
  // FIN: closing timeout (10 s), then the port is free again and replies are refused.
  ExpectWire(In4(pb::Ipv4(kClient, kVip, IPPROTO_TCP, pb::Tcp(40000, 80, kFin | kAck))),
             Out4(pb::Ipv4(kSnat, kBackend, IPPROTO_TCP, pb::Tcp(kPortMin, 80, kFin | kAck), Ttl(63))), 62000);
  const Output late = w_.Run(In4(pb::Ipv4(kBackend, kSnat, IPPROTO_TCP, pb::Tcp(80, kPortMin, kAck))), 73000);
  EXPECT_TRUE(late.wire.empty());
  EXPECT_EQ(w_.Count(DropReason::kNatNoSession), 1u);
  // A SYN reusing the client port after the close starts a new session.
  ExpectWire(In4(pb::Ipv4(kClient, kVip, IPPROTO_TCP, pb::Tcp(40000, 80, kSyn))),
             Out4(pb::Ipv4(kSnat, kBackend, IPPROTO_TCP, pb::Tcp(kPortMin + 1, 80, kSyn), Ttl(63))), 74000);
  EXPECT_EQ(w_.Count(Event::kNatSessions), 2u);
}

// A backend's SYN-ACK does not complete a handshake: a SYN from a source that never
// answers (a spoofed one) holds its SNAT port for the handshake timeout only.
TEST_F(NatTest, OnlyTheClientsAckEstablishesASession) {
  ExpectWire(In4(pb::Ipv4(kClient, kVip, IPPROTO_TCP, pb::Tcp(40000, 80, kSyn))),
             Out4(pb::Ipv4(kSnat, kBackend, IPPROTO_TCP, pb::Tcp(kPortMin, 80, kSyn), Ttl(63))), 1000);
  ExpectWire(In4(pb::Ipv4(kBackend, kSnat, IPPROTO_TCP, pb::Tcp(80, kPortMin, kSyn | kAck))),
             Out4(pb::Ipv4(kVip, kClient, IPPROTO_TCP, pb::Tcp(80, 40000, kSyn | kAck), Ttl(63))), 1100);
  // The backend retransmits its SYN-ACK: past the SYN timeout (10 s, not the established
  // 300 s) the session is gone.
  ExpectWire(In4(pb::Ipv4(kBackend, kSnat, IPPROTO_TCP, pb::Tcp(80, kPortMin, kSyn | kAck))),
             Out4(pb::Ipv4(kVip, kClient, IPPROTO_TCP, pb::Tcp(80, 40000, kSyn | kAck), Ttl(63))), 9000);
  const Output late = w_.Run(In4(pb::Ipv4(kBackend, kSnat, IPPROTO_TCP, pb::Tcp(80, kPortMin, kSyn | kAck))), 11200);
  EXPECT_TRUE(late.wire.empty());
  EXPECT_EQ(w_.Count(DropReason::kNatNoSession), 1u);
}

// Only a SYN opens a TCP session: a spoofed ACK (or any non-SYN without a session) takes
// no SNAT port.
TEST_F(NatTest, OnlyASynOpensATcpSession) {
  for (uint8_t flags : {kAck, uint8_t(kAck | 0x08 /* PSH */), uint8_t(kSyn | kAck), kFin, kTcpRst}) {
    EXPECT_TRUE(w_.Run(In4(pb::Ipv4(kClient, kVip, IPPROTO_TCP, pb::Tcp(40000, 80, flags))), 1000).wire.empty());
  }
  EXPECT_EQ(w_.Count(DropReason::kNatNotSyn), 5u);
  EXPECT_EQ(w_.Count(Event::kNatSessions), 0u);
  ExpectWire(In4(pb::Ipv4(kClient, kVip, IPPROTO_TCP, pb::Tcp(40000, 80, kSyn))),
             Out4(pb::Ipv4(kSnat, kBackend, IPPROTO_TCP, pb::Tcp(kPortMin, 80, kSyn), Ttl(63))), 1000);
  EXPECT_EQ(w_.Count(Event::kNatSessions), 1u) << "the first port is still free";
}

TEST_F(NatTest, RepliesFromAnythingButTheSessionsBackendAreDropped) {
  w_.Run(In4(pb::Ipv4(kClient, kVip, IPPROTO_UDP, pb::Udp(40000, 53, kQuery))));
  for (const Bytes& bad : {In4(pb::Ipv4("192.168.50.9", kSnat, IPPROTO_UDP, pb::Udp(5353, kPortMin, kAnswer))),
                           In4(pb::Ipv4(kBackend, kSnat, IPPROTO_UDP, pb::Udp(5354, kPortMin, kAnswer))),
                           In4(pb::Ipv4(kBackend, kSnat, IPPROTO_UDP, pb::Udp(5353, kPortMin + 7, kAnswer))),
                           In4(pb::Ipv4(kBackend, kSnat, IPPROTO_TCP, pb::Tcp(5353, kPortMin, kAck))),
                           In4(pb::Ipv4(kBackend, kSnat, IPPROTO_UDP, pb::Udp(5353, 80, kAnswer)))}) {
    EXPECT_TRUE(w_.Run(bad).wire.empty());
  }
  EXPECT_EQ(w_.Count(DropReason::kNatNoSession), 5u);
}

TEST_F(NatTest, IcmpErrorFromTheBackendSideReachesTheClient) {
  w_.Run(In4(pb::Ipv4(kClient, kVip, IPPROTO_UDP, pb::Udp(40000, 53, kQuery))));
  // The backend's port unreachable quotes the packet as it got it.
  const Bytes as_received = pb::Ipv4(kSnat, kBackend, IPPROTO_UDP, pb::Udp(kPortMin, 5353, kQuery), Ttl(63));
  const Bytes as_sent = pb::Ipv4(kClient, kVip, IPPROTO_UDP, pb::Udp(40000, 53, kQuery), Ttl(63));
  ExpectWire(In4(pb::Ipv4(kBackend, kSnat, IPPROTO_ICMP, pb::Icmp(3, 3, 0, as_received))),
             Out4(pb::Ipv4(kVip, kClient, IPPROTO_ICMP, pb::Icmp(3, 3, 0, as_sent), Ttl(63))));
  // From a router on the way, the outer source stays.
  ExpectWire(In4(pb::Ipv4("192.168.0.1", kSnat, IPPROTO_ICMP, pb::Icmp(11, 0, 0, as_received))),
             Out4(pb::Ipv4("192.168.0.1", kClient, IPPROTO_ICMP, pb::Icmp(11, 0, 0, as_sent), Ttl(63))));
  EXPECT_EQ(w_.Count(Event::kNatIcmpErrors), 2u);
}

TEST_F(NatTest, IcmpErrorFromTheClientSideReachesTheBackend) {
  w_.Run(In4(pb::Ipv4(kClient, kVip, IPPROTO_UDP, pb::Udp(40000, 53, kQuery))));
  w_.Run(In4(pb::Ipv4(kBackend, kSnat, IPPROTO_UDP, pb::Udp(5353, kPortMin, kAnswer))));
  // The client's host says port unreachable about the reply it got from the VIP.
  const Bytes as_client_got = pb::Ipv4(kVip, kClient, IPPROTO_UDP, pb::Udp(53, 40000, kAnswer), Ttl(63));
  const Bytes as_backend_sent = pb::Ipv4(kBackend, kSnat, IPPROTO_UDP, pb::Udp(5353, kPortMin, kAnswer), Ttl(63));
  ExpectWire(In4(pb::Ipv4(kClient, kVip, IPPROTO_ICMP, pb::Icmp(3, 3, 0, as_client_got))),
             Out4(pb::Ipv4(kClient, kBackend, IPPROTO_ICMP, pb::Icmp(3, 3, 0, as_backend_sent), Ttl(63))));
}

TEST_F(NatTest, Ipv6) {
  ExpectWire(In6(pb::Ipv6("2001:db8::7", "2001:db8:1::50", IPPROTO_UDP, pb::Udp(40000, 53, kQuery))),
             Out6(pb::Ipv6("fd00:90::100", "fd00:50::1", IPPROTO_UDP, pb::Udp(kPortMin, 53, kQuery), HopLimit(63))));
  ExpectWire(In6(pb::Ipv6("fd00:50::1", "fd00:90::100", IPPROTO_UDP, pb::Udp(53, kPortMin, kAnswer))),
             Out6(pb::Ipv6("2001:db8:1::50", "2001:db8::7", IPPROTO_UDP, pb::Udp(53, 40000, kAnswer), HopLimit(63))));
  EXPECT_EQ(w_.worker().nat().in_use(1), 1u);
  EXPECT_EQ(w_.worker().nat().in_use(0), 0u);
}

TEST_F(NatTest, Icmpv6ErrorFromTheBackendSideReachesTheClient) {
  w_.Run(In6(pb::Ipv6("2001:db8::7", "2001:db8:1::50", IPPROTO_UDP, pb::Udp(40000, 53, kQuery))));
  const Bytes as_received =
      pb::Ipv6("fd00:90::100", "fd00:50::1", IPPROTO_UDP, pb::Udp(kPortMin, 53, kQuery), HopLimit(63));
  const Bytes as_sent =
      pb::Ipv6("2001:db8::7", "2001:db8:1::50", IPPROTO_UDP, pb::Udp(40000, 53, kQuery), HopLimit(63));
  // Destination unreachable (1), port unreachable (4), from the backend itself.
  ExpectWire(In6(pb::Ipv6("fd00:50::1", "fd00:90::100", IPPROTO_ICMPV6, pb::Icmp(1, 4, 0, as_received))),
             Out6(pb::Ipv6("2001:db8:1::50", "2001:db8::7", IPPROTO_ICMPV6, pb::Icmp(1, 4, 0, as_sent), HopLimit(63))));
  EXPECT_EQ(w_.Count(Event::kNatIcmpErrors), 1u);
}

class NatExhaustionTest : public NatTest {
 protected:
  NatExhaustionTest() : NatTest(0, 1, kPortMin + 1) {}  // two ports per protocol and address
};

TEST_F(NatExhaustionTest, NewFlowsAreRefusedNeverStealingALivePort) {
  w_.Run(In4(pb::Ipv4(kClient, kVip, IPPROTO_UDP, pb::Udp(40000, 53, kQuery))), 1000);
  w_.Run(In4(pb::Ipv4(kClient, kVip, IPPROTO_UDP, pb::Udp(40001, 53, kQuery))), 1000);
  EXPECT_TRUE(w_.Run(In4(pb::Ipv4(kClient, kVip, IPPROTO_UDP, pb::Udp(40002, 53, kQuery))), 2000).wire.empty());
  EXPECT_EQ(w_.Count(DropReason::kNatPortsExhausted), 1u);
  // The live ones still work both ways.
  ExpectWire(In4(pb::Ipv4(kBackend, kSnat, IPPROTO_UDP, pb::Udp(5353, kPortMin + 1, kAnswer))),
             Out4(pb::Ipv4(kVip, kClient, IPPROTO_UDP, pb::Udp(53, 40001, kAnswer), Ttl(63))), 2000);
  // TCP has its own ports.
  EXPECT_EQ(w_.Run(In4(pb::Ipv4(kClient, kVip, IPPROTO_TCP, pb::Tcp(40000, 80, kSyn))), 2000).wire.size(), 1u);
  // After the UDP timeout (30 s) of the first, its port serves the new flow.
  ExpectWire(In4(pb::Ipv4(kClient, kVip, IPPROTO_UDP, pb::Udp(40002, 53, kQuery))),
             Out4(pb::Ipv4(kSnat, kBackend, IPPROTO_UDP, pb::Udp(kPortMin, 5353, kQuery), Ttl(63))), 31500);
  EXPECT_EQ(w_.Count(DropReason::kNatPortsExhausted), 1u);
}

class NatTwoWorkersTest : public NatTest {
 protected:
  NatTwoWorkersTest() : NatTest(0, 2) {}  // this is worker 0 of 2: it owns the even ports
};

TEST_F(NatTwoWorkersTest, PortsAlternateAndRepliesGoToTheirOwner) {
  ExpectWire(In4(pb::Ipv4(kClient, kVip, IPPROTO_UDP, pb::Udp(40000, 53, kQuery))),
             Out4(pb::Ipv4(kSnat, kBackend, IPPROTO_UDP, pb::Udp(kPortMin, 5353, kQuery), Ttl(63))));
  ExpectWire(In4(pb::Ipv4(kClient, kVip, IPPROTO_UDP, pb::Udp(40001, 53, kQuery))),
             Out4(pb::Ipv4(kSnat, kBackend, IPPROTO_UDP, pb::Udp(kPortMin + 2, 5353, kQuery), Ttl(63))));
  const Bytes for_worker_1 = In4(pb::Ipv4(kBackend, kSnat, IPPROTO_UDP, pb::Udp(5353, kPortMin + 1, kAnswer)));
  const Output out = w_.Run(for_worker_1);
  EXPECT_TRUE(out.wire.empty());
  ASSERT_EQ(out.redirect.size(), 1u);
  EXPECT_EQ(out.redirect[0].first, 1u);
  EXPECT_EQ(out.redirect[0].second, for_worker_1) << "handed over untouched";
  EXPECT_EQ(w_.Count(Event::kNatRedirected), 1u);
}

// With a secret the next SNAT port cannot be predicted (RFC 6056 §3.3): not in order, and
// different secrets give different sequences; every port is still handed out once.
TEST(NatTableTest, PortsAreChosenAtRandom) {
  const bool v4[] = {true};
  auto ports = [&](uint64_t secret) {
    NatTable t(1, 1024, 1024 + 999, 0, 1, secret);
    std::vector<uint16_t> out;
    for (int i = 0; i < 1000; ++i) {
      const uint32_t index = t.Allocate(IPPROTO_TCP, 0, v4, 1000);
      EXPECT_NE(index, NatTable::kNone);
      out.push_back(rte_be_to_cpu_16(t.at(index).snat_port_be));
    }
    return out;
  };
  const auto sequential = ports(0), a = ports(12345), b = ports(67890);
  EXPECT_EQ(sequential[0], 1024);
  EXPECT_EQ(sequential[1], 1025);
  EXPECT_NE(a, b);
  int in_order = 0;
  for (size_t i = 1; i < a.size(); ++i) in_order += a[i] == a[i - 1] + 1;
  EXPECT_LT(in_order, 20) << "consecutive ports are rare";
  std::set<uint16_t> distinct(a.begin(), a.end());
  EXPECT_EQ(distinct.size(), 1000u);
  EXPECT_EQ(*distinct.begin(), 1024);
  EXPECT_EQ(*distinct.rbegin(), 2023);
}

// A full range is searched for expired sessions at most kReclaimPerBurst entries a burst,
// however many new connections the burst brings.
TEST(NatTableTest, ReclaimWorkIsBoundedPerBurst) {
  const bool v4[] = {true};
  NatTable t(1, 1024, 1024 + 4095, 0, 1);
  for (int i = 0; i < 4096; ++i) {
    const uint32_t index = t.Allocate(IPPROTO_UDP, 0, v4, 1000);
    ASSERT_NE(index, NatTable::kNone);
    t.at(index).deadline = 1'000'000;  // live
  }
  t.BeginBurst();
  for (int i = 0; i < 10; ++i) EXPECT_EQ(t.Allocate(IPPROTO_UDP, 0, v4, 2000), NatTable::kNone);
  EXPECT_EQ(t.reclaim_budget(), 0u) << "the burst's budget is spent, and no more is scanned";
  t.BeginBurst();
  EXPECT_EQ(t.reclaim_budget(), NatTable::kReclaimPerBurst);
}

TEST(NatConfigTest, ValidationNamesTheField) {
  DataplaneConfig c = NatConfig();
  c.nat.addresses = {Addr("fd00:90::100")};
  auto s = ValidateConfig(c, {});
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("nat needs an SNAT address of the VIP's family (IPv4)"), std::string::npos) << s;
  c = NatConfig();
  c.services.back().backends[0].address = Addr("192.168.50.9");
  s = ValidateConfig(c, {});
  EXPECT_NE(s.message().find("NAT does not translate between IPv4 and IPv6"), std::string::npos) << s;
  c = NatConfig();
  c.nat.port_min = 3000;
  c.nat.port_max = 2000;
  s = ValidateConfig(c, {});
  EXPECT_NE(s.message().find("nat.ports: 3000-2000 is not a range of ports"), std::string::npos) << s;
}

}  // namespace
}  // namespace lb::dataplane
