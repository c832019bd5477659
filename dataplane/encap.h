// EncapHeader: the headers a DSR packet to one backend gets in front of its IP datagram
// (Ethernet with the VLAN tag, the outer IPv4 or IPv6 header, and for GUE the UDP and GUE
// headers), with every field that does not depend on the packet already in place.
//
// The snapshot builds one per backend; rewrite::Encapsulate() copies it in front of a
// packet and fills in what does: the DSCP/ECN, lengths, IPv4 ID and DF, the source
// address bits taken from the flow hash, the IPv6 flow label, the GUE source port and the
// checksums. So the per-packet work is a copy and a few stores, and the IPv4 header
// checksum starts from the sum of the constant words. Plain data: any thread.
#pragma once

#include <array>
#include <cstdint>

#include "common/config.h"
#include "common/ip_address.h"

namespace lb::dataplane {

struct EncapHeader {
  static constexpr uint32_t kMaxLen = 18 + 40 + 8 + 4;  // VLAN-tagged L2, IPv6, UDP, GUE

  std::array<uint8_t, kMaxLen> bytes{};
  uint8_t len = 0;        // all of it; 0: no header (no outer source for the backend's family)
  uint8_t l2_len = 0;     // 14, or 18 with a VLAN tag
  bool outer_v4 = false;  // which Encapsulate<> variant the header is for
  bool gue = false;
  // The low 32 bits of the outer source (host order), of which the `source_mask` bits are
  // taken from the flow hash (EncapConfig).
  uint32_t source_low = 0;
  uint32_t source_mask = 0;
  // Outer IPv4: the ones'-complement sum (of 16-bit big-endian words, folded) of the
  // header as built, in which TOS, total length, ID, flags, checksum and source are 0.
  uint32_t ipv4_partial_sum = 0;

  uint32_t SourceLow(uint32_t flow_hash) const { return source_low | (flow_hash & source_mask); }
};

struct EncapHeaderSpec {
  IpAddress destination;  // the backend
  IpPrefix source;        // encap.source_v4 or source_v6, of the backend's family
  bool gue = false;       // GUE over UDP, else IP in IP
  bool inner_v4 = true;   // the VIP's family: IPIP (4) or IPv6 (41) inside
  uint16_t gue_port = 0;  // host order
  uint8_t ttl = 64;
  MacAddress destination_mac{};  // the gateway's, or an on-link backend's
  NextHop next_hop;              // source MAC and VLAN
};

// The header for `spec`; len 0 when `spec.source` is unset (no outer source address).
EncapHeader BuildEncapHeader(const EncapHeaderSpec& spec);

}  // namespace lb::dataplane
