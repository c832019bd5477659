#include "dataplane/parse.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <memory>
#include <random>

#include "tests/helpers/packet_builder.h"

namespace lb::dataplane {
namespace {

using testing::Bytes;
namespace pb = lb::testing;

const pb::Mac kMacA = {2, 0, 0, 0, 0, 1};
const pb::Mac kMacB = {2, 0, 0, 0, 0, 2};

Bytes E4(const Bytes& ip, uint16_t vlan = 0) { return pb::Ether(kMacA, kMacB, 0x0800, ip, vlan); }
Bytes E6(const Bytes& ip) { return pb::Ether(kMacA, kMacB, 0x86dd, ip); }

// Parses from a heap buffer of exactly the frame's size, so that AddressSanitizer
// reports any read past its end.
ParseStatus ParseExact(const Bytes& frame, ParsedPacket& out) {
  auto buf = std::make_unique<uint8_t[]>(frame.size() + (frame.empty() ? 1 : 0));
  std::copy(frame.begin(), frame.end(), buf.get());
  return Parse(buf.get(), uint32_t(frame.size()), out);
}

IpAddress Addr(const char* s) { return *IpAddress::Parse(s); }

TEST(ParseTest, Ipv4Tcp) {
  ParsedPacket p;
  const Bytes f = E4(pb::Ipv4("192.0.2.1", "10.1.0.10", 6, pb::Tcp(1234, 80, kTcpSyn), {.ttl = 9, .df = true}));
  ASSERT_EQ(ParseExact(f, p), ParseStatus::kOk);
  EXPECT_EQ(p.kind, PacketKind::kTcp);
  EXPECT_TRUE(p.is_v4);
  EXPECT_EQ(p.key.src, Addr("192.0.2.1"));
  EXPECT_EQ(p.key.dst, Addr("10.1.0.10"));
  EXPECT_EQ(ntohs(p.key.src_port_be), 1234);
  EXPECT_EQ(ntohs(p.key.dst_port_be), 80);
  EXPECT_EQ(p.key.protocol, 6);
  EXPECT_EQ(p.tcp_flags, kTcpSyn);
  EXPECT_EQ(p.ttl, 9);
  EXPECT_TRUE(p.dont_fragment);
  EXPECT_FALSE(p.is_fragment);
  EXPECT_EQ(p.l3_offset, 14);
  EXPECT_EQ(p.l4_offset, 34);
  EXPECT_EQ(p.ip_len, 40);
}

TEST(ParseTest, VlanOptionsAndPadding) {
  ParsedPacket p;
  Bytes f = E4(pb::Ipv4("192.0.2.1", "10.1.0.10", 17, pb::Udp(5353, 53, {1, 2}), {.ip_options = {1, 1, 1, 0}}),
               /*vlan=*/100);
  f.resize(f.size() + 10, 0);  // Ethernet padding beyond the IP datagram
  ASSERT_EQ(ParseExact(f, p), ParseStatus::kOk);
  EXPECT_EQ(p.kind, PacketKind::kUdp);
  EXPECT_EQ(p.l3_offset, 18);
  EXPECT_EQ(p.l4_offset, 18 + 24);
  EXPECT_EQ(p.ip_len, 24 + 8 + 2);
  EXPECT_EQ(ntohs(p.key.dst_port_be), 53);
}

TEST(ParseTest, Ipv6WithExtensionHeaders) {
  ParsedPacket p;
  const Bytes f = E6(pb::Ipv6("2001:db8::1", "2001:db8:1::10", 6, pb::Tcp(40000, 443, kTcpAck),
                              {.hop_limit = 3, .extensions = {{0, Bytes(4)}, {60, Bytes(12)}, {43, Bytes(6)}}}));
  ASSERT_EQ(ParseExact(f, p), ParseStatus::kOk);
  EXPECT_EQ(p.kind, PacketKind::kTcp);
  EXPECT_FALSE(p.is_v4);
  EXPECT_EQ(p.key.dst, Addr("2001:db8:1::10"));
  EXPECT_EQ(ntohs(p.key.dst_port_be), 443);
  EXPECT_EQ(p.ttl, 3);
  EXPECT_EQ(p.l4_offset, 14 + 40 + 8 + 16 + 8);
}

TEST(ParseTest, Fragments) {
  ParsedPacket p;
  // IPv4 first fragment: ports are read, the packet is a fragment.
  ASSERT_EQ(ParseExact(E4(pb::Ipv4("192.0.2.1", "10.1.0.10", 17, pb::Udp(1, 53, Bytes(16)), {.mf = true})), p),
            ParseStatus::kOk);
  EXPECT_TRUE(p.is_fragment);
  EXPECT_TRUE(p.is_first_fragment);
  EXPECT_EQ(ntohs(p.key.dst_port_be), 53);
  // IPv4 later fragment: no ports.
  ASSERT_EQ(
      ParseExact(E4(pb::Ipv4("192.0.2.1", "10.1.0.10", 17, Bytes(16), {.frag_offset = 3, .l4_checksum = false})), p),
      ParseStatus::kOk);
  EXPECT_TRUE(p.is_fragment);
  EXPECT_FALSE(p.is_first_fragment);
  EXPECT_EQ(p.kind, PacketKind::kUdp);
  EXPECT_EQ(p.key.dst_port_be, 0);
  // IPv6 later fragment.
  ASSERT_EQ(ParseExact(E6(pb::Ipv6("2001:db8::1", "2001:db8:1::10", 6, Bytes(24),
                                   {.extensions = {{44, pb::Ipv6Fragment(10, false, 7)}}, .l4_checksum = false})),
                       p),
            ParseStatus::kOk);
  EXPECT_TRUE(p.is_fragment);
  EXPECT_FALSE(p.is_first_fragment);
  EXPECT_EQ(p.kind, PacketKind::kTcp);
}

TEST(ParseTest, IcmpEchoAndErrors) {
  ParsedPacket p;
  ASSERT_EQ(ParseExact(E4(pb::Ipv4("192.0.2.1", "10.1.0.10", 1, pb::Icmp(8, 0, 0x10001))), p), ParseStatus::kOk);
  EXPECT_EQ(p.kind, PacketKind::kIcmpEcho);
  ASSERT_EQ(ParseExact(E6(pb::Ipv6("2001:db8::1", "2001:db8:1::10", 58, pb::Icmp(128, 0, 1))), p), ParseStatus::kOk);
  EXPECT_EQ(p.kind, PacketKind::kIcmpEcho);

  // A router's "fragmentation needed" about a packet the backend sent from the VIP: the
  // key is the client -> VIP flow.
  const Bytes quoted = pb::Ipv4("10.1.0.10", "192.0.2.1", 6, pb::Tcp(80, 1234, kTcpAck));
  ASSERT_EQ(ParseExact(E4(pb::Ipv4("198.51.100.1", "10.1.0.10", 1,
                                   pb::Icmp(3, 4, 1400, Bytes(quoted.begin(), quoted.begin() + 28)))),
                       p),
            ParseStatus::kOk);
  EXPECT_EQ(p.kind, PacketKind::kIcmpError);
  EXPECT_EQ(p.key.src, Addr("192.0.2.1"));
  EXPECT_EQ(p.key.dst, Addr("10.1.0.10"));
  EXPECT_EQ(ntohs(p.key.src_port_be), 1234);
  EXPECT_EQ(ntohs(p.key.dst_port_be), 80);
  EXPECT_EQ(p.key.protocol, 6);

  const Bytes quoted6 = pb::Ipv6("2001:db8:1::10", "2001:db8::1", 17, pb::Udp(53, 999));
  ASSERT_EQ(ParseExact(E6(pb::Ipv6("2001:db8:ff::1", "2001:db8:1::10", 58, pb::Icmp(2, 0, 1280, quoted6))), p),
            ParseStatus::kOk);
  EXPECT_EQ(p.kind, PacketKind::kIcmpError);
  EXPECT_EQ(ntohs(p.key.src_port_be), 999);

  // An error whose quote is not from the destination it was sent to is not a VIP flow's.
  const Bytes other = pb::Ipv4("10.9.9.9", "192.0.2.1", 6, pb::Tcp(80, 1234, kTcpAck));
  ASSERT_EQ(ParseExact(E4(pb::Ipv4("198.51.100.1", "10.1.0.10", 1, pb::Icmp(3, 4, 0, other))), p), ParseStatus::kOk);
  EXPECT_EQ(p.kind, PacketKind::kOtherIcmp);
  EXPECT_EQ(p.key.dst, Addr("10.1.0.10"));
}

TEST(ParseTest, NonIpIsForTheKernel) {
  ParsedPacket p;
  ASSERT_EQ(ParseExact(pb::Ether(kMacA, kMacB, 0x0806, Bytes(28)), p), ParseStatus::kOk);
  EXPECT_EQ(p.kind, PacketKind::kNotIp);
}

// Every prefix of a valid packet, cut anywhere in its headers, is refused as truncated,
// and no cut reads past the end of the buffer.
TEST(ParseTest, EveryTruncationIsRefused) {
  const std::vector<Bytes> frames = {
      E4(pb::Ipv4("192.0.2.1", "10.1.0.10", 6, pb::Tcp(1, 2, kTcpSyn), {.ip_options = Bytes(8)}), 7),
      E4(pb::Ipv4("192.0.2.1", "10.1.0.10", 17, pb::Udp(1, 2))),
      E4(pb::Ipv4("192.0.2.1", "10.1.0.10", 1, pb::Icmp(8, 0, 0))),
      E6(pb::Ipv6("2001:db8::1", "2001:db8::2", 17, pb::Udp(1, 2), {.extensions = {{0, Bytes(4)}, {51, Bytes(10)}}})),
  };
  for (const Bytes& f : frames) {
    ParsedPacket p;
    ASSERT_EQ(ParseExact(f, p), ParseStatus::kOk) << pb::Hex(f);
    for (size_t len = 0; len < f.size(); ++len) {
      const Bytes cut(f.begin(), f.begin() + len);
      EXPECT_EQ(ParseExact(cut, p), ParseStatus::kTruncated) << "cut at " << len << " of " << pb::Hex(f);
    }
  }
}

TEST(ParseTest, MalformedHeaders) {
  ParsedPacket p;
  Bytes f = E4(pb::Ipv4("192.0.2.1", "10.1.0.10", 6, pb::Tcp(1, 2, 0)));
  Bytes bad = f;
  bad[14] = 0x55;  // version 5
  EXPECT_EQ(ParseExact(bad, p), ParseStatus::kMalformed);
  bad = f;
  bad[14] = 0x44;  // IHL 4 < 5
  EXPECT_EQ(ParseExact(bad, p), ParseStatus::kMalformed);
  bad = f;
  bad[16] = 0;
  bad[17] = 10;  // total length 10 < header
  EXPECT_EQ(ParseExact(bad, p), ParseStatus::kMalformed);
  bad = f;
  bad[17] += 4;  // total length beyond the frame
  EXPECT_EQ(ParseExact(bad, p), ParseStatus::kTruncated);
  bad = f;
  bad[34 + 12] = 0x40;  // TCP data offset 4 < 5
  EXPECT_EQ(ParseExact(bad, p), ParseStatus::kMalformed);
  Bytes u = E4(pb::Ipv4("192.0.2.1", "10.1.0.10", 17, pb::Udp(1, 2)));
  u[34 + 4] = 0;
  u[34 + 5] = 4;  // UDP length 4 < 8
  EXPECT_EQ(ParseExact(u, p), ParseStatus::kMalformed);
  Bytes v6 = E6(pb::Ipv6("2001:db8::1", "2001:db8::2", 17, pb::Udp(1, 2)));
  v6[14] = 0x40;  // version 4 in an IPv6 ethertype
  EXPECT_EQ(ParseExact(v6, p), ParseStatus::kMalformed);
  // Nine extension headers: longer than any legitimate chain.
  std::vector<std::pair<uint8_t, Bytes>> many(9, {60, Bytes(6)});
  EXPECT_EQ(ParseExact(E6(pb::Ipv6("2001:db8::1", "2001:db8::2", 17, pb::Udp(1, 2), {.extensions = many})), p),
            ParseStatus::kMalformed);
}

// Parse() takes common IPv4 TCP/UDP frames by a fast path: for every frame it must
// answer exactly as the general parser does. Valid frames of both protocols (with options,
// padding, a VLAN tag, DF, fragments) and tens of thousands of mutations and truncations
// of them, each parsed from a buffer of exactly its size (ASan: no read past the end).
TEST(ParseTest, FastPathAgreesWithTheGeneralParser) {
  const std::vector<Bytes> seeds = {
      E4(pb::Ipv4("192.0.2.1", "10.1.0.10", 17, pb::Udp(5353, 53, {1, 2, 3}))),
      E4(pb::Ipv4("192.0.2.1", "10.1.0.10", 6, pb::Tcp(1234, 80, kTcpSyn), {.df = true})),
      E4(pb::Ipv4("192.0.2.1", "10.1.0.10", 6, pb::Tcp(1234, 80, kTcpAck, Bytes(30)))),
      E4(pb::Ipv4("192.0.2.1", "10.1.0.10", 17, pb::Udp(1, 53), {.ip_options = Bytes(4)})),
      E4(pb::Ipv4("192.0.2.1", "10.1.0.10", 17, pb::Udp(1, 53)), /*vlan=*/7),
      E4(pb::Ipv4("192.0.2.1", "10.1.0.10", 1, Bytes{8, 0, 0, 0, 0, 1, 0, 1})),
  };
  auto same = [](const ParsedPacket& a, const ParsedPacket& b) {
    return a.key == b.key && a.kind == b.kind && a.is_v4 == b.is_v4 && a.is_fragment == b.is_fragment &&
           a.is_first_fragment == b.is_first_fragment && a.dont_fragment == b.dont_fragment &&
           a.tcp_flags == b.tcp_flags && a.ttl == b.ttl && a.icmp_type == b.icmp_type && a.l3_offset == b.l3_offset &&
           a.l4_offset == b.l4_offset && a.ip_len == b.ip_len;
  };
  std::mt19937 rng(11);
  int fast = 0, checked = 0;
  for (int round = 0; round < 40'000; ++round) {
    Bytes f = seeds[rng() % seeds.size()];
    // Flip a few bytes in the headers (or nothing), and sometimes cut or pad the frame,
    // half of those times with the IPv4 total length made to agree (so that a cut header
    // gets past the length checks, and a read past the frame's end shows).
    for (uint32_t k = rng() % 4; k > 0; --k) f[rng() % std::min<size_t>(f.size(), 60)] ^= uint8_t(1u << (rng() % 8));
    if (rng() % 4 == 0) {
      f.resize(rng() % (f.size() + 8));
      if (f.size() >= 18 && rng() % 2 == 0) {
        f[16] = uint8_t((f.size() - 14) >> 8);
        f[17] = uint8_t(f.size() - 14);
      }
    }
    auto buf = std::make_unique<uint8_t[]>(f.size());  // exactly its size: ASan flags any read past the end
    std::copy(f.begin(), f.end(), buf.get());
    ParsedPacket a, b;
    const ParseStatus sa = Parse(buf.get(), uint32_t(f.size()), a);
    const ParseStatus sb = parse_internal::ParseGeneral(buf.get(), uint32_t(f.size()), b);
    ASSERT_EQ(sa, sb) << "round " << round;
    if (sa == ParseStatus::kOk) {
      ASSERT_TRUE(same(a, b)) << "round " << round;
    }
    ParsedPacket c;
    fast += parse_internal::ParseIpv4Fast(buf.get(), uint32_t(f.size()), c);
    ++checked;
  }
  EXPECT_GT(fast, checked / 4) << "the fast path must be exercised";
  EXPECT_LT(fast, checked - checked / 4) << "and so must the general one";
}

}  // namespace
}  // namespace lb::dataplane
