#include "dataplane/dpdk/af_packet_port.h"

#include <rte_bus_vdev.h>
#include <rte_errno.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>

#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "dataplane/dpdk/resources.h"
#include "dataplane/offload.h"

namespace lb::dataplane::dpdk {
namespace {

constexpr uint32_t kTxFrameSize = 4096;
constexpr uint32_t kPageSize = 4096;
// Each rte_ring between a socket and the ethdev: a turn of the poll loop may send a burst
// of its own, one of NAT replies and one of the kernel's packets before Push.
constexpr uint32_t kRingSize = 1024;
// The kernel's drop count is read (and reset) every this many Pulls.
constexpr uint32_t kStatisticsEvery = 4096;

absl::Status Errno(const std::string& what) {
  const int err = errno;
  return absl::InternalError(absl::StrFormat("%s: %s (errno %d)", what, std::strerror(err), err));
}

template <typename T>
absl::Status SetOption(int fd, int option, const T& value, const char* name) {
  if (setsockopt(fd, SOL_PACKET, option, &value, sizeof(value)) != 0)
    return Errno(absl::StrCat("setsockopt(", name, ")"));
  return absl::OkStatus();
}

// ioctl on the interface named `iface` through `fd`.
bool InterfaceIoctl(int fd, const std::string& iface, unsigned long request, ifreq& req) {
  std::memset(&req, 0, sizeof(req));
  std::snprintf(req.ifr_name, sizeof(req.ifr_name), "%s", iface.c_str());
  return ioctl(fd, request, &req) == 0;
}

}  // namespace

// One socket with its RX and TX rings, and the rte_rings of its ethdev queue.
class AfPacketPort::Queue final : public QueuePump {
 public:
  // `fanout_group`: null for a single queue; else the group's ID, or -1 for the first
  // queue, which sets it.
  static absl::StatusOr<std::unique_ptr<Queue>> Open(uint32_t if_index, const Options& o, uint16_t id,
                                                     int* fanout_group);
  ~Queue() override;

  void Pull(WorkerCounters& counters) override;
  void Push(WorkerCounters& counters) override;

  rte_ring* rx_ring() const { return rx_ring_->get(); }
  rte_ring* tx_ring() const { return tx_ring_->get(); }
  int fd() const { return fd_; }

 private:
  Queue() = default;
  tpacket2_hdr* RxFrame(uint32_t i) const { return reinterpret_cast<tpacket2_hdr*>(map_ + size_t(i) * kFrameSize); }
  tpacket2_hdr* TxFrame(uint32_t i) const {
    return reinterpret_cast<tpacket2_hdr*>(map_ + size_t(rx_frames_) * kFrameSize + size_t(i) * kTxFrameSize);
  }
  static uint32_t Status(const tpacket2_hdr* h) { return __atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE); }
  static void SetStatus(tpacket2_hdr* h, uint32_t s) { __atomic_store_n(&h->tp_status, s, __ATOMIC_RELEASE); }
  // The frame at rx_next_ back to the kernel.
  void ReleaseRxFrame() {
    SetStatus(RxFrame(rx_next_), TP_STATUS_KERNEL);
    rx_next_ = rx_next_ + 1 == rx_frames_ ? 0 : rx_next_ + 1;
    next_segment_ = 0;
  }
  void ReadKernelDrops(WorkerCounters& counters);
  // Free TX frames in a row from tx_next_, up to a burst.
  uint32_t FreeTxFrames() const;
  // Copies `m` into the TX frame at tx_next_ and requests its sending.
  void WriteTxFrame(const rte_mbuf* m, WorkerCounters& counters);

  int fd_ = -1;
  uint8_t* map_ = nullptr;
  size_t map_size_ = 0;
  uint32_t rx_frames_ = 0;
  uint32_t tx_frames_ = 0;
  rte_mempool* pool_ = nullptr;
  uint32_t max_packet_ = 0;          // bytes a packet buffer of pool_ holds past its headroom
  std::optional<MbufRing> rx_ring_;  // socket -> ethdev RX queue
  std::optional<MbufRing> tx_ring_;  // ethdev TX queue -> socket
  // Worker lcore state: the next RX frame, and of a GSO frame not all put in the ring
  // yet, the next segment.
  uint32_t rx_next_ = 0;
  uint32_t next_segment_ = 0;
  uint32_t tx_next_ = 0;
  uint32_t pulls_ = 0;
  bool kick_ = false;  // TX frames are waiting for a send()
};

