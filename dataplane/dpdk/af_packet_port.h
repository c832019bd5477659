// AfPacketPort: lbd's port on a kernel interface through AF_PACKET sockets, for nodes
// whose uplink is not a DPDK NIC (a VM's virtio, veth). It replaces DPDK's net_af_packet
// there, which copies each frame into one packet buffer as it comes: the kernel's GSO
// frames (up to 64 kB, from any sender with offloads on, or merged by GRO) are cut at
// its frame size, and whether a checksum is still partial is lost.
//
// One socket per queue, all in one fanout group (PACKET_FANOUT_HASH: the kernel's flow
// hash keeps each flow on one queue, and without rollover a flow never moves to another
// worker's table). Each socket has an mmap'ed TPACKET_V2 RX ring of 64 kB frames and a TX
// ring, and PACKET_VNET_HDR: the kernel says for every frame what its offloads left
// undone, and ReceivedFrame (dataplane/offload.h) does it, so the workers see frames as
// they were on the wire. Frames lbd sends bypass the qdisc (PACKET_QDISC_BYPASS), and
// the sockets ignore what the host itself sends out of the interface.
//
// The workers see an ethdev: a net_ring port whose rings each queue's QueuePump fills
// from its socket (Pull) and empties into it (Push), on the worker lcore that polls the
// queue. So everything that works on an ethdev works here too: the worker's burst calls,
// dpdk-dumpcap, the port's statistics.
//
// Thread model: Open and the destructor on the control thread; pump(q) on the worker
// lcore that polls queue q; the other accessors from any thread.
#pragma once

#include <rte_ether.h>
#include <rte_mempool.h>
#include <rte_ring.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "dataplane/dpdk/queue_pump.h"

namespace lb::dataplane::dpdk {

class AfPacketPort {
 public:
  // The prefix of a port name (lbd --port=af_packet:IFACE) that asks for this port.
  static constexpr std::string_view kScheme = "af_packet:";

  struct Options {
    uint16_t queues = 1;
    // RX ring frames per queue, kFrameSize bytes each (512: 32 MB a queue); rounded up
    // to a whole number of kernel blocks (two frames each).
    uint32_t rx_frames = 512;
    uint32_t tx_frames = 1024;    // TX ring frames per queue, 4 kB each
    rte_mempool* pool = nullptr;  // for received frames
  };
  // The RX frame size. The kernel's GSO and GRO frames stay below 64 kB (gso_max_size
  // and gro_max_size 65536, less the TCP header reserve), so one fits with the ring's
  // headers; larger ones (BIG TCP) are cut and counted (frame_cut).
  static constexpr uint32_t kFrameSize = 64 * 1024;

  // Opens the sockets on interface `iface` and the ethdev that carries them, named
  // ethdev_name(); open that with Port::Open (configured with `queues` queue pairs).
  static absl::StatusOr<std::unique_ptr<AfPacketPort>> Open(const std::string& iface, const Options& options);
  ~AfPacketPort();
  AfPacketPort(const AfPacketPort&) = delete;
  AfPacketPort& operator=(const AfPacketPort&) = delete;

  const std::string& iface() const { return iface_; }
  const std::string& ethdev_name() const { return ethdev_name_; }
  uint32_t if_index() const { return if_index_; }
  rte_ether_addr mac() const { return mac_; }  // the interface's (the ethdev's is made up)
  // Whether the interface is up and has carrier (IFF_UP and IFF_RUNNING).
  bool LinkUp() const;
  QueuePump* pump(uint16_t queue);

 private:
  class Queue;
  AfPacketPort() = default;

  std::string iface_;
  std::string ethdev_name_;
  uint32_t if_index_ = 0;
  rte_ether_addr mac_{};
  std::vector<std::unique_ptr<Queue>> queues_;
  bool ethdev_created_ = false;
};

}  // namespace lb::dataplane::dpdk
