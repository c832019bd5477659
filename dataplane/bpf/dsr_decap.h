// What the dsr_decap BPF program (dsr_decap.bpf.c) and its loader (control/dsr_node)
// share: the VIP map's key and the counters' indices. C, for both compilers.
#pragma once

#include <linux/types.h>

#define DSR_DECAP_MAX_VIPS 4096

#define DSR_DECAP_FAMILY_V4 4
#define DSR_DECAP_FAMILY_V6 6

// A VIP: IPv4 in the first 4 bytes of `address` (network order), the rest zero.
struct dsr_decap_vip {
  __u8 family;
  __u8 pad[3];
  __u8 address[16];
};

// Per-CPU counters, by index: what the program did with each packet.
enum dsr_decap_counter {
  DSR_DECAP_DECAPSULATED = 0,  // outer headers removed, passed on
  DSR_DECAP_NOT_TUNNEL,        // not IPIP, IP6IP6 or GUE on our port: passed untouched
  DSR_DECAP_NOT_A_VIP,         // a tunnel packet whose inner destination is no VIP here: passed untouched
  DSR_DECAP_OTHER_FAMILY,      // inner IP version differs from the outer: passed untouched
  DSR_DECAP_MALFORMED,         // GUE or inner header truncated or of a wrong version: passed untouched
  DSR_DECAP_FAILED,            // bpf_skb_adjust_room failed: dropped
  DSR_DECAP_COUNTERS,
};
