// Packet rewrites done in place on an rte_mbuf: encapsulation toward a backend, and the
// ICMP answers a VIP gives itself (echo reply; fragmentation needed / packet too big).
//
// Each function takes a packet that Parse() accepted and its ParsedPacket, rewrites the
// mbuf and returns false only when the mbuf lacks headroom. The encapsulation variants
// (outer IPv4 or IPv6, GUE or not) are template parameters, chosen once per packet.
// Hot path: no allocation, no locks; worker lcore (or any thread owning the mbuf).
#pragma once

#include <rte_ip.h>
#include <rte_mbuf.h>

#include <cstdint>
#include <cstring>

#include "common/config.h"
#include "dataplane/encap.h"
#include "dataplane/checksum.h"
#include "dataplane/ethernet.h"
#include "dataplane/parse.h"

namespace lb::dataplane::rewrite {

inline constexpr uint16_t kGueHeaderLen = 4;

// Decrements the TTL / hop limit of the IP header at `ip`, fixing the IPv4 checksum: the
// word (TTL | protocol) goes down by 0x0100 whatever it was (TTL > 0: the caller drops
// TTL <= 1), so the delta is a constant and needs no read of the word.
inline void DecrementTtl(uint8_t* ip, bool v4) {
  if (v4) {
    ip[8] -= 1;
    ChecksumDelta d;
    d.Add(0x0100, 0x0000);
    d.ApplyTo(ip + 10);
  } else {
    ip[7] -= 1;
  }
}

// Removes Ethernet padding after the IP datagram, so it is never carried inside a tunnel
// or quoted in an ICMP error.
inline void TrimToDatagram(rte_mbuf* m, const ParsedPacket& p) {
  const uint32_t frame_len = uint32_t(p.l3_offset) + p.ip_len;
  if (m->pkt_len > frame_len) rte_pktmbuf_trim(m, uint16_t(m->pkt_len - frame_len));
}

// Encapsulates the IP datagram of `m` (described by `p`) with the backend's prepared
// headers `h` (EncapHeader, built for outer IPv4 or not and GUE or not as the template
// arguments say): IPIP (RFC 2003) / IPv6-in-IPv6 and 4in6 (RFC 2473) / 6in4 (RFC 4213
// §3.5), or GUE version 0 (draft-ietf-intarea-gue §3.1) over UDP with those inner
// protocols. The outer header copies the inner DSCP and ECN (RFC 6040 normal mode) and,
// from an IPv4 inner header, DF (RFC 2003 §3.1). The outer source takes its varying bits,
// and the outer IPv6 flow label and the GUE source port their entropy, from `flow_hash`
// (RFC 6438, RFC 8086 §3.2), so that ECMP and RSS on the way spread flows. `ip_id` is the
// outer IPv4 identification when DF is clear.
template <bool kOuterV4, bool kGue>
[[gnu::always_inline]] inline bool Encapsulate(rte_mbuf* m, const ParsedPacket& p, const EncapHeader& h,
                                               uint32_t flow_hash, uint16_t ip_id) {
  constexpr uint16_t kOuterLen = kOuterV4 ? kIpv4HeaderLen : kIpv6HeaderLen;
  constexpr uint16_t kHeadersLen = kOuterLen + (kGue ? kUdpHeaderLen + kGueHeaderLen : 0);
  TrimToDatagram(m, p);
  const uint8_t* inner = rte_pktmbuf_mtod_offset(m, const uint8_t*, p.l3_offset);
  const uint8_t tos = p.is_v4 ? inner[1] : uint8_t((inner[0] & 0x0f) << 4 | inner[1] >> 4);
  const uint16_t udp_len = kGue ? kUdpHeaderLen + kGueHeaderLen + p.ip_len : 0;

  // The new L2 and outer headers replace the old L2 header; they are always longer.
  auto* d = reinterpret_cast<uint8_t*>(rte_pktmbuf_prepend(m, uint16_t(h.len - p.l3_offset)));
  if (d == nullptr) return false;
  // Two fixed-size copies rather than one of h.len bytes: each compiles to a few moves.
  if (h.l2_len == kEthernetHeaderLen) {
    std::memcpy(d, h.bytes.data(), kEthernetHeaderLen + kHeadersLen);
  } else {
    std::memcpy(d, h.bytes.data(), kEthernetHeaderLen + kVlanTagLen + kHeadersLen);
  }
  uint8_t* ip = d + h.l2_len;
  const uint32_t source_low = h.SourceLow(flow_hash);
  if constexpr (kOuterV4) {
    const bool df = !p.is_v4 || p.dont_fragment;
    const uint16_t total = uint16_t(kIpv4HeaderLen + (kGue ? udp_len : p.ip_len));
    const uint16_t id = df ? 0 : ip_id;  // RFC 6864 §4.1: ID may be 0 with DF set
    const uint16_t flags = df ? 0x4000 : 0;
    ip[1] = tos;
    Store16(ip + 2, total);
    Store16(ip + 4, id);
    Store16(ip + 6, flags);
    Store32(ip + 12, source_low);
    Store16(ip + 10,
            FinishChecksum(h.ipv4_partial_sum + tos + total + id + flags + (source_low >> 16) + (source_low & 0xffff)));
  } else {
    Store32(ip, 6u << 28 | uint32_t(tos) << 20 | (flow_hash & 0xfffff));
    Store16(ip + 4, kGue ? udp_len : p.ip_len);
    Store32(ip + 20, source_low);
  }
  if constexpr (kGue) {
    uint8_t* udp = ip + kOuterLen;
    Store16(udp, uint16_t(0xc000 | (flow_hash & 0x3fff)));  // ephemeral range
    Store16(udp + 4, udp_len);
    // IPv4: no checksum (RFC 768); IPv6: RFC 8200 §8.1 requires one, over every segment.
    if constexpr (!kOuterV4) {
      uint16_t payload_sum = 0;
      rte_raw_cksum_mbuf(m, uint32_t(h.l2_len + kOuterLen), udp_len, &payload_sum);
      uint32_t sum = uint32_t(rte_ipv6_phdr_cksum(reinterpret_cast<const rte_ipv6_hdr*>(ip), 0)) + payload_sum;
      sum = (sum & 0xffff) + (sum >> 16);
      sum = (sum & 0xffff) + (sum >> 16);
      StoreChecksum(udp + 6, sum == 0xffff ? 0 : sum);  // a zero result is sent as 0xffff
    }
  }
  return true;
}

// Whether an echo request's IPv4 header checksum and ICMP / ICMPv6 checksum are valid.
// The VIP answers echo requests as a host, and a host discards datagrams with bad
// checksums (RFC 1122 §3.2.1.2, §3.2.2); forwarded packets are left to the backend.
inline bool EchoChecksumsValid(const rte_mbuf* m, const ParsedPacket& p) {
  const uint8_t* ip = rte_pktmbuf_mtod_offset(m, const uint8_t*, p.l3_offset);
  if (p.is_v4 && rte_raw_cksum(ip, p.l4_offset - p.l3_offset) != 0xffff) return false;
  const uint16_t icmp_len = uint16_t(p.ip_len - (p.l4_offset - p.l3_offset));
  uint16_t icmp_sum = 0;
  if (rte_raw_cksum_mbuf(m, p.l4_offset, icmp_len, &icmp_sum) != 0) return false;
  uint32_t sum = icmp_sum;
  if (!p.is_v4) {
    struct {
      uint8_t addresses[32];
      uint32_t length_be;
      uint8_t zero[3];
      uint8_t next_header;
    } pseudo;  // RFC 8200 §8.1
    std::memcpy(pseudo.addresses, ip + 8, 32);
    pseudo.length_be = rte_cpu_to_be_32(icmp_len);
    std::memset(pseudo.zero, 0, sizeof(pseudo.zero));
    pseudo.next_header = IPPROTO_ICMPV6;
    sum += rte_raw_cksum(&pseudo, sizeof(pseudo));
  }
  return Fold(sum) == 0xffff;
}

// Finishes a TCP or UDP checksum that its sender left partial. A Linux sender with
// checksum offload (veth, virtio, a local socket) hands a packet on with only the
// pseudo-header sum in its checksum field (CHECKSUM_PARTIAL), and af_packet delivers it
// so; forwarded as it is, the backend drops it. Such a field holds the folded
// pseudo-header sum. A complete checksum equals that by chance, once in 65536 packets,
// so a packet is summed only when its field matches, and completed only when it does not
// verify as it is. The datagram must lie in the first segment; IPv6 with extension
// headers is left alone. Returns whether it completed a checksum.
inline bool CompletePartialChecksum(rte_mbuf* m, const ParsedPacket& p) {
  const bool tcp = p.kind == PacketKind::kTcp;
  if ((!tcp && p.kind != PacketKind::kUdp) || p.is_fragment) return false;
  const uint16_t ip_header_len = uint16_t(p.l4_offset - p.l3_offset);
  if (!p.is_v4 && ip_header_len != 40) return false;
  if (uint32_t(p.l3_offset) + p.ip_len > m->data_len || p.ip_len < ip_header_len + (tcp ? 20 : 8)) return false;
  const uint16_t l4_len = uint16_t(p.ip_len - ip_header_len);
  uint8_t* ip = rte_pktmbuf_mtod_offset(m, uint8_t*, p.l3_offset);
  uint8_t* l4 = ip + ip_header_len;
  uint8_t* field = l4 + (tcp ? 16 : 6);
  uint16_t stored;
  std::memcpy(&stored, field, sizeof(stored));
  if (!tcp && p.is_v4 && stored == 0) return false;  // IPv4 UDP without a checksum
  // The folded pseudo-header sum, its L4 length from the IP header (= l4_len).
  const uint16_t pseudo = p.is_v4 ? rte_ipv4_phdr_cksum(reinterpret_cast<const rte_ipv4_hdr*>(ip), 0)
                                  : rte_ipv6_phdr_cksum(reinterpret_cast<const rte_ipv6_hdr*>(ip), 0);
  if (stored != pseudo) return false;
  const uint32_t segment = rte_raw_cksum(l4, l4_len);  // holds the pseudo-header sum in the field
  if (Fold(pseudo + segment) == 0xffff) return false;  // a complete checksum after all
  uint16_t checksum = FinishChecksum(segment);
  if (!tcp && checksum == 0) checksum = 0xffff;  // UDP sends zero as all ones
  std::memcpy(field, &checksum, sizeof(checksum));
  return true;
}

// Turns an ICMP / ICMPv6 echo request to a VIP into its reply, in place: addresses and
// MAC addresses swapped, a fresh TTL, the type changed and the checksums fixed
// incrementally (swapping addresses leaves the ICMPv6 pseudo-header sum unchanged).
inline void MakeEchoReply(rte_mbuf* m, const ParsedPacket& p) {
  TrimToDatagram(m, p);
  uint8_t* eth = rte_pktmbuf_mtod(m, uint8_t*);
  uint8_t mac[6];
  std::memcpy(mac, eth, 6);
  std::memcpy(eth, eth + 6, 6);
  std::memcpy(eth + 6, mac, 6);
  uint8_t* ip = eth + p.l3_offset;
  uint8_t* icmp = eth + p.l4_offset;
  const uint16_t old_type_word = Load16(icmp);
  if (p.is_v4) {
    uint8_t a[4];
    std::memcpy(a, ip + 12, 4);
    std::memcpy(ip + 12, ip + 16, 4);
    std::memcpy(ip + 16, a, 4);
    const uint16_t old_ttl_word = Load16(ip + 8);
    ip[8] = 64;
    UpdateChecksum(ip + 10, old_ttl_word, Load16(ip + 8));
    icmp[0] = 0;  // echo reply
  } else {
    uint8_t a[16];
    std::memcpy(a, ip + 8, 16);
    std::memcpy(ip + 8, ip + 24, 16);
    std::memcpy(ip + 24, a, 16);
    ip[7] = 64;
    icmp[0] = 129;  // echo reply
  }
  UpdateChecksum(icmp + 2, old_type_word, Load16(icmp));
}

// Turns a packet that is too big to encapsulate into the ICMP error that tells its
// sender the usable MTU, in place: IPv4 "fragmentation needed" (RFC 792, RFC 1191 §4)
// quoting at most 576 bytes in all, or ICMPv6 "packet too big" (RFC 4443 §3.2) quoting
// at most 1280 bytes in all. The error comes from the VIP the packet was sent to.
inline bool MakeTooBig(rte_mbuf* m, const ParsedPacket& p, uint16_t mtu) {
  if (m->nb_segs != 1) return false;  // the quote is checksummed as one buffer
  TrimToDatagram(m, p);
  const uint16_t ip_len = p.is_v4 ? kIpv4HeaderLen : kIpv6HeaderLen;
  const uint16_t max_total = p.is_v4 ? 576 : 1280;
  const uint16_t quoted = std::min<uint16_t>(p.ip_len, uint16_t(max_total - ip_len - 8));
  rte_pktmbuf_trim(m, uint16_t(p.ip_len - quoted));
  const uint16_t l2 = p.l3_offset;
  uint8_t* h = reinterpret_cast<uint8_t*>(rte_pktmbuf_prepend(m, uint16_t(ip_len + 8)));
  if (h == nullptr) return false;
  // The L2 header moves to the new front (at least 28 bytes away, so no overlap), with
  // the MAC addresses swapped.
  const uint8_t* old_eth = h + ip_len + 8;
  std::memcpy(h, old_eth + 6, 6);
  std::memcpy(h + 6, old_eth, 6);
  std::memcpy(h + 12, old_eth + 12, l2 - 12);
  uint8_t* ip = h + l2;
  uint8_t* icmp = ip + ip_len;
  const uint8_t* quote = icmp + 8;
  if (p.is_v4) {
    ip[0] = 0x45;
    ip[1] = 0;
    Store16(ip + 2, uint16_t(ip_len + 8 + quoted));
    Store32(ip + 4, 0);
    ip[8] = 64;
    ip[9] = IPPROTO_ICMP;
    Store16(ip + 10, 0);
    std::memcpy(ip + 12, quote + 16, 4);  // from the VIP (the quoted destination)
    std::memcpy(ip + 16, quote + 12, 4);  // to the sender
    StoreChecksum(ip + 10, rte_raw_cksum(ip, kIpv4HeaderLen));
    icmp[0] = 3;  // destination unreachable
    icmp[1] = 4;  // fragmentation needed and DF set
    Store16(icmp + 2, 0);
    Store16(icmp + 4, 0);
    Store16(icmp + 6, mtu);
    StoreChecksum(icmp + 2, rte_raw_cksum(icmp, 8u + quoted));
  } else {
    Store32(ip, 6u << 28);
    Store16(ip + 4, uint16_t(8 + quoted));
    ip[6] = IPPROTO_ICMPV6;
    ip[7] = 64;
    std::memcpy(ip + 8, quote + 24, 16);
    std::memcpy(ip + 24, quote + 8, 16);
    icmp[0] = 2;  // packet too big
    icmp[1] = 0;
    Store16(icmp + 2, 0);
    Store32(icmp + 4, mtu);
    const uint16_t cksum = rte_ipv6_udptcp_cksum(reinterpret_cast<const rte_ipv6_hdr*>(ip), icmp);
    std::memcpy(icmp + 2, &cksum, 2);
  }
  return true;
}

// ---- NAT (RFC 3022): addresses and ports rewritten in place ----

// Writes the big-endian 16-bit `value` at `at`, recording the change in `d`.
inline void WriteWord(uint8_t* at, uint16_t value, ChecksumDelta& d) {
  d.Add(Load16(at), value);
  Store16(at, value);
}

// Writes the `kBytes` bytes at `src` at `at`, recording the change in `d`.
template <int kBytes>
inline void WriteWords(uint8_t* at, const uint8_t* src, ChecksumDelta& d) {
  for (int i = 0; i < kBytes; i += 2) WriteWord(at + i, uint16_t(src[i] << 8 | src[i + 1]), d);
}

// Writes `a` (of the packet's family) at `at`, recording the change in `d`.
inline void WriteAddress(uint8_t* at, const IpAddress& a, bool v4, ChecksumDelta& d) {
  if (v4) return WriteWords<4>(at, a.V4Bytes(), d);
  WriteWords<16>(at, a.bytes.data(), d);
}

// Writes the ports of the TCP or UDP header at `l4`, recording the change in `d`.
inline void WritePorts(uint8_t* l4, uint16_t src_port_be, uint16_t dst_port_be, ChecksumDelta& d) {
  WriteWord(l4, rte_be_to_cpu_16(src_port_be), d);
  WriteWord(l4 + 2, rte_be_to_cpu_16(dst_port_be), d);
}

// Gives the IP datagram of `m` a fresh Ethernet header toward `dst_mac` (the next hop's
// source MAC and VLAN); returns the IP header, or nullptr without headroom.
inline uint8_t* Reframe(rte_mbuf* m, const ParsedPacket& p, const MacAddress& dst_mac, const NextHop& hop) {
  TrimToDatagram(m, p);
  const uint16_t l2 = EthernetLen(hop.vlan);
  if (l2 > p.l3_offset) {
    if (rte_pktmbuf_prepend(m, uint16_t(l2 - p.l3_offset)) == nullptr) return nullptr;
  } else if (l2 < p.l3_offset) {
    rte_pktmbuf_adj(m, uint16_t(p.l3_offset - l2));
  }
  uint8_t* frame = rte_pktmbuf_mtod(m, uint8_t*);
  WriteEthernet(frame, dst_mac, hop.source_mac, hop.vlan, p.is_v4 ? kEtherTypeIpv4 : kEtherTypeIpv6);
  return frame + l2;
}

// The endpoints of a translated packet.
struct NatEndpoints {
  const IpAddress* src;
  uint16_t src_port_be;
  const IpAddress* dst;
  uint16_t dst_port_be;
};

// Translates a TCP or UDP packet to `to`, decrements its TTL and frames it toward
// `dst_mac`. Checksums are adjusted, not recomputed: IPv4 header, and TCP or UDP over
// the pseudo-header and ports (a zero IPv4 UDP checksum stays zero; a computed zero is
// sent as 0xffff, RFC 768).
inline bool NatTranslate(rte_mbuf* m, const ParsedPacket& p, const NatEndpoints& to, const MacAddress& dst_mac,
                         const NextHop& hop) {
  uint8_t* ip = Reframe(m, p, dst_mac, hop);
  if (ip == nullptr) return false;
  uint8_t* l4 = ip + (p.l4_offset - p.l3_offset);
  const bool udp = p.key.protocol == IPPROTO_UDP;
  uint8_t* l4_sum = l4 + (udp ? 6 : 16);
  const bool no_udp_sum = udp && p.is_v4 && Load16(l4_sum) == 0;
  if (no_udp_sum) l4_sum = nullptr;
  ChecksumDelta addresses;  // covered by the IPv4 header checksum and the L4 one
  WriteAddress(ip + (p.is_v4 ? 12 : 8), *to.src, p.is_v4, addresses);
  WriteAddress(ip + (p.is_v4 ? 16 : 24), *to.dst, p.is_v4, addresses);
  ChecksumDelta all = addresses;
  WritePorts(l4, to.src_port_be, to.dst_port_be, all);
  if (p.is_v4) addresses.ApplyTo(ip + 10);
  if (l4_sum != nullptr) {
    all.ApplyTo(l4_sum);
    if (udp && Load16(l4_sum) == 0) Store16(l4_sum, 0xffff);
  }
  DecrementTtl(ip, p.is_v4);
  return true;
}

// Translates an ICMP error about a NATed flow: the outer destination becomes
// `outer_dst` (and the outer source `*outer_src` when given), the quoted packet's
// endpoints become `quoted`. Recomputed: the quoted IPv4 header checksum and the ICMP
// checksum; adjusted: the outer IPv4 header checksum and the quoted TCP/UDP checksum
// when the quote holds it. False without headroom, or for a quote this cannot rewrite
// (IPv6 extension headers).
inline bool NatTranslateIcmpError(rte_mbuf* m, const ParsedPacket& p, const IpAddress* outer_src,
                                  const IpAddress& outer_dst, const NatEndpoints& quoted, const MacAddress& dst_mac,
                                  const NextHop& hop) {
  const uint16_t icmp_off = uint16_t(p.l4_offset - p.l3_offset);
  if (!p.is_v4 && icmp_off != kIpv6HeaderLen) return false;
  uint8_t* ip = Reframe(m, p, dst_mac, hop);
  if (ip == nullptr) return false;
  ChecksumDelta outer;  // the outer IPv4 header's (the ICMP checksum is recomputed below)
  if (outer_src != nullptr) WriteAddress(ip + (p.is_v4 ? 12 : 8), *outer_src, p.is_v4, outer);
  WriteAddress(ip + (p.is_v4 ? 16 : 24), outer_dst, p.is_v4, outer);
  if (p.is_v4) outer.ApplyTo(ip + 10);
  uint8_t* icmp = ip + icmp_off;
  uint8_t* q = icmp + 8;
  const uint32_t quoted_len = uint32_t(p.ip_len) - icmp_off - 8;
  const uint32_t q_ihl = p.is_v4 ? uint32_t(q[0] & 0x0f) * 4 : kIpv6HeaderLen;
  if (!p.is_v4 && q[6] != p.key.protocol) return false;  // extension headers in the quote
  uint8_t* ql4 = q + q_ihl;
  const uint32_t ql4_len = quoted_len - q_ihl;  // Parse() saw at least the ports
  const bool udp = p.key.protocol == IPPROTO_UDP;
  const uint32_t sum_at = udp ? 6 : 16;
  uint8_t* ql4_sum = ql4_len >= sum_at + 2 ? ql4 + sum_at : nullptr;
  if (ql4_sum != nullptr && udp && p.is_v4 && Load16(ql4_sum) == 0) ql4_sum = nullptr;
  ChecksumDelta inner;  // the quoted TCP/UDP checksum's, when the quote holds it
  WriteAddress(q + (p.is_v4 ? 12 : 8), *quoted.src, p.is_v4, inner);
  WriteAddress(q + (p.is_v4 ? 16 : 24), *quoted.dst, p.is_v4, inner);
  WritePorts(ql4, quoted.src_port_be, quoted.dst_port_be, inner);
  if (ql4_sum != nullptr) inner.ApplyTo(ql4_sum);
  if (p.is_v4) {
    Store16(q + 10, 0);
    StoreChecksum(q + 10, rte_raw_cksum(q, q_ihl));
  }
  DecrementTtl(ip, p.is_v4);
  const uint16_t icmp_len = uint16_t(p.ip_len - icmp_off);
  Store16(icmp + 2, 0);
  if (p.is_v4) {
    StoreChecksum(icmp + 2, rte_raw_cksum(icmp, icmp_len));
  } else {
    const uint16_t c = rte_ipv6_udptcp_cksum(reinterpret_cast<const rte_ipv6_hdr*>(ip), icmp);
    std::memcpy(icmp + 2, &c, 2);
  }
  return true;
}

}  // namespace lb::dataplane::rewrite
