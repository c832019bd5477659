// dsr_decap: the backend half of DSR, in the kernel. A tc program (clsact ingress,
// direct action) on a pod's interface that strips the outer headers lbd puts on a DSR
// packet, so that the pod's own stack receives the client's datagram as if it had been
// routed to the VIP directly:
//
//   Ethernet | IPv4 (proto 4)  | IPv4 ...                    IPIP
//   Ethernet | IPv6 (next 41)  | IPv6 ...                    IP6IP6
//   Ethernet | IPv4 or IPv6 | UDP (dport gue_port) | GUE 0 | inner IP of the same family
//
// It decapsulates only what it fully understood, whose inner destination is one of the
// VIPs in `vips`, and whose inner IP version matches the outer one (Kubernetes endpoints
// are always of their Service's family; a family change would need skb->protocol changed,
// which bpf_skb_adjust_room cannot do before Linux 6.3). Everything else passes untouched,
// as if the program were not there, and is counted by why: the kernel then does what it
// always does with it (a tunnel packet for an address that is not a VIP is dropped by the
// pod's stack, which has no tunnel). Only a failed decapsulation is dropped here.
//
// The outer IPv4 header may carry options (its IHL is honoured); outer fragments and
// IPv6 extension headers pass untouched (lbd sets DF and sends neither). GUE: version 0,
// a data message (C = 0), optional extension words skipped (Hlen), protocol 4 or 41.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>

#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "dataplane/bpf/dsr_decap.h"

// The GUE destination port (lbd's --gue_port), set before the program is loaded; 0: no GUE.
const volatile __u16 gue_port = 0;

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, DSR_DECAP_MAX_VIPS);
  __type(key, struct dsr_decap_vip);
  __type(value, __u8);
} vips SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, DSR_DECAP_COUNTERS);
  __type(key, __u32);
  __type(value, __u64);
} counters SEC(".maps");

static __always_inline int count(__u32 which, int verdict) {
  __u64* value = bpf_map_lookup_elem(&counters, &which);
  if (value) *value += 1;
  return verdict;
}

// Headers are copied out with bpf_skb_load_bytes, which reads the paged part of an skb
// too: packets written by AF_PACKET, and GRO'd ones, often hold little more than their L2
// header in the linear part, and pulling (bpf_skb_pull_data) would copy every packet the
// pod receives, tunnelled or not. Only a packet that is decapsulated is changed.

// What follows the outer IP header at `l4`: the inner protocol (4 or 41) and the bytes
// the tunnel adds after the outer IP header (0, or UDP + GUE). 0: a tunnel; -1: not ours
// to touch; -2: GUE on our port, but truncated or not a GUE data message.
static __always_inline int tunnel_after_ip(struct __sk_buff* skb, __u32 l4, __u8 ip_proto, __u8* inner_proto,
                                           __u32* extra) {
  if (ip_proto == IPPROTO_IPIP || ip_proto == IPPROTO_IPV6) {
    *inner_proto = ip_proto;
    *extra = 0;
    return 0;
  }
  if (ip_proto != IPPROTO_UDP || gue_port == 0) return -1;
  struct udphdr udp;
  if (bpf_skb_load_bytes(skb, l4, &udp, sizeof(udp)) != 0 || udp.dest != bpf_htons(gue_port)) return -1;
  __u8 gue[4];
  if (bpf_skb_load_bytes(skb, l4 + sizeof(udp), gue, sizeof(gue)) != 0) return -2;
  // First byte: version (2 bits) = 0, C (1 bit) = 0, Hlen (5 bits): extension words.
  if ((gue[0] & 0xE0) != 0) return -2;
  *inner_proto = gue[1];
  *extra = sizeof(udp) + sizeof(gue) + (gue[0] & 0x1F) * 4;
  return 0;
}