absl::StatusOr<std::unique_ptr<AfPacketPort::Queue>> AfPacketPort::Queue::Open(uint32_t if_index, const Options& o,
                                                                               uint16_t id, int* fanout_group) {
  std::unique_ptr<Queue> q(new Queue);
  q->pool_ = o.pool;
  q->max_packet_ = rte_pktmbuf_data_room_size(o.pool) - RTE_PKTMBUF_HEADROOM;
  // Protocol 0 until the rings are set up and the socket bound to the interface: until
  // then it receives nothing, from no interface.
  q->fd_ = socket(AF_PACKET, SOCK_RAW, 0);
  if (q->fd_ < 0) return Errno("socket(AF_PACKET)");
  if (auto s = SetOption(q->fd_, PACKET_VERSION, int(TPACKET_V2), "PACKET_VERSION"); !s.ok()) return s;
  if (auto s = SetOption(q->fd_, PACKET_VNET_HDR, 1, "PACKET_VNET_HDR"); !s.ok()) return s;
  if (auto s = SetOption(q->fd_, PACKET_QDISC_BYPASS, 1, "PACKET_QDISC_BYPASS"); !s.ok()) return s;
  if (auto s = SetOption(q->fd_, PACKET_IGNORE_OUTGOING, 1, "PACKET_IGNORE_OUTGOING"); !s.ok()) return s;
  // The kernel allocates blocks in powers of two pages: two frames a block waste none.
  constexpr uint32_t kRxBlock = 2 * kFrameSize;
  const uint32_t rx_blocks = (o.rx_frames + 1) / 2;
  q->rx_frames_ = 2 * rx_blocks;
  tpacket_req rx{
      .tp_block_size = kRxBlock, .tp_block_nr = rx_blocks, .tp_frame_size = kFrameSize, .tp_frame_nr = q->rx_frames_};
  constexpr uint32_t kTxBlock = 16 * kPageSize;
  const uint32_t tx_blocks = (o.tx_frames * kTxFrameSize + kTxBlock - 1) / kTxBlock;
  q->tx_frames_ = tx_blocks * (kTxBlock / kTxFrameSize);
  tpacket_req tx{
      .tp_block_size = kTxBlock, .tp_block_nr = tx_blocks, .tp_frame_size = kTxFrameSize, .tp_frame_nr = q->tx_frames_};
  if (auto s = SetOption(q->fd_, PACKET_RX_RING, rx, "PACKET_RX_RING"); !s.ok()) return s;
  if (auto s = SetOption(q->fd_, PACKET_TX_RING, tx, "PACKET_TX_RING"); !s.ok()) return s;
  q->map_size_ = size_t(q->rx_frames_) * kFrameSize + size_t(q->tx_frames_) * kTxFrameSize;
  void* map = mmap(nullptr, q->map_size_, PROT_READ | PROT_WRITE, MAP_SHARED, q->fd_, 0);
  if (map == MAP_FAILED) {
    const size_t size = std::exchange(q->map_size_, 0);
    return Errno(absl::StrFormat("mmap of the socket's rings (%d MB)", size >> 20));
  }
  q->map_ = static_cast<uint8_t*>(map);
  sockaddr_ll addr{};
  addr.sll_family = AF_PACKET;
  addr.sll_protocol = htons(ETH_P_ALL);
  addr.sll_ifindex = int(if_index);
  if (bind(q->fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return Errno("bind(AF_PACKET)");
  if (fanout_group) {
    // Hash only: rollover would move a flow to another worker whenever a ring fills. The
    // first socket has the kernel pick a group ID no one uses; the others join it.
    const bool first = *fanout_group < 0;
    const int mode = first ? PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_UNIQUEID : PACKET_FANOUT_HASH;
    if (auto s = SetOption(q->fd_, PACKET_FANOUT, int((first ? 0 : *fanout_group) | mode << 16), "PACKET_FANOUT");
        !s.ok()) {
      return s;
    }
    if (first) {
      int value = 0;
      socklen_t len = sizeof(value);
      if (getsockopt(q->fd_, SOL_PACKET, PACKET_FANOUT, &value, &len) != 0) return Errno("getsockopt(PACKET_FANOUT)");
      *fanout_group = value & 0xffff;
    }
  }
  const std::string name = absl::StrFormat("lbd_afp_%d_%d", if_index, id);
  for (auto [ring, suffix] : {std::pair(&q->rx_ring_, "r"), std::pair(&q->tx_ring_, "t")}) {
    auto r = MbufRing::Create(name + suffix, kRingSize, RING_F_SP_ENQ | RING_F_SC_DEQ);
    if (!r.ok()) return r.status();
    ring->emplace(*std::move(r));
  }
  return q;
}

AfPacketPort::Queue::~Queue() {
  if (map_ != nullptr) munmap(map_, map_size_);
  if (fd_ >= 0) close(fd_);
}

void AfPacketPort::Queue::Pull(WorkerCounters& counters) {
  if (++pulls_ % kStatisticsEvery == 0) ReadKernelDrops(counters);
  std::array<rte_mbuf*, kMaxBurst> out;
  uint32_t n = 0;
  const uint32_t room = std::min<uint32_t>(kMaxBurst, rte_ring_free_count(rx_ring()));
  while (n < room) {
    tpacket2_hdr* h = RxFrame(rx_next_);
    if (!(Status(h) & TP_STATUS_USER)) break;
    const uint8_t* data = reinterpret_cast<const uint8_t*>(h) + h->tp_mac;
    if (h->tp_snaplen < h->tp_len) {
      counters.Add(DropReason::kFrameCut);
      ReleaseRxFrame();
      continue;
    }
    VnetHeader vnet;
    std::memcpy(&vnet, data - sizeof(vnet), sizeof(vnet));
    std::optional<VlanTag> vlan;
    if (h->tp_status & TP_STATUS_VLAN_VALID) {
      vlan = VlanTag{uint16_t(h->tp_status & TP_STATUS_VLAN_TPID_VALID ? h->tp_vlan_tpid : 0x8100), h->tp_vlan_tci};
    }
    const ReceivedFrame frame = ReceivedFrame::Make(data, h->tp_snaplen, vnet, vlan);
    if (frame.error()) {
      counters.Add(*frame.error());
      ReleaseRxFrame();
      continue;
    }
    if (next_segment_ == 0 && frame.gso()) {
      counters.Add(Event::kGsoFrames);
      counters.Add(Event::kGsoSegments, frame.segments());
    }
    // Each packet of the frame into its own mbuf, as many as there is room for; the
    // rest of a GSO frame on the next Pull.
    while (next_segment_ < frame.segments() && n < room) {
      rte_mbuf* m = frame.SegmentLength(next_segment_) <= max_packet_ ? rte_pktmbuf_alloc(pool_) : nullptr;
      if (m == nullptr) {
        counters.Add(frame.SegmentLength(next_segment_) > max_packet_ ? DropReason::kOversize : DropReason::kNoMbuf);
        ++next_segment_;
        continue;
      }
      if (frame.WriteSegment(next_segment_, m) && !frame.gso()) counters.Add(Event::kChecksumsCompleted);
      out[n++] = m;
      ++next_segment_;
    }
    if (next_segment_ < frame.segments()) break;  // the ring is full: resume there
    ReleaseRxFrame();
  }
  if (n == 0) return;
  const unsigned queued = rte_ring_sp_enqueue_burst(rx_ring(), reinterpret_cast<void**>(out.data()), n, nullptr);
  if (queued < n) {  // not while the worker is the ring's only user
    counters.Add(DropReason::kTxFull, n - queued);
    rte_pktmbuf_free_bulk(out.data() + queued, n - queued);
  }
}

void AfPacketPort::Queue::ReadKernelDrops(WorkerCounters& counters) {
  tpacket_stats stats{};
  socklen_t len = sizeof(stats);
  if (getsockopt(fd_, SOL_PACKET, PACKET_STATISTICS, &stats, &len) == 0 && stats.tp_drops != 0) {
    counters.Add(DropReason::kRxRingFull, stats.tp_drops);
  }
}

uint32_t AfPacketPort::Queue::FreeTxFrames() const {
  uint32_t free = 0;
  // A frame the kernel refused (TP_STATUS_WRONG_FORMAT: never one lbd wrote) is free too.
  while (free < kMaxBurst &&
         (Status(TxFrame((tx_next_ + free) % tx_frames_)) & ~TP_STATUS_WRONG_FORMAT) == TP_STATUS_AVAILABLE) {
    ++free;
  }
  return free;
}

void AfPacketPort::Queue::WriteTxFrame(const rte_mbuf* m, WorkerCounters& counters) {
  constexpr uint32_t kDataOffset = TPACKET2_HDRLEN - sizeof(sockaddr_ll);
  constexpr uint32_t kRoom = kTxFrameSize - kDataOffset - sizeof(VnetHeader);
  if (m->pkt_len > kRoom) {
    counters.Add(DropReason::kOversize);
    return;
  }
  tpacket2_hdr* h = TxFrame(tx_next_);
  uint8_t* data = reinterpret_cast<uint8_t*>(h) + kDataOffset;
  std::memset(data, 0, sizeof(VnetHeader));  // no offload asked of the kernel
  uint8_t* to = data + sizeof(VnetHeader);
  for (const rte_mbuf* s = m; s != nullptr; s = s->next) {
    std::memcpy(to, rte_pktmbuf_mtod(s, const uint8_t*), s->data_len);
    to += s->data_len;
  }
  h->tp_len = uint32_t(sizeof(VnetHeader) + m->pkt_len);
  SetStatus(h, TP_STATUS_SEND_REQUEST);
  tx_next_ = tx_next_ + 1 == tx_frames_ ? 0 : tx_next_ + 1;
  kick_ = true;
}

void AfPacketPort::Queue::Push(WorkerCounters& counters) {
  // Everything the worker sent this turn (a burst of its own, NAT replies handed over,
  // the kernel's packets), a burst at a time while TX frames are free; what finds the
  // socket's ring full waits in the ethdev's ring for the next turn.
  for (uint32_t free = FreeTxFrames(); free != 0; free = FreeTxFrames()) {
    std::array<rte_mbuf*, kMaxBurst> pkts;
    const unsigned n = rte_ring_sc_dequeue_burst(tx_ring(), reinterpret_cast<void**>(pkts.data()), free, nullptr);
    if (n == 0) break;
    for (unsigned i = 0; i < n; ++i) WriteTxFrame(pkts[i], counters);
    rte_pktmbuf_free_bulk(pkts.data(), n);
  }
  // With the qdisc bypassed, send() hands every requested frame to the driver at once.
  // EAGAIN / ENOBUFS: the driver is busy; the frames stay requested for the next turn.
  if (kick_ && (send(fd_, nullptr, 0, MSG_DONTWAIT) >= 0 || (errno != EAGAIN && errno != ENOBUFS))) kick_ = false;
}

absl::StatusOr<std::unique_ptr<AfPacketPort>> AfPacketPort::Open(const std::string& iface, const Options& options) {
  std::unique_ptr<AfPacketPort> port(new AfPacketPort);
  port->iface_ = iface;
  port->if_index_ = if_nametoindex(iface.c_str());
  if (port->if_index_ == 0) {
    return absl::NotFoundError(
        absl::StrFormat("af_packet port: no kernel interface %s in this network namespace", iface));
  }
  if (options.queues == 0 || options.pool == nullptr || options.rx_frames == 0 || options.tx_frames == 0) {
    return absl::InvalidArgumentError("af_packet port: queues, frames and a pool are needed");
  }
  int fanout_group = -1;
  std::vector<rte_ring*> rx, tx;
  for (uint16_t i = 0; i < options.queues; ++i) {
    auto q = Queue::Open(port->if_index_, options, i, options.queues > 1 ? &fanout_group : nullptr);
    if (!q.ok())
      return absl::Status(q.status().code(),
                          absl::StrFormat("af_packet port on %s, queue %d: %s", iface, i, q.status().message()));
    rx.push_back((*q)->rx_ring());
    tx.push_back((*q)->tx_ring());
    port->queues_.push_back(*std::move(q));
  }
  ifreq req;
  if (!InterfaceIoctl(port->queues_[0]->fd(), iface, SIOCGIFHWADDR, req))
    return Errno(absl::StrCat("SIOCGIFHWADDR ", iface));
  std::memcpy(port->mac_.addr_bytes, req.ifr_hwaddr.sa_data, RTE_ETHER_ADDR_LEN);
  // rte_eth_from_rings names the ethdev net_ring_<name>.
  const int id = rte_eth_from_rings(iface.c_str(), rx.data(), options.queues, tx.data(), options.queues, SOCKET_ID_ANY);
  if (id < 0) {
    return absl::InternalError(absl::StrFormat("rte_eth_from_rings(%s): %s", iface, rte_strerror(rte_errno)));
  }
  port->ethdev_created_ = true;
  port->ethdev_name_ = "net_ring_" + iface;
  return port;
}

AfPacketPort::~AfPacketPort() {
  // The ethdev (closed by its Port before) goes first: it polls the rings the queues own.
  if (ethdev_created_) rte_vdev_uninit(ethdev_name_.c_str());
  queues_.clear();
}

QueuePump* AfPacketPort::pump(uint16_t queue) { return queues_[queue].get(); }

bool AfPacketPort::LinkUp() const {
  ifreq req;
  return InterfaceIoctl(queues_[0]->fd(), iface_, SIOCGIFFLAGS, req) &&
         (req.ifr_flags & (IFF_UP | IFF_RUNNING)) == (IFF_UP | IFF_RUNNING);
}

}  // namespace lb::dataplane::dpdk
