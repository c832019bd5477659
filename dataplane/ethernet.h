// Ethernet headers as the dataplane writes them (the encapsulation it prepares, the
// frames it rewrites). Pure bytes: any thread, no DPDK.
#pragma once

#include <cstdint>
#include <cstring>

#include "common/bytes.h"
#include "common/config.h"
#include "dataplane/parse.h"

namespace lb::dataplane {

// Writes an Ethernet header (with an 802.1Q tag when `vlan` != 0) at `p`; returns its
// length.
inline uint16_t WriteEthernet(uint8_t* p, const MacAddress& dst, const MacAddress& src, uint16_t vlan,
                              uint16_t ether_type) {
  std::memcpy(p, dst.data(), 6);
  std::memcpy(p + 6, src.data(), 6);
  if (vlan == 0) {
    Store16(p + 12, ether_type);
    return kEthernetHeaderLen;
  }
  Store16(p + 12, kEtherTypeVlan);
  Store16(p + 14, vlan & 0x0fff);
  Store16(p + 16, ether_type);
  return kEthernetHeaderLen + kVlanTagLen;
}

inline uint16_t EthernetLen(uint16_t vlan) { return kEthernetHeaderLen + (vlan != 0 ? kVlanTagLen : 0); }

}  // namespace lb::dataplane
