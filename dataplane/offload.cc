#include "dataplane/offload.h"

#include <rte_ether.h>
#include <rte_ip.h>

#include <algorithm>
#include <cstring>

#include "dataplane/parse.h"
#include "dataplane/rewrite.h"

namespace lb::dataplane {
namespace {

constexpr uint16_t kEthernetLen = 14;
constexpr uint16_t kVlanLen = 4;
constexpr uint8_t kTcpPsh = 0x08, kTcpCwr = 0x80;

bool IsVlanType(uint16_t type) { return type == 0x8100 || type == 0x88a8; }

// The offset of the IP header after the Ethernet header and up to two VLAN tags, and the
// EtherType there; nullopt when the frame ends first.
std::optional<std::pair<uint16_t, uint16_t>> FindL3(const uint8_t* data, uint32_t len) {
  uint16_t off = kEthernetLen;
  if (len < off) return std::nullopt;
  uint16_t type = Load16(data + 12);
  for (int tags = 0; tags < 2 && IsVlanType(type); ++tags) {
    if (len < uint32_t(off) + kVlanLen) return std::nullopt;
    type = Load16(data + off + 2);
    off += kVlanLen;
  }
  return std::make_pair(off, type);
}

}  // namespace

ReceivedFrame ReceivedFrame::Make(const uint8_t* data, uint32_t len, const VnetHeader& vnet,
                                  std::optional<VlanTag> vlan) {
  ReceivedFrame f;
  f.data_ = data;
  f.len_ = len;
  f.vnet_ = vnet;
  f.vlan_ = vlan;
  f.end_ = len;
  if (len < kEthernetLen) return Error(DropReason::kTruncated);  // not even a MAC header
  const uint8_t gso_type = vnet.gso_type & ~VnetHeader::kGsoEcn;
  const bool needs_checksum = vnet.flags & VnetHeader::kNeedsChecksum;
  if (gso_type == VnetHeader::kGsoNone && !needs_checksum) return f;  // as it was on the wire

  const auto l3 = FindL3(data, len);
  if (!l3) return Error(DropReason::kTruncated);
  f.l3_ = l3->first;
  // The IP datagram's end and transport protocol (IPv6: only without extension headers).
  uint8_t protocol = 0;
  const uint8_t* ip = data + f.l3_;
  if (l3->second == RTE_ETHER_TYPE_IPV4) {
    if (len < f.l3_ + 20u) return Error(DropReason::kTruncated);
    const uint16_t ihl = uint16_t((ip[0] & 0x0f) * 4), total = Load16(ip + 2);
    if ((ip[0] >> 4) != 4 || ihl < 20 || total < ihl) return Error(DropReason::kMalformed);
    if (uint32_t(f.l3_) + total > len) return Error(DropReason::kTruncated);
    f.v4_ = true;
    f.l4_ = uint16_t(f.l3_ + ihl);
    f.end_ = f.l3_ + total;
    protocol = ip[9];
    if (gso_type != VnetHeader::kGsoNone && (Load16(ip + 6) & 0x3fff) != 0) return Error(DropReason::kMalformed);
  } else if (l3->second == RTE_ETHER_TYPE_IPV6) {
    if (len < f.l3_ + 40u) return Error(DropReason::kTruncated);
    if ((ip[0] >> 4) != 6) return Error(DropReason::kMalformed);
    if (uint32_t(f.l3_) + 40 + Load16(ip + 4) > len) return Error(DropReason::kTruncated);
    f.l4_ = uint16_t(f.l3_ + 40);
    f.end_ = f.l4_ + Load16(ip + 4);
    protocol = ip[6];
  } else if (gso_type != VnetHeader::kGsoNone) {
    return Error(DropReason::kGsoUnsupported);
  }

  if (gso_type == VnetHeader::kGsoNone) {
    // A partial checksum only: the field at csum_start + csum_offset holds the
    // pseudo-header sum, and the checksum covers csum_start to the datagram's end.
    if (vnet.csum_start < kEthernetLen || uint32_t(vnet.csum_start) + vnet.csum_offset + 2 > f.end_) {
      return Error(DropReason::kMalformed);
    }
    return f;
  }
  // The segments must be what a worker parses: at most one tag in all, 802.1Q (the
  // kernel's, put back, or one in the frame). A QinQ GSO frame would become segments that
  // no worker takes as TCP or UDP (the fuzzer found one: an 802.1Q tag in the frame under
  // the kernel's).
  const uint32_t tags = (f.l3_ - kEthernetLen) / kVlanLen + (vlan ? 1 : 0);
  const uint16_t tpid = vlan ? vlan->tpid : Load16(data + 12);
  if (tags > 1 || (tags == 1 && tpid != 0x8100)) return Error(DropReason::kGsoUnsupported);
  f.gso_ = true;
  f.tcp_ = gso_type == VnetHeader::kGsoTcpV4 || gso_type == VnetHeader::kGsoTcpV6;
  const bool type_fits = gso_type == VnetHeader::kGsoTcpV4   ? f.v4_ && protocol == IPPROTO_TCP
                         : gso_type == VnetHeader::kGsoTcpV6 ? !f.v4_ && protocol == IPPROTO_TCP
                         : gso_type == VnetHeader::kGsoUdpL4 ? protocol == IPPROTO_UDP
                                                             : false;  // UFO (kGsoUdp) and the rest
  if (!type_fits) return Error(DropReason::kGsoUnsupported);
  if (vnet.gso_size == 0) return Error(DropReason::kMalformed);
  uint32_t l4_len = 8;
  if (f.tcp_) {
    if (f.end_ < f.l4_ + 20u) return Error(DropReason::kTruncated);
    l4_len = (data[f.l4_ + 12] >> 4) * 4u;
    if (l4_len < 20) return Error(DropReason::kMalformed);
  }
  if (f.end_ < f.l4_ + l4_len) return Error(DropReason::kTruncated);
  f.headers_ = uint16_t(f.l4_ + l4_len);
  const uint32_t payload = f.end_ - f.headers_;
  f.segments_ = std::max<uint32_t>(1, (payload + vnet.gso_size - 1) / vnet.gso_size);
  return f;
}

uint32_t ReceivedFrame::SegmentLength(uint32_t i) const {
  const uint32_t tag = vlan_ ? kVlanLen : 0;
  if (!gso_) return tag + len_;
  const uint32_t payload = end_ - headers_;
  const uint32_t first = i * vnet_.gso_size;
  return tag + headers_ + std::min<uint32_t>(vnet_.gso_size, payload - std::min(payload, first));
}

uint8_t* ReceivedFrame::CopyHeaders(uint8_t* to) const {
  const uint32_t n = gso_ ? headers_ : len_;
  if (!vlan_) {
    std::memcpy(to, data_, n);
    return to + n;
  }
  std::memcpy(to, data_, 12);  // the MAC addresses, then the tag the kernel took off
  Store16(to + 12, vlan_->tpid);
  Store16(to + 14, vlan_->tci);
  std::memcpy(to + 16, data_ + 12, n - 12);
  return to + n + kVlanLen;
}

bool ReceivedFrame::WriteSegment(uint32_t i, rte_mbuf* m) const {
  uint8_t* out = reinterpret_cast<uint8_t*>(rte_pktmbuf_append(m, uint16_t(SegmentLength(i))));
  uint8_t* payload = CopyHeaders(out);
  uint8_t* frame = out + (vlan_ ? kVlanLen : 0);  // offsets below are the frame's
  if (!gso_) {
    if (!(vnet_.flags & VnetHeader::kNeedsChecksum)) return false;
    uint8_t* field = frame + vnet_.csum_start + vnet_.csum_offset;
    uint16_t checksum = FinishChecksum(rte_raw_cksum(frame + vnet_.csum_start, end_ - vnet_.csum_start));
    if (checksum == 0 && vnet_.csum_offset == 6) checksum = 0xffff;  // UDP sends zero as all ones
    std::memcpy(field, &checksum, sizeof(checksum));
    return true;
  }
  const uint32_t first = i * vnet_.gso_size;
  const uint32_t n = SegmentLength(i) - uint32_t(payload - out);
  std::memcpy(payload, data_ + headers_ + first, n);
  FixSegmentHeaders(frame, i, n);
  return true;
}

void ReceivedFrame::FixSegmentHeaders(uint8_t* frame, uint32_t i, uint32_t payload) const {
  uint8_t* ip = frame + l3_;
  uint8_t* l4 = frame + l4_;
  if (v4_) {
    auto* h = reinterpret_cast<rte_ipv4_hdr*>(ip);
    Store16(ip + 2, uint16_t(headers_ - l3_ + payload));
    Store16(ip + 4, uint16_t(Load16(ip + 4) + i));
    h->hdr_checksum = 0;
    h->hdr_checksum = rte_ipv4_cksum(h);
  } else {
    Store16(ip + 4, uint16_t(headers_ - l4_ + payload));
  }
  uint8_t* field;
  if (tcp_) {
    Store32(l4 + 4, Load32(l4 + 4) + i * vnet_.gso_size);
    if (i + 1 < segments_) l4[13] &= uint8_t(~(kTcpFin | kTcpPsh));
    if (i > 0) l4[13] &= uint8_t(~kTcpCwr);
    field = l4 + 16;
  } else {
    Store16(l4 + 4, uint16_t(8 + payload));
    field = l4 + 6;
  }
  std::memset(field, 0, 2);
  const uint16_t checksum = v4_ ? rte_ipv4_udptcp_cksum(reinterpret_cast<const rte_ipv4_hdr*>(ip), l4)
                                : rte_ipv6_udptcp_cksum(reinterpret_cast<const rte_ipv6_hdr*>(ip), l4);
  std::memcpy(field, &checksum, sizeof(checksum));
}

}  // namespace lb::dataplane
