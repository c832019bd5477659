// FlowSyncer: lbd's flow-sync thread (docs/flow-sync.md).
//
// It takes the flows the workers announce from their rings, packs them into datagrams
// (dataplane/flow_sync_wire.h) and sends each to every peer node over UDP, on the node
// network, through the kernel (the exception path); and it hands the flows the peers
// announce to every worker's learn ring, since which worker a flow's packets would reach
// is the NIC's (or the kernel's fanout's) choice. What it takes from the network is
// counted and dropped unless it comes from a peer's address with that peer's tag
// (flow_sync::SenderKey), is fresh (flow_sync::ReplayGuard: each datagram once, dated
// within `max_skew_ms`), and is within the peer's budget: `learn_per_second` flows, a NAT
// session only on one of the peer's own SNAT addresses or this node's, a dump at most
// every 500 ms.
//
// An announcement waits at most `flush_ms` for others to share its datagram: that, and
// the network, is how long a new flow is unprotected.
//
// It also keeps a journal of every flow sent or received (FlowJournal). When it starts,
// it asks each peer for a dump (a kDumpRequest, again every second until the peer is
// heard from), and asks every peer again when the node's configuration changes, since
// the workers can only learn the flows of services they have; it does so for 10 s after
// the start or the first configuration, whichever is later. It answers a peer's request
// with every live flow of its journal, paced: so a (re)started node learns the idle
// flows too, which no worker announces again.
//
// Thread model: Start and the destructor on the control thread; the thread it starts
// owns the socket and is the rings' other end (consumer of the announce rings, producer
// of the learn rings); View() from any thread.
#pragma once

#include <rte_ring.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "control/dataplane_probe.h"
#include "control/lbd/flow_journal.h"
#include "dataplane/flow_sync_wire.h"
#include "dataplane/token_bucket.h"
#include "common/ip_address.h"

namespace lb::control {

class FlowSyncer {
 public:
  struct PeerOptions {
    IpAddress address;
    std::vector<IpAddress> snat_addresses;  // the only ones its NAT sessions may name
  };
  struct Options {
    IpAddress self;  // this node's address among the peers': the socket's, the datagrams' source
    // This node's SNAT addresses: a peer may announce sessions on them too, those it
    // carried for this node while it was away.
    std::vector<IpAddress> self_snat_addresses;
    std::vector<PeerOptions> peers;
    uint16_t port = dataplane::flow_sync::kDefaultPort;
    SipKey key;  // flow_sync::KeyFromSecret of the cluster's flow-hash secret
    uint32_t flush_ms = 5;
    uint64_t max_skew_ms = 5000;            // how far the nodes' clocks may disagree
    uint32_t learn_per_second = 1'000'000;  // flows and sessions taken from one peer
    FlowJournal::Options journal;
    // The generation of the node's configuration (SnapshotStore::published_generation;
    // 0: none yet), read from the sync thread. May be empty.
    std::function<uint64_t()> config_generation;
  };

  // Binds the UDP port and starts the thread. `announce` and `learn`: one ring of
  // SyncedFlow per worker.
  static absl::StatusOr<std::unique_ptr<FlowSyncer>> Start(const Options& options, std::vector<rte_ring*> announce,
                                                           std::vector<rte_ring*> learn);
  ~FlowSyncer();
  FlowSyncer(const FlowSyncer&) = delete;
  FlowSyncer& operator=(const FlowSyncer&) = delete;

  FlowSyncView View() const;

 private:
  // What this node knows of each peer, in the order of Options::peers.
  struct Peer {
    explicit Peer(const Options& o, const PeerOptions& p)
        : key(dataplane::flow_sync::SenderKey(o.key, p.address)), guard(o.max_skew_ms * 1000) {}
    SipKey key;  // of its datagrams' tags
    dataplane::flow_sync::ReplayGuard guard;
    dataplane::TokenBucket learn_budget;
    bool heard = false;                       // a datagram came from it
    int64_t dump_asked_ms = INT64_MIN / 2;    // when the last dump it asked for began
    std::vector<dataplane::SyncedFlow> dump;  // the flows of a dump it asked for, still to send
    size_t dump_sent = 0;
  };

  FlowSyncer(const Options& options, std::vector<rte_ring*> announce, std::vector<rte_ring*> learn);
  void Run();
  void ReceiveAll(int64_t now_ms);
  // Takes one authenticated, fresh datagram of `peer`'s.
  void Take(size_t peer, dataplane::flow_sync::Message& message, int64_t now_ms);
  // Drops from `flows` what `peer` may not announce (a session on an SNAT address neither
  // its own nor this node's: a third node's) or what is beyond its budget.
  void Screen(size_t peer, std::vector<dataplane::SyncedFlow>& flows, int64_t now_ms);
  void Deliver(const std::vector<dataplane::SyncedFlow>& flows);
  void SendAnnounced(int64_t now_ms);
  // Asks the peers for a dump when due (see above); called once a second.
  void RequestDumps(int64_t now_ms);
  // Sends the next datagrams of each dump a peer asked for.
  void SendDumps();
  bool SendTo(size_t peer, const std::vector<uint8_t>& datagram);
  // Encodes as many of `flows` as fit into datagram_; returns how many.
  size_t EncodeNext(dataplane::flow_sync::MessageType type, std::span<const dataplane::SyncedFlow> flows);
  // The index of `a` in Options::peers, or -1.
  int PeerIndex(const IpAddress& a) const;

  static void Add(std::atomic<uint64_t>& c, uint64_t n) {
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }

  Options options_;
  std::vector<rte_ring*> announce_;
  std::vector<rte_ring*> learn_;
  std::vector<Peer> peers_;
  // Per peer, as peers_ (written by the thread, read by View()).
  struct PeerCounters {
    std::atomic<uint64_t> datagrams{0}, flows_learned{0}, datagrams_rejected{0}, flows_refused{0};
    std::atomic<int64_t> last_heard_unix_ms{0};  // 0: never
    std::atomic<int64_t> delay_us{0};            // of its last datagram: this clock minus its stamp
  };
  std::vector<PeerCounters> peer_counters_;
  FlowJournal journal_;
  int fd_ = -1;
  bool v6_socket_ = false;
  SipKey key_;  // of this node's tags
  dataplane::flow_sync::StampClock stamps_;
  int64_t dump_requests_until_ms_ = 0;  // RequestDumps asks until then
  uint64_t requested_generation_ = 0;   // the configuration the last requests were made with
  std::vector<dataplane::SyncedFlow> pending_;
  std::vector<uint8_t> received_ = std::vector<uint8_t>(65536);  // a datagram read
  std::vector<uint8_t> datagram_;                                // a datagram to send
  std::atomic<bool> stop_{false};
  std::thread thread_;
  // Written by the thread only (see WorkerCounters), read by View().
  std::atomic<uint64_t> datagrams_sent_{0}, flows_sent_{0}, bytes_sent_{0}, send_errors_{0};
  std::atomic<uint64_t> datagrams_received_{0}, flows_received_{0}, datagrams_rejected_{0}, flows_undelivered_{0};
  std::atomic<uint64_t> dumps_sent_{0}, journal_flows_{0}, journal_full_{0};
  std::atomic<uint64_t> datagrams_replayed_{0}, datagrams_stale_{0}, dump_requests_refused_{0};
  std::atomic<uint64_t> flows_over_budget_{0}, sessions_refused_{0};
};

}  // namespace lb::control
