// Test packet construction, independent of the dataplane's own code: headers are
// written field by field and checksums computed here (RFC 1071), so a dataplane test
// compares the code under test against a second implementation.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace lb::testing {

using Bytes = std::vector<uint8_t>;
using Mac = std::array<uint8_t, 6>;

// Internet checksum (RFC 1071) of `data`, starting from `sum` (a partial sum).
uint16_t InternetChecksum(const uint8_t* data, size_t len, uint32_t sum = 0);

Bytes ParseAddress(std::string_view text);  // 4 bytes for IPv4, 16 for IPv6; aborts if bad

Bytes Tcp(uint16_t sport, uint16_t dport, uint8_t flags, const Bytes& payload = {});
Bytes Udp(uint16_t sport, uint16_t dport, const Bytes& payload = {});
// ICMP or ICMPv6 (the IP layer fills the checksum): type, code, 4 bytes, then `body`.
Bytes Icmp(uint8_t type, uint8_t code, uint32_t rest, const Bytes& body = {});
// A GUE version 0 header (draft-ietf-intarea-gue §3.1) carrying `proto`.
Bytes Gue(uint8_t proto);

struct Ipv4Options {
  uint8_t ttl = 64;
  uint8_t tos = 0;
  bool df = false;
  bool mf = false;
  uint16_t id = 0;
  uint16_t frag_offset = 0;  // in 8-byte units
  Bytes ip_options;          // a multiple of 4 bytes
  bool l4_checksum = true;   // fill the TCP/UDP/ICMP checksum
};
// An IPv4 packet around `l4` (the L4 checksum is filled in for TCP, UDP and ICMP, over
// the pseudo-header where the protocol has one).
Bytes Ipv4(std::string_view src, std::string_view dst, uint8_t proto, const Bytes& l4, const Ipv4Options& options = {});

struct Ipv6Options {
  uint8_t hop_limit = 64;
  uint8_t traffic_class = 0;
  uint32_t flow_label = 0;
  // Extension headers, each as (type, body without its next-header byte); bodies are
  // padded to the header's unit. The fragment header (44) takes a 7-byte body.
  std::vector<std::pair<uint8_t, Bytes>> extensions;
  bool l4_checksum = true;
};
Bytes Ipv6(std::string_view src, std::string_view dst, uint8_t proto, const Bytes& l4, const Ipv6Options& options = {});
// An IPv6 fragment header body: offset in 8-byte units, M flag, identification.
Bytes Ipv6Fragment(uint16_t offset, bool more, uint32_t id);

// An Ethernet frame; `vlan` != 0 adds an 802.1Q tag. Frames are not padded unless
// `pad_to` asks for it.
Bytes Ether(const Mac& dst, const Mac& src, uint16_t ether_type, const Bytes& payload, uint16_t vlan = 0,
            size_t pad_to = 0);

Bytes Concat(const Bytes& a, const Bytes& b);
std::string Hex(const Bytes& b);  // for failure messages

}  // namespace lb::testing
