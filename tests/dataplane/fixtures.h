// Shared fixtures of the dataplane tests: addresses, MACs, frame helpers and the test
// configuration (services for every encapsulation, and a four-backend service for flow
// behaviour).
#pragma once

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "common/config.h"
#include "common/flow_key.h"
#include "dataplane/parse.h"
#include "tests/helpers/packet_builder.h"

namespace lb::dataplane::test {

using lb::testing::Bytes;
namespace pb = lb::testing;

inline constexpr uint8_t kSyn = kTcpSyn, kAck = kTcpAck, kFin = kTcpFin;
inline const pb::Mac kRouterMac = {0x02, 0, 0, 0, 0, 0x01};   // the ToR, as the client side
inline const pb::Mac kPortMac = {0x02, 0, 0, 0, 0, 0xaa};     // this LB port
inline const pb::Mac kGatewayMac = {0x02, 0, 0, 0, 0, 0xbb};  // next hop toward backends

inline IpAddress Addr(const char* s) { return *IpAddress::Parse(s); }

inline Bytes In4(const Bytes& ip, uint16_t vlan = 0, size_t pad_to = 0) {
  return pb::Ether(kPortMac, kRouterMac, 0x0800, ip, vlan, pad_to);
}
inline Bytes In6(const Bytes& ip) { return pb::Ether(kPortMac, kRouterMac, 0x86dd, ip); }
inline Bytes Out4(const Bytes& ip, uint16_t vlan = 0) { return pb::Ether(kGatewayMac, kPortMac, 0x0800, ip, vlan); }
inline Bytes Out6(const Bytes& ip) { return pb::Ether(kGatewayMac, kPortMac, 0x86dd, ip); }
inline Bytes Reply4(const Bytes& ip) { return pb::Ether(kRouterMac, kPortMac, 0x0800, ip); }
inline Bytes Reply6(const Bytes& ip) { return pb::Ether(kRouterMac, kPortMac, 0x86dd, ip); }

inline ServiceConfig Service(const char* vip, uint8_t proto, uint16_t port, std::vector<const char*> backends,
                             ForwardingMode mode = ForwardingMode::kDsrIpip) {
  ServiceConfig s;
  s.vip = Addr(vip);
  s.protocol = proto;
  s.port = port;
  s.mode = mode;
  s.table_size = 1009;
  for (const char* b : backends) s.backends.push_back({Addr(b)});
  return s;
}

inline constexpr size_t kMultiService = 7;  // TestConfig().services[7]: 10.1.0.20 TCP 80, kMulti
inline constexpr const char* kMulti[] = {"192.168.30.1", "192.168.30.2", "192.168.30.3", "192.168.30.4"};

inline DataplaneConfig TestConfig() {
  DataplaneConfig c;
  std::copy(kPortMac.begin(), kPortMac.end(), c.next_hop.source_mac.begin());
  std::copy(kGatewayMac.begin(), kGatewayMac.end(), c.next_hop.gateway_mac.begin());
  c.encap.source_v4 = *IpPrefix::Parse("10.255.0.1/32");
  c.encap.source_v6 = *IpPrefix::Parse("fd00:ff::1/128");
  c.services = {
      Service("10.1.0.10", IPPROTO_TCP, 80, {"192.168.10.1"}),
      Service("10.1.0.10", IPPROTO_UDP, 53, {"192.168.10.1"}),
      Service("2001:db8:1::10", IPPROTO_TCP, 80, {"fd00:10::1"}),
      Service("10.1.0.11", IPPROTO_UDP, 53, {"192.168.10.2"}, ForwardingMode::kDsrGue),
      Service("2001:db8:1::11", IPPROTO_UDP, 53, {"fd00:10::2"}, ForwardingMode::kDsrGue),
      Service("10.1.0.12", IPPROTO_UDP, 53, {"fd00:10::3"}),         // 4in6
      Service("2001:db8:1::12", IPPROTO_TCP, 80, {"192.168.10.3"}),  // 6in4
      Service("10.1.0.20", IPPROTO_TCP, 80, {kMulti[0], kMulti[1], kMulti[2], kMulti[3]}),
      Service("10.1.0.20", IPPROTO_UDP, 0, {kMulti[0], kMulti[1], kMulti[2], kMulti[3]}),
      Service("10.1.0.13", IPPROTO_UDP, 53, {}),
  };
  return c;
}

inline uint32_t Hash(const char* src, uint16_t sport, const char* dst, uint16_t dport, uint8_t proto) {
  FlowKey k;
  k.src = Addr(src);
  k.dst = Addr(dst);
  k.src_port_be = htons(sport);
  k.dst_port_be = htons(dport);
  k.protocol = proto;
  return FlowHasher{}.Hash(k);  // the workers' default
}

inline uint16_t GueSourcePort(uint32_t hash) { return uint16_t(0xc000 | (hash & 0x3fff)); }

#define EXPECT_BYTES_EQ(actual, expected) EXPECT_EQ(pb::Hex(actual), pb::Hex(expected))

// The backend address (outer IPv4 destination) of an IPIP frame from the worker.
inline Bytes OuterDestination4(const Bytes& frame) { return Bytes(frame.begin() + 30, frame.begin() + 34); }

// Frames as a sender with the kernel's offloads hands them on (offload_test,
// af_packet_port_test).
inline Bytes Payload(size_t n) {
  Bytes b(n);
  for (size_t i = 0; i < n; ++i) b[i] = uint8_t(i * 7 + 3);
  return b;
}

// A TCP header (40000 -> 80) with sequence number `seq` and `flags` around `payload`.
inline Bytes TcpSeq(uint32_t seq, uint8_t flags, const Bytes& payload) {
  Bytes t = pb::Tcp(40000, 80, flags, payload);
  t[4] = uint8_t(seq >> 24);
  t[5] = uint8_t(seq >> 16);
  t[6] = uint8_t(seq >> 8);
  t[7] = uint8_t(seq);
  return t;
}

// Sets the checksum field `field` bytes into the L4 header at `l4` of `frame` (IP header
// at `l3`) to the folded pseudo-header sum, as a sender with checksum offload leaves it
// (CHECKSUM_PARTIAL).
inline void MakePartial(Bytes& frame, size_t l3, size_t l4, size_t field, bool v4) {
  Bytes pseudo;
  const uint32_t l4_len = uint32_t(frame.size() - l4);
  if (v4) {
    pseudo.insert(pseudo.end(), frame.begin() + l3 + 12, frame.begin() + l3 + 20);
    pseudo.insert(pseudo.end(), {0, frame[l3 + 9], uint8_t(l4_len >> 8), uint8_t(l4_len)});
  } else {
    pseudo.insert(pseudo.end(), frame.begin() + l3 + 8, frame.begin() + l3 + 40);
    pseudo.insert(pseudo.end(), {0, 0, uint8_t(l4_len >> 8), uint8_t(l4_len), 0, 0, 0, frame[l3 + 6]});
  }
  const uint16_t folded = uint16_t(~pb::InternetChecksum(pseudo.data(), pseudo.size()));
  frame[l4 + field] = uint8_t(folded >> 8);
  frame[l4 + field + 1] = uint8_t(folded);
}

// Piece `i` of `payload` cut into pieces of `size` bytes (the last may be shorter).
inline Bytes Chunk(const Bytes& payload, size_t i, size_t size) {
  return Bytes(payload.begin() + std::min(payload.size(), i * size),
               payload.begin() + std::min(payload.size(), (i + 1) * size));
}

// The segments a TCP/IPv4 sender's TSO makes of `payload` (192.0.2.1 -> 10.0.0.1, DF):
// `mss` bytes each, sequence numbers from `seq`, IPv4 IDs from `id`; FIN and PSH of
// `flags` on the last segment only, CWR on the first only.
inline std::vector<Bytes> Tcp4Segments(uint32_t seq, uint8_t flags, const Bytes& payload, uint16_t mss, uint16_t id) {
  constexpr uint8_t kLastOnly = 0x01 | 0x08, kFirstOnly = 0x80;
  std::vector<Bytes> out;
  const size_t n = std::max<size_t>(1, (payload.size() + mss - 1) / mss);
  for (size_t i = 0; i < n; ++i) {
    const Bytes chunk = Chunk(payload, i, mss);
    uint8_t f = uint8_t(flags & ~(kLastOnly | kFirstOnly));
    if (i + 1 == n) f |= flags & kLastOnly;
    if (i == 0) f |= flags & kFirstOnly;
    const pb::Ipv4Options ip{.df = true, .id = uint16_t(id + i)};
    out.push_back(In4(pb::Ipv4("192.0.2.1", "10.0.0.1", IPPROTO_TCP, TcpSeq(uint32_t(seq + i * mss), f, chunk), ip)));
  }
  return out;
}

}  // namespace lb::dataplane::test
