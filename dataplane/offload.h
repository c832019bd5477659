// Undoing the kernel's offloads on a frame received from an AF_PACKET socket.
//
// A Linux sender with offloads on (veth, virtio, any local socket) hands frames on with
// the TCP/UDP checksum left partial and, for TCP, as GSO "super-frames" of up to 64 kB
// that the NIC was to cut into segments; a receiving NIC's GRO (or a VM's LRO) merges
// segments into such frames too. With PACKET_VNET_HDR the kernel tells a packet socket
// what is left to do, in a struct virtio_net_hdr before each frame. ReceivedFrame does it:
// it copies a frame into packet buffers as it would have been on the wire, one buffer, or
// one per segment for a GSO frame (TCP over IPv4 and IPv6, and UDP segmentation), each
// with complete checksums and the sender's VLAN tag restored.
//
// Segments follow what Linux's own software GSO makes (net/ipv4/tcp_offload.c): every
// segment carries gso_size bytes of payload but the last; TCP sequence numbers advance by
// the payload; FIN and PSH stay on the last segment, CWR on the first; IPv4
// identifications count up from the frame's.
//
// Worker lcore; no allocation but the mbufs given; the frame is only read.
#pragma once

#include <rte_mbuf.h>

#include <cstdint>
#include <optional>

#include "dataplane/counters.h"

namespace lb::dataplane {

// struct virtio_net_hdr (include/uapi/linux/virtio_net.h) as an AF_PACKET socket writes
// it: little-endian fields (virtio 1.0), the host's order on every host DPDK runs on here.
struct VnetHeader {
  static constexpr uint8_t kNeedsChecksum = 1;  // VIRTIO_NET_HDR_F_NEEDS_CSUM
  static constexpr uint8_t kGsoNone = 0, kGsoTcpV4 = 1, kGsoUdp = 3, kGsoTcpV6 = 4, kGsoUdpL4 = 5;
  static constexpr uint8_t kGsoEcn = 0x80;

  uint8_t flags = 0;
  uint8_t gso_type = kGsoNone;
  uint16_t hdr_len = 0;
  uint16_t gso_size = 0;
  uint16_t csum_start = 0;   // from the start of the frame (its MAC header)
  uint16_t csum_offset = 0;  // of the checksum field, from csum_start
};
static_assert(sizeof(VnetHeader) == 10);

// A VLAN tag the kernel took off the frame (TP_STATUS_VLAN_VALID), to put back.
struct VlanTag {
  uint16_t tpid = 0x8100;
  uint16_t tci = 0;
};

class ReceivedFrame {
 public:
  // Checks `len` bytes at `data` against what `vnet` says. On failure, the drop reason:
  // kGsoUnsupported (a GSO type or header layout lbd does not segment), kTruncated or
  // kMalformed (headers that disagree with the frame or with `vnet`).
  static ReceivedFrame Make(const uint8_t* data, uint32_t len, const VnetHeader& vnet, std::optional<VlanTag> vlan);

  std::optional<DropReason> error() const { return error_; }
  // Packets the frame makes: 1, or the number of GSO segments.
  uint32_t segments() const { return segments_; }
  // Whether the frame is a GSO frame (segments() packets, maybe only one).
  bool gso() const { return gso_; }
  // Bytes of packet `i` (< segments()).
  uint32_t SegmentLength(uint32_t i) const;
  // Writes packet `i` into the empty mbuf `m`, which must have SegmentLength(i) bytes of
  // tailroom. Returns whether it completed a partial checksum.
  bool WriteSegment(uint32_t i, rte_mbuf* m) const;

 private:
  ReceivedFrame() = default;
  static ReceivedFrame Error(DropReason r) {
    ReceivedFrame f;
    f.error_ = r;
    return f;
  }
  // Copies the frame's headers (a GSO frame's) or all of it (any other) to `to`, the VLAN
  // tag put back; returns the end of the copy.
  uint8_t* CopyHeaders(uint8_t* to) const;
  // Sets the lengths, IPv4 ID, TCP sequence and flags, and checksums of segment `i`
  // (`payload` bytes) written at `frame`.
  void FixSegmentHeaders(uint8_t* frame, uint32_t i, uint32_t payload) const;

  const uint8_t* data_ = nullptr;
  uint32_t len_ = 0;
  VnetHeader vnet_;
  std::optional<VlanTag> vlan_;
  std::optional<DropReason> error_;
  bool gso_ = false;
  bool v4_ = false;
  bool tcp_ = false;
  uint16_t l3_ = 0;       // offset of the IP header in the frame
  uint16_t l4_ = 0;       // offset of the TCP/UDP header
  uint16_t headers_ = 0;  // offset of the payload (GSO frames)
  uint32_t end_ = 0;      // end of the IP datagram (padding excluded)
  uint32_t segments_ = 1;
};

}  // namespace lb::dataplane
