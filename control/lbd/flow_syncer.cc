#include "control/lbd/flow_syncer.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include <glog/logging.h>

#include "absl/strings/str_format.h"

namespace lb::control {
namespace {

using dataplane::SyncedFlow;
namespace fs = dataplane::flow_sync;

// Most announcements taken from the workers' rings, and datagrams read, per wake.
constexpr size_t kMaxPending = 4096;
constexpr int kMaxReceive = 256;
// A dump goes out at most this many datagrams a wake (every flush_ms): 64 every 5 ms is
// about 730,000 IPv4 flows a second, within what a peer's workers take from their rings.
constexpr size_t kDumpDatagramsPerWake = 64;
// For this long after the start (or the first configuration), peers are asked for dumps.
constexpr int64_t kDumpRequestWindowMs = 10000;
// A peer's dump requests are answered at most this often (it asks once a second).
constexpr int64_t kDumpMinIntervalMs = 500;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// `a` as a socket address of the socket's family (IPv4-mapped on an IPv6 socket).
socklen_t ToSockaddr(const IpAddress& a, uint16_t port, bool v6, sockaddr_storage& out) {
  std::memset(&out, 0, sizeof(out));
  if (!v6) {
    auto* s = reinterpret_cast<sockaddr_in*>(&out);
    s->sin_family = AF_INET;
    s->sin_port = htons(port);
    std::memcpy(&s->sin_addr, a.bytes.data() + 12, 4);
    return sizeof(*s);
  }
  auto* s = reinterpret_cast<sockaddr_in6*>(&out);
  s->sin6_family = AF_INET6;
  s->sin6_port = htons(port);
  std::memcpy(&s->sin6_addr, a.bytes.data(), 16);  // v4-mapped for IPv4 peers
  return sizeof(*s);
}

// The stamps' clock: microseconds since the Unix epoch (the nodes keep it in step with NTP).
uint64_t WallMicros() {
  return uint64_t(
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
}

IpAddress FromSockaddr(const sockaddr_storage& s) {
  if (s.ss_family == AF_INET) return IpAddress::FromV4Bytes(&reinterpret_cast<const sockaddr_in*>(&s)->sin_addr);
  return IpAddress::FromV6Bytes(&reinterpret_cast<const sockaddr_in6*>(&s)->sin6_addr);
}

}  // namespace

FlowSyncer::FlowSyncer(const Options& options, std::vector<rte_ring*> announce, std::vector<rte_ring*> learn)
    : options_(options),
      announce_(std::move(announce)),
      learn_(std::move(learn)),
      peer_counters_(options.peers.size()),
      journal_(options.journal),
      v6_socket_(!options.self.IsV4()),
      key_(fs::SenderKey(options.key, options.self)) {
  for (const PeerOptions& p : options.peers) peers_.emplace_back(options, p);
}

absl::StatusOr<std::unique_ptr<FlowSyncer>> FlowSyncer::Start(const Options& options, std::vector<rte_ring*> announce,
                                                              std::vector<rte_ring*> learn) {
  if (options.peers.empty()) return absl::InvalidArgumentError("flow sync: no peers");
  for (const PeerOptions& p : options.peers) {
    // The datagrams' source must be the address the peers know this node by.
    if (p.address.IsV4() != options.self.IsV4()) {
      return absl::InvalidArgumentError(absl::StrFormat("flow sync: peer %s is not of this node's family (%s)",
                                                        p.address.ToString(), options.self.ToString()));
    }
  }
  std::unique_ptr<FlowSyncer> s(new FlowSyncer(options, std::move(announce), std::move(learn)));
  s->fd_ = socket(s->v6_socket_ ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s->fd_ < 0) return absl::InternalError(absl::StrFormat("flow sync: socket: %s", std::strerror(errno)));
  // Bound to the node's own address, which may come up after lbd starts (lb0's).
  const int on = 1;
  if (s->v6_socket_) {
    setsockopt(s->fd_, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on));
    setsockopt(s->fd_, IPPROTO_IPV6, IPV6_FREEBIND, &on, sizeof(on));
  } else {
    setsockopt(s->fd_, IPPROTO_IP, IP_FREEBIND, &on, sizeof(on));
  }
  sockaddr_storage self;
  const socklen_t len = ToSockaddr(options.self, options.port, s->v6_socket_, self);
  if (bind(s->fd_, reinterpret_cast<sockaddr*>(&self), len) != 0) {
    const int err = errno;
    close(s->fd_);
    s->fd_ = -1;
    return absl::FailedPreconditionError(absl::StrFormat("flow sync: cannot bind UDP %s port %d: %s",
                                                         options.self.ToString(), options.port, std::strerror(err)));
  }
  s->thread_ = std::thread([p = s.get()] { p->Run(); });
  return s;
}

FlowSyncer::~FlowSyncer() {
  stop_.store(true, std::memory_order_relaxed);
  if (thread_.joinable()) thread_.join();
  if (fd_ >= 0) close(fd_);
}

int FlowSyncer::PeerIndex(const IpAddress& a) const {
  const auto it = std::ranges::find(options_.peers, a, &PeerOptions::address);
  return it == options_.peers.end() ? -1 : int(it - options_.peers.begin());
}

size_t FlowSyncer::EncodeNext(fs::MessageType type, std::span<const SyncedFlow> flows) {
  return fs::Encode(key_, type, stamps_.Next(WallMicros()), flows, datagram_);
}

void FlowSyncer::Run() {
  int64_t next_second = NowMs();
  dump_requests_until_ms_ = next_second + kDumpRequestWindowMs;
  while (!stop_.load(std::memory_order_relaxed)) {
    pollfd pfd{fd_, POLLIN, 0};
    poll(&pfd, 1, int(options_.flush_ms));
    const int64_t now = NowMs();
    ReceiveAll(now);
    SendAnnounced(now);
    SendDumps();
    if (now >= next_second) {
      next_second = now + 1000;
      RequestDumps(now);
      journal_.Expire(now);
      journal_flows_.store(journal_.size(), std::memory_order_relaxed);
    }
  }
}

bool FlowSyncer::SendTo(size_t peer, const std::vector<uint8_t>& datagram) {
  sockaddr_storage to;
  const IpAddress& address = options_.peers[peer].address;
  const socklen_t len = ToSockaddr(address, options_.port, v6_socket_, to);
  if (sendto(fd_, datagram.data(), datagram.size(), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&to), len) < 0) {
    Add(send_errors_, 1);
    LOG_EVERY_T(WARNING, 10) << "flow sync: sending to " << address.ToString() << ": " << std::strerror(errno);
    return false;
  }
  Add(datagrams_sent_, 1);
  Add(bytes_sent_, datagram.size());
  return true;
}