SEC("tc")
int dsr_decap(struct __sk_buff* skb) {
  struct ethhdr eth;
  if (bpf_skb_load_bytes(skb, 0, &eth, sizeof(eth)) != 0) return count(DSR_DECAP_NOT_TUNNEL, TC_ACT_OK);
  const __u32 l3 = sizeof(eth);

  struct dsr_decap_vip key = {};
  __u32 outer_len;
  __u8 inner_proto;
  __u32 extra;
  if (eth.h_proto == bpf_htons(ETH_P_IP)) {
    struct iphdr ip;
    if (bpf_skb_load_bytes(skb, l3, &ip, sizeof(ip)) != 0 || ip.version != 4 || ip.ihl < 5)
      return count(DSR_DECAP_NOT_TUNNEL, TC_ACT_OK);
    if (ip.frag_off & bpf_htons(0x3FFF)) return count(DSR_DECAP_NOT_TUNNEL, TC_ACT_OK);  // MF or an offset
    outer_len = ip.ihl * 4;
    const int tunnel = tunnel_after_ip(skb, l3 + outer_len, ip.protocol, &inner_proto, &extra);
    if (tunnel == -1) return count(DSR_DECAP_NOT_TUNNEL, TC_ACT_OK);
    if (tunnel < 0) return count(DSR_DECAP_MALFORMED, TC_ACT_OK);
    if (inner_proto != IPPROTO_IPIP) return count(DSR_DECAP_OTHER_FAMILY, TC_ACT_OK);
    outer_len += extra;
    struct iphdr in4;
    if (bpf_skb_load_bytes(skb, l3 + outer_len, &in4, sizeof(in4)) != 0 || in4.version != 4 || in4.ihl < 5)
      return count(DSR_DECAP_MALFORMED, TC_ACT_OK);
    key.family = DSR_DECAP_FAMILY_V4;
    __builtin_memcpy(key.address, &in4.daddr, 4);
  } else if (eth.h_proto == bpf_htons(ETH_P_IPV6)) {
    struct ipv6hdr ip6;
    if (bpf_skb_load_bytes(skb, l3, &ip6, sizeof(ip6)) != 0 || ip6.version != 6)
      return count(DSR_DECAP_NOT_TUNNEL, TC_ACT_OK);
    outer_len = sizeof(ip6);
    const int tunnel = tunnel_after_ip(skb, l3 + outer_len, ip6.nexthdr, &inner_proto, &extra);
    if (tunnel == -1) return count(DSR_DECAP_NOT_TUNNEL, TC_ACT_OK);
    if (tunnel < 0) return count(DSR_DECAP_MALFORMED, TC_ACT_OK);
    if (inner_proto != IPPROTO_IPV6) return count(DSR_DECAP_OTHER_FAMILY, TC_ACT_OK);
    outer_len += extra;
    struct ipv6hdr in6;
    if (bpf_skb_load_bytes(skb, l3 + outer_len, &in6, sizeof(in6)) != 0 || in6.version != 6)
      return count(DSR_DECAP_MALFORMED, TC_ACT_OK);
    key.family = DSR_DECAP_FAMILY_V6;
    __builtin_memcpy(key.address, &in6.daddr, 16);
  } else {
    return count(DSR_DECAP_NOT_TUNNEL, TC_ACT_OK);
  }

  if (!bpf_map_lookup_elem(&vips, &key)) return count(DSR_DECAP_NOT_A_VIP, TC_ACT_OK);
  // Removes the outer IP header (and UDP + GUE) between the Ethernet header and the inner
  // packet. FIXED_GSO: a GRO'd packet keeps its segment size, which is the inner payload's.
  if (bpf_skb_adjust_room(skb, -(__s32)outer_len, BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_FIXED_GSO) != 0)
    return count(DSR_DECAP_FAILED, TC_ACT_SHOT);
  return count(DSR_DECAP_DECAPSULATED, TC_ACT_OK);
}

// The project's licence; the program calls no GPL-only helper.
char LICENSE[] SEC("license") = "Apache-2.0";
