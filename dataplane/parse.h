// Packet parsing: Ethernet (+ one 802.1Q tag), IPv4 (with options), IPv6 (extension
// headers up to the L4 header), TCP, UDP, ICMP and ICMPv6, including the packet quoted in
// an ICMP error.
//
// Parse() reads only the `len` bytes it is given and never past them; every length field
// is checked before use. It has no state and no I/O: any thread, no EAL needed.
#pragma once

#include <netinet/in.h>

#include <cstdint>
#include <cstring>

#include "common/bytes.h"
#include "common/flow_key.h"

namespace lb::dataplane {

inline constexpr uint16_t kEtherTypeIpv4 = 0x0800;
inline constexpr uint16_t kEtherTypeIpv6 = 0x86dd;
inline constexpr uint16_t kEtherTypeVlan = 0x8100;
inline constexpr uint16_t kEtherTypeArp = 0x0806;
inline constexpr uint16_t kEthernetHeaderLen = 14;
inline constexpr uint16_t kVlanTagLen = 4;
inline constexpr uint16_t kIpv4HeaderLen = 20;
inline constexpr uint16_t kIpv6HeaderLen = 40;
inline constexpr uint16_t kUdpHeaderLen = 8;

enum class PacketKind : uint8_t {
  kNotIp,  // ARP, LLDP, a second VLAN tag...: the kernel's business
  kTcp,
  kUdp,
  kIcmpEcho,   // ICMP echo request / ICMPv6 echo request
  kIcmpError,  // key is the quoted flow, reversed into the client -> VIP direction
  kOtherIcmp,  // any other ICMP / ICMPv6 message (ND, echo reply, ...)
  kOtherIp,    // any other L4 protocol, and non-first fragments of them
};

enum class ParseStatus : uint8_t { kOk, kTruncated, kMalformed };

struct ParsedPacket {
  // Client -> VIP 5-tuple. For ICMP errors, the reversed quoted packet. For fragments
  // the ports of the first fragment are kept (the classifier needs the destination
  // port); non-first fragments have no ports.
  FlowKey key;
  PacketKind kind = PacketKind::kNotIp;
  bool is_v4 = false;
  bool is_fragment = false;        // IPv4 MF or offset != 0; IPv6 fragment header
  bool is_first_fragment = false;  // a fragment with offset 0 (it carries the L4 header)
  bool dont_fragment = false;      // IPv4 DF; always true for IPv6 (routers never fragment)
  uint8_t tcp_flags = 0;
  uint8_t ttl = 0;  // TTL / hop limit
  uint8_t icmp_type = 0;
  uint16_t ether_type = 0;  // of the frame, inside one VLAN tag
  uint16_t l3_offset = 0;   // bytes of Ethernet (+ VLAN) header before the IP header
  uint16_t l4_offset = 0;   // start of the L4 header (for ICMP errors, of the ICMP header)
  uint16_t ip_len = 0;      // IP header + payload as the IP header states (frame padding excluded)
};

inline constexpr uint8_t kTcpFin = 0x01;
inline constexpr uint8_t kTcpSyn = 0x02;
inline constexpr uint8_t kTcpRst = 0x04;
inline constexpr uint8_t kTcpAck = 0x10;

namespace parse_internal {

inline bool IsIcmpv4Error(uint8_t type) { return type == 3 || type == 11 || type == 12; }
inline bool IsIcmpv6Error(uint8_t type) { return type >= 1 && type <= 4; }

// Walks IPv6 extension headers starting with `next` at `off`. On return `next` is the
// upper-layer protocol and `off` its offset. Fragment info is reported for the fragment
// header. Returns kTruncated when the chain runs past `len`.
inline ParseStatus WalkIpv6Extensions(const uint8_t* p, uint32_t len, uint8_t& next, uint32_t& off, bool& fragment,
                                      bool& first_fragment) {
  constexpr int kMaxExtensionHeaders = 8;
  for (int i = 0; i < kMaxExtensionHeaders; ++i) {
    switch (next) {
      case IPPROTO_HOPOPTS:
      case IPPROTO_ROUTING:
      case IPPROTO_DSTOPTS: {
        if (off + 2 > len) return ParseStatus::kTruncated;
        const uint32_t ext_len = (uint32_t(p[off + 1]) + 1) * 8;
        if (off + ext_len > len) return ParseStatus::kTruncated;
        next = p[off];
        off += ext_len;
        break;
      }
      case IPPROTO_AH: {
        if (off + 2 > len) return ParseStatus::kTruncated;
        const uint32_t ext_len = (uint32_t(p[off + 1]) + 2) * 4;
        if (off + ext_len > len) return ParseStatus::kTruncated;
        next = p[off];
        off += ext_len;
        break;
      }
      case IPPROTO_FRAGMENT: {
        if (off + 8 > len) return ParseStatus::kTruncated;
        const uint16_t offset_flags = Load16(p + off + 2);
        fragment = true;
        first_fragment = (offset_flags >> 3) == 0;
        next = p[off];
        off += 8;
        break;
      }
      default:
        return ParseStatus::kOk;
    }
  }
  return ParseStatus::kMalformed;  // longer chains are not seen in legitimate traffic
}

// Reads the ports of a TCP or UDP header at `off` (at least 4 bytes present).
inline void ReadPorts(const uint8_t* p, uint32_t off, FlowKey& key) {
  std::memcpy(&key.src_port_be, p + off, 2);
  std::memcpy(&key.dst_port_be, p + off + 2, 2);
}

// Parses the packet quoted by an ICMP error (starting at `p`, `len` bytes quoted) into
// `key`, reversed: the quoted packet went VIP -> client, the flow is client -> VIP.
// Returns false when the quote does not identify a TCP or UDP flow.
inline bool ParseQuotedFlow(const uint8_t* p, uint32_t len, bool v4, FlowKey& key) {
  uint8_t proto;
  uint32_t off;
  FlowKey quoted;
  if (v4) {
    if (len < kIpv4HeaderLen || (p[0] >> 4) != 4) return false;
    off = uint32_t(p[0] & 0x0f) * 4;
    if (off < kIpv4HeaderLen) return false;
    if ((Load16(p + 6) & 0x1fff) != 0) return false;  // non-first fragment: no ports
    proto = p[9];
    quoted.src = IpAddress::FromV4Bytes(p + 12);
    quoted.dst = IpAddress::FromV4Bytes(p + 16);
  } else {
    if (len < kIpv6HeaderLen || (p[0] >> 4) != 6) return false;
    proto = p[6];
    off = kIpv6HeaderLen;
    bool fragment = false, first = false;
    if (WalkIpv6Extensions(p, len, proto, off, fragment, first) != ParseStatus::kOk) return false;
    if (fragment && !first) return false;
    quoted.src = IpAddress::FromV6Bytes(p + 8);
    quoted.dst = IpAddress::FromV6Bytes(p + 24);
  }
  if (proto != IPPROTO_TCP && proto != IPPROTO_UDP) return false;
  if (off + 4 > len) return false;  // RFC 792 / 4443 quote at least the ports
  ReadPorts(p, off, quoted);
  key = FlowKey{};
  key.src = quoted.dst;
  key.dst = quoted.src;
  key.src_port_be = quoted.dst_port_be;
  key.dst_port_be = quoted.src_port_be;
  key.protocol = proto;
  return true;
}

// Parses the ICMP or ICMPv6 header at `off` of the IP datagram `p` (and the packet an
// error quotes). Out of line: rare, and it keeps Parse() small.
[[gnu::noinline]] inline ParseStatus ParseIcmp(const uint8_t* p, uint32_t len, uint32_t off, uint8_t proto,
                                               ParsedPacket& out) {
  if ((proto == IPPROTO_ICMP) != out.is_v4) {
    out.kind = PacketKind::kOtherIp;  // ICMPv6 in IPv4 or ICMP in IPv6: not ours
    return ParseStatus::kOk;
  }
  if (off + 8 > len) return ParseStatus::kTruncated;
  out.icmp_type = p[off];
  const bool echo = out.is_v4 ? out.icmp_type == 8 : out.icmp_type == 128;
  const bool error = out.is_v4 ? IsIcmpv4Error(out.icmp_type) : IsIcmpv6Error(out.icmp_type);
  out.kind = PacketKind::kOtherIcmp;
  if (echo) {
    out.kind = PacketKind::kIcmpEcho;
  } else if (error && !out.is_fragment) {
    FlowKey outer = out.key;
    if (ParseQuotedFlow(p + off + 8, len - off - 8, out.is_v4, out.key) && out.key.dst == outer.dst) {
      out.kind = PacketKind::kIcmpError;
    } else {
      out.key = outer;  // not about a flow to this destination: treat as other ICMP
    }
  }
  return ParseStatus::kOk;
}

// Parses the L4 header of a TCP, UDP, ICMP or ICMPv6 packet at `off` of the IP datagram `p`.
// The caller has set out.key.protocol.
[[gnu::always_inline]] inline ParseStatus ParseL4(const uint8_t* p, uint32_t len, uint32_t off, uint8_t proto,
                                                  ParsedPacket& out) {
  switch (proto) {
    case IPPROTO_TCP: {
      if (off + 20 > len) return ParseStatus::kTruncated;
      const uint32_t data_offset = uint32_t(p[off + 12] >> 4) * 4;
      if (data_offset < 20) return ParseStatus::kMalformed;
      if (off + data_offset > len) return ParseStatus::kTruncated;
      out.key.SetPortsAndProtocol(p + off, proto);
      out.tcp_flags = p[off + 13];
      out.kind = PacketKind::kTcp;
      return ParseStatus::kOk;
    }
    case IPPROTO_UDP: {
      if (off + kUdpHeaderLen > len) return ParseStatus::kTruncated;
      if (!out.is_fragment && Load16(p + off + 4) < kUdpHeaderLen) return ParseStatus::kMalformed;
      out.key.SetPortsAndProtocol(p + off, proto);
      out.kind = PacketKind::kUdp;
      return ParseStatus::kOk;
    }
    case IPPROTO_ICMP:
    case IPPROTO_ICMPV6:
      return ParseIcmp(p, len, off, proto, out);
    default:
      out.kind = PacketKind::kOtherIp;
      return ParseStatus::kOk;
  }
}

// The traffic an LB mostly sees in one pass: untagged IPv4 without options, not a
// fragment, TCP or UDP, every length in order. Fills `out` exactly as ParseGeneral()
// would and returns true; false (out untouched) for anything else, which ParseGeneral()
// then takes. tests/unit/parse_test.cc checks the two agree.
inline bool ParseIpv4Fast(const uint8_t* data, uint32_t len, ParsedPacket& out) {
  constexpr uint32_t kL4 = kEthernetHeaderLen + kIpv4HeaderLen;
  if (len < kL4 + kUdpHeaderLen || Load16(data + 12) != kEtherTypeIpv4) return false;
  const uint8_t* ip = data + kEthernetHeaderLen;
  const uint16_t total = Load16(ip + 2);
  const uint16_t frag = Load16(ip + 6);
  const uint8_t proto = ip[9];
  if (ip[0] != 0x45 || (frag & 0x3fff) != 0 || total > len - kEthernetHeaderLen) return false;
  const uint8_t* l4 = ip + kIpv4HeaderLen;
  if (proto == IPPROTO_UDP) {
    if (total < kIpv4HeaderLen + kUdpHeaderLen || Load16(l4 + 4) < kUdpHeaderLen) return false;
  } else if (proto == IPPROTO_TCP) {
    if (total < kIpv4HeaderLen + 20) return false;  // before reading the data offset
    const uint32_t data_offset = uint32_t(l4[12] >> 4) * 4;
    if (data_offset < 20 || kIpv4HeaderLen + data_offset > total) return false;
  } else {
    return false;
  }
  out = ParsedPacket{};
  out.key.src = IpAddress::FromV4Bytes(ip + 12);
  out.key.dst = IpAddress::FromV4Bytes(ip + 16);
  out.key.SetPortsAndProtocol(l4, proto);
  out.kind = proto == IPPROTO_UDP ? PacketKind::kUdp : PacketKind::kTcp;
  out.is_v4 = true;
  out.dont_fragment = (frag & 0x4000) != 0;
  if (proto == IPPROTO_TCP) out.tcp_flags = l4[13];
  out.ttl = ip[8];
  out.ether_type = kEtherTypeIpv4;
  out.l3_offset = kEthernetHeaderLen;
  out.l4_offset = kL4;
  out.ip_len = total;
  return true;
}

// Parse() for every frame: any ether type, one VLAN tag, IPv4 options, IPv6 extension
// headers, fragments, ICMP.
inline ParseStatus ParseGeneral(const uint8_t* data, uint32_t len, ParsedPacket& out) {
  out = ParsedPacket{};
  if (len < kEthernetHeaderLen) return ParseStatus::kTruncated;
  uint32_t off = kEthernetHeaderLen;
  uint16_t ether_type = Load16(data + 12);
  if (ether_type == kEtherTypeVlan) {
    if (len < kEthernetHeaderLen + kVlanTagLen) return ParseStatus::kTruncated;
    ether_type = Load16(data + 16);
    off += kVlanTagLen;
  }
  out.ether_type = ether_type;
  out.l3_offset = uint16_t(off);
  const uint8_t* ip = data + off;
  const uint32_t avail = len - off;

  uint8_t proto;
  uint32_t l4;  // offset of the L4 header from `ip`
  if (ether_type == kEtherTypeIpv4) {
    if (avail < kIpv4HeaderLen) return ParseStatus::kTruncated;
    if ((ip[0] >> 4) != 4) return ParseStatus::kMalformed;
    l4 = uint32_t(ip[0] & 0x0f) * 4;
    const uint16_t total = Load16(ip + 2);
    if (l4 < kIpv4HeaderLen || total < l4) return ParseStatus::kMalformed;
    if (l4 > avail || total > avail) return ParseStatus::kTruncated;
    const uint16_t frag = Load16(ip + 6);
    out.is_v4 = true;
    out.ip_len = total;
    out.ttl = ip[8];
    out.dont_fragment = (frag & 0x4000) != 0;
    out.is_fragment = (frag & 0x3fff) != 0;  // MF set or offset != 0
    out.is_first_fragment = out.is_fragment && (frag & 0x1fff) == 0;
    proto = ip[9];
    out.key.src = IpAddress::FromV4Bytes(ip + 12);
    out.key.dst = IpAddress::FromV4Bytes(ip + 16);
  } else if (ether_type == kEtherTypeIpv6) {
    if (avail < kIpv6HeaderLen) return ParseStatus::kTruncated;
    if ((ip[0] >> 4) != 6) return ParseStatus::kMalformed;
    const uint32_t total = kIpv6HeaderLen + uint32_t(Load16(ip + 4));
    if (total > avail) return ParseStatus::kTruncated;
    out.ip_len = uint16_t(total);
    out.ttl = ip[7];
    out.dont_fragment = true;
    out.key.src = IpAddress::FromV6Bytes(ip + 8);
    out.key.dst = IpAddress::FromV6Bytes(ip + 24);
    proto = ip[6];
    l4 = kIpv6HeaderLen;
    const ParseStatus s = WalkIpv6Extensions(ip, total, proto, l4, out.is_fragment, out.is_first_fragment);
    if (s != ParseStatus::kOk) return s;
  } else {
    out.kind = PacketKind::kNotIp;
    return ParseStatus::kOk;
  }
  out.key.protocol = proto;
  out.l4_offset = uint16_t(off + l4);
  if (out.is_fragment && !out.is_first_fragment) {
    // No L4 header here: the protocol alone decides the kind, and there are no ports.
    out.kind = proto == IPPROTO_TCP ? PacketKind::kTcp : proto == IPPROTO_UDP ? PacketKind::kUdp : PacketKind::kOtherIp;
    return ParseStatus::kOk;
  }
  // Parse L4 within the IP datagram (not the frame), so padding is never read as data.
  return ParseL4(ip, out.ip_len, l4, proto, out);
}

}  // namespace parse_internal

// Parses the frame in `data[0, len)`. On kOk, `out` describes it (kind kNotIp for
// anything but IPv4/IPv6). kTruncated and kMalformed are drop reasons.
inline ParseStatus Parse(const uint8_t* data, uint32_t len, ParsedPacket& out) {
  if (parse_internal::ParseIpv4Fast(data, len, out)) return ParseStatus::kOk;
  return parse_internal::ParseGeneral(data, len, out);
}

}  // namespace lb::dataplane