void FlowSyncer::RequestDumps(int64_t now_ms) {
  const uint64_t generation = options_.config_generation ? options_.config_generation() : 0;
  if (requested_generation_ == 0 && generation != 0) dump_requests_until_ms_ = now_ms + kDumpRequestWindowMs;
  if (now_ms >= dump_requests_until_ms_) return;
  // Flows of services a worker does not have yet are not learned: a new configuration
  // may let it learn more of them.
  const bool reconfigured = generation != requested_generation_;
  requested_generation_ = generation;
  EncodeNext(fs::MessageType::kDumpRequest, {});
  for (size_t i = 0; i < peers_.size(); ++i) {
    if (!peers_[i].heard || reconfigured) SendTo(i, datagram_);
  }
}

void FlowSyncer::SendDumps() {
  for (size_t i = 0; i < peers_.size(); ++i) {
    Peer& peer = peers_[i];
    for (size_t d = 0; d < kDumpDatagramsPerWake && peer.dump_sent < peer.dump.size(); ++d) {
      const std::span<const SyncedFlow> rest = std::span<const SyncedFlow>(peer.dump).subspan(peer.dump_sent);
      const size_t n = EncodeNext(fs::MessageType::kFlows, rest);
      if (!SendTo(i, datagram_)) break;  // the socket's buffer is full: again next wake
      peer.dump_sent += n;
    }
    if (!peer.dump.empty() && peer.dump_sent == peer.dump.size()) {
      LOG(INFO) << "flow sync: sent " << peer.dump.size() << " flows to " << options_.peers[i].address.ToString()
                << ", which asked for them";
      peer.dump = {};
      peer.dump_sent = 0;
    }
  }
}

