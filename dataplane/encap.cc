#include "dataplane/encap.h"

#include <netinet/in.h>
#include <rte_byteorder.h>
#include <rte_ip.h>

#include <algorithm>
#include <cstring>

#include "dataplane/parse.h"
#include "dataplane/checksum.h"
#include "dataplane/ethernet.h"

namespace lb::dataplane {

EncapHeader BuildEncapHeader(const EncapHeaderSpec& spec) {
  EncapHeader h;
  if (!spec.source.IsSet()) return h;
  const bool outer_v4 = spec.destination.IsV4();
  h.outer_v4 = outer_v4;
  h.gue = spec.gue;

  uint8_t* p = h.bytes.data();
  h.l2_len = uint8_t(WriteEthernet(p, spec.destination_mac, spec.next_hop.source_mac, spec.next_hop.vlan,
                                   outer_v4 ? kEtherTypeIpv4 : kEtherTypeIpv6));
  uint8_t* q = p + h.l2_len;

  const uint8_t inner_proto = spec.inner_v4 ? IPPROTO_IPIP : IPPROTO_IPV6;
  const uint8_t outer_proto = spec.gue ? uint8_t(IPPROTO_UDP) : inner_proto;
  uint8_t* ip = q;
  if (outer_v4) {
    ip[0] = 0x45;
    ip[8] = spec.ttl;
    ip[9] = outer_proto;
    std::memcpy(ip + 16, spec.destination.V4Bytes(), 4);
    q = ip + kIpv4HeaderLen;
  } else {
    ip[6] = outer_proto;
    ip[7] = spec.ttl;
    std::memcpy(ip + 8, spec.source.address.bytes.data(), 12);  // the fixed high 96 bits
    std::memcpy(ip + 24, spec.destination.bytes.data(), 16);
    q = ip + kIpv6HeaderLen;
  }
  if (spec.gue) {
    Store16(q + 2, spec.gue_port);
    uint8_t* gue = q + kUdpHeaderLen;
    gue[1] = inner_proto;  // version 0, C = 0 (data), Hlen = 0, no flags
    q = gue + 4;
  }
  h.len = uint8_t(q - p);

  const uint8_t* base = &spec.source.address.bytes[12];
  h.source_low = uint32_t(base[0]) << 24 | uint32_t(base[1]) << 16 | uint32_t(base[2]) << 8 | base[3];
  const int family_bits = outer_v4 ? 32 : 128;
  const int host_bits = std::min(32, family_bits - spec.source.length);
  h.source_mask = host_bits == 0 ? 0 : host_bits == 32 ? ~0u : (1u << host_bits) - 1;
  // rte_raw_cksum sums native-order words; the byte swap makes it the big-endian sum.
  if (outer_v4) h.ipv4_partial_sum = rte_be_to_cpu_16(rte_raw_cksum(ip, kIpv4HeaderLen));
  return h;
}

}  // namespace lb::dataplane