void FlowSyncer::ReceiveAll(int64_t now_ms) {
  std::vector<uint8_t>& buf = received_;
  for (int i = 0; i < kMaxReceive; ++i) {
    sockaddr_storage from;
    socklen_t from_len = sizeof(from);
    const ssize_t n =
        recvfrom(fd_, buf.data(), buf.size(), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&from), &from_len);
    if (n < 0) return;  // EAGAIN: nothing more
    Add(datagrams_received_, 1);
    const IpAddress sender = FromSockaddr(from);
    const int peer = PeerIndex(sender);
    if (peer < 0) {
      Add(datagrams_rejected_, 1);
      LOG_EVERY_T(WARNING, 10) << "flow sync: a datagram from " << sender.ToString() << ", not a peer";
      continue;
    }
    PeerCounters& counters = peer_counters_[size_t(peer)];
    auto message = fs::Decode(peers_[peer].key, {buf.data(), size_t(n)});
    if (!message.ok()) {
      Add(datagrams_rejected_, 1);
      Add(counters.datagrams_rejected, 1);
      LOG_EVERY_T(WARNING, 10) << "flow sync: from " << sender.ToString() << ": " << message.status();
      continue;
    }
    const uint64_t now_us = WallMicros();
    switch (peers_[peer].guard.Check(message->stamp, now_us)) {
      case fs::ReplayGuard::Verdict::kFresh:
        Add(counters.datagrams, 1);
        // Relaxed: gauges for View(), which orders nothing by them.
        counters.last_heard_unix_ms.store(int64_t(now_us / 1000), std::memory_order_relaxed);
        counters.delay_us.store(int64_t(now_us) - int64_t(message->stamp), std::memory_order_relaxed);
        Take(size_t(peer), *message, now_ms);
        break;
      case fs::ReplayGuard::Verdict::kReplayed: {
        Add(counters.datagrams_rejected, 1);
        Add(datagrams_replayed_, 1);
        LOG_EVERY_T(WARNING, 10) << "flow sync: from " << sender.ToString()
                                 << ": a datagram not newer than the last taken (replayed)";
        break;
      }
      case fs::ReplayGuard::Verdict::kOutOfWindow: {
        Add(counters.datagrams_rejected, 1);
        Add(datagrams_stale_, 1);
        LOG_EVERY_T(WARNING, 10) << "flow sync: from " << sender.ToString() << ": dated "
                                 << (int64_t(message->stamp) - int64_t(now_us)) / 1000
                                 << " ms from this node's clock, beyond --flow_sync_max_skew_ms ("
                                 << options_.max_skew_ms << "): replayed, or the clocks disagree (NTP)";
        break;
      }
    }
  }
}

void FlowSyncer::Take(size_t peer, fs::Message& message, int64_t now_ms) {
  Peer& p = peers_[peer];
  p.heard = true;
  if (message.type == fs::MessageType::kDumpRequest) {
    // A (re)started peer asks once a second: more often is not the peer's sync thread.
    if (now_ms - p.dump_asked_ms < kDumpMinIntervalMs) {
      Add(dump_requests_refused_, 1);
      return;
    }
    // Every live flow this node knows, the peer's own among them: it has restarted.
    p.dump_asked_ms = now_ms;
    p.dump = journal_.Live(now_ms);
    p.dump_sent = 0;
    Add(dumps_sent_, 1);
    return;
  }
  Add(flows_received_, message.flows.size());
  const size_t announced = message.flows.size();
  Screen(peer, message.flows, now_ms);
  Add(peer_counters_[peer].flows_refused, announced - message.flows.size());
  Add(peer_counters_[peer].flows_learned, message.flows.size());
  for (const SyncedFlow& f : message.flows) {
    if (!journal_.Record(f, now_ms)) Add(journal_full_, 1);
  }
  Deliver(message.flows);
}

void FlowSyncer::Screen(size_t peer, std::vector<SyncedFlow>& flows, int64_t now_ms) {
  const std::vector<IpAddress>& snat = options_.peers[peer].snat_addresses;
  dataplane::TokenBucket& budget = peers_[peer].learn_budget;
  std::erase_if(flows, [&](const SyncedFlow& f) {
    if (f.nat && std::ranges::find(snat, f.snat) == snat.end() &&
        std::ranges::find(options_.self_snat_addresses, f.snat) == options_.self_snat_addresses.end()) {
      Add(sessions_refused_, 1);
      LOG_EVERY_T(WARNING, 10) << "flow sync: " << options_.peers[peer].address.ToString()
                               << " announced a NAT session on " << f.snat.ToString()
                               << ", neither its SNAT address nor this node's (--flow_sync_peers)";
      return true;
    }
    if (options_.learn_per_second != 0 && !budget.Take(options_.learn_per_second, Millis(now_ms))) {
      Add(flows_over_budget_, 1);
      return true;
    }
    return false;
  });
}

void FlowSyncer::Deliver(const std::vector<SyncedFlow>& flows) {
  if (flows.empty()) return;
  for (rte_ring* ring : learn_) {
    const unsigned queued =
        rte_ring_sp_enqueue_burst_elem(ring, flows.data(), sizeof(SyncedFlow), unsigned(flows.size()), nullptr);
    Add(flows_undelivered_, flows.size() - queued);
  }
}

void FlowSyncer::SendAnnounced(int64_t now_ms) {
  for (rte_ring* ring : announce_) {
    const size_t room = kMaxPending - pending_.size();
    if (room == 0) break;
    const size_t old = pending_.size();
    pending_.resize(old + room);
    const unsigned n =
        rte_ring_sc_dequeue_burst_elem(ring, pending_.data() + old, sizeof(SyncedFlow), unsigned(room), nullptr);
    pending_.resize(old + n);
  }
  for (const SyncedFlow& f : pending_) {
    if (!journal_.Record(f, now_ms)) Add(journal_full_, 1);
  }
  std::vector<uint8_t>& datagram = datagram_;
  std::span<const SyncedFlow> rest(pending_);
  while (!rest.empty()) {
    const size_t n = EncodeNext(fs::MessageType::kFlows, rest);
    rest = rest.subspan(n);
    for (size_t i = 0; i < options_.peers.size(); ++i) SendTo(i, datagram);
    Add(flows_sent_, n);
  }
  pending_.clear();
}

FlowSyncView FlowSyncer::View() const {
  FlowSyncView v;
  for (const PeerOptions& p : options_.peers) v.peers.push_back(p.address.ToString());
  v.datagrams_sent = datagrams_sent_.load(std::memory_order_relaxed);
  v.flows_sent = flows_sent_.load(std::memory_order_relaxed);
  v.bytes_sent = bytes_sent_.load(std::memory_order_relaxed);
  v.send_errors = send_errors_.load(std::memory_order_relaxed);
  v.datagrams_received = datagrams_received_.load(std::memory_order_relaxed);
  v.flows_received = flows_received_.load(std::memory_order_relaxed);
  v.datagrams_rejected = datagrams_rejected_.load(std::memory_order_relaxed);
  v.flows_undelivered = flows_undelivered_.load(std::memory_order_relaxed);
  v.dumps_sent = dumps_sent_.load(std::memory_order_relaxed);
  v.journal_flows = journal_flows_.load(std::memory_order_relaxed);
  v.journal_full = journal_full_.load(std::memory_order_relaxed);
  v.datagrams_replayed = datagrams_replayed_.load(std::memory_order_relaxed);
  v.datagrams_stale = datagrams_stale_.load(std::memory_order_relaxed);
  v.dump_requests_refused = dump_requests_refused_.load(std::memory_order_relaxed);
  v.flows_over_budget = flows_over_budget_.load(std::memory_order_relaxed);
  v.sessions_refused = sessions_refused_.load(std::memory_order_relaxed);
  for (size_t i = 0; i < peer_counters_.size(); ++i) {
    const PeerCounters& c = peer_counters_[i];
    v.peer_stats.push_back({.address = options_.peers[i].address.ToString(),
                            .datagrams = c.datagrams.load(std::memory_order_relaxed),
                            .flows_learned = c.flows_learned.load(std::memory_order_relaxed),
                            .datagrams_rejected = c.datagrams_rejected.load(std::memory_order_relaxed),
                            .flows_refused = c.flows_refused.load(std::memory_order_relaxed),
                            .last_heard_unix_ms = c.last_heard_unix_ms.load(std::memory_order_relaxed),
                            .delay_us = c.delay_us.load(std::memory_order_relaxed)});
  }
  return v;
}

}  // namespace lb::control
