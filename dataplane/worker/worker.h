// Worker: one pinned lcore's packet pipeline.
//
// ProcessBurst() runs a burst to completion (DESIGN.md §3): prefetch; parse and hash the
// whole burst, prefetching flow-table buckets; then classify each packet (VIP, exception
// or drop), look its flow up, pick a backend by Maglev on a miss, rewrite, and sort it
// into the wire or kernel output. Every packet leaves in an output or is freed and
// counted under its drop reason.
//
// Thread model: a Worker belongs to one worker lcore; every method but counters() and
// flows().occupied() is for that lcore only. It reads the snapshot once per burst and
// never holds it across PollOnce()'s quiescent-state report.
#pragma once

#include <rte_mbuf.h>
#include <rte_ring.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "dataplane/counters.h"
#include "dataplane/flow_sync_wire.h"
#include "dataplane/flow_table.h"
#include "dataplane/nat.h"
#include "dataplane/parse.h"
#include "dataplane/snapshot_store.h"

namespace lb::dataplane {

namespace rewrite {
struct NatEndpoints;  // rewrite.h
}  // namespace rewrite

inline constexpr uint16_t kMaxBurst = 32;

struct BurstOutput {
  std::array<rte_mbuf*, kMaxBurst> wire;      // out of the port they came in on
  std::array<rte_mbuf*, kMaxBurst> kernel;    // to the exception path (TAP)
  std::array<rte_mbuf*, kMaxBurst> redirect;  // NAT replies for the worker that owns their port
  std::array<uint16_t, kMaxBurst> redirect_to;
  uint16_t num_wire = 0;
  uint16_t num_kernel = 0;
  uint16_t num_redirect = 0;
};

// `rate` tokens a second, holding at most one second's worth. Integer arithmetic in
// thousandths of a token.
class TokenBucket {
 public:
  bool Take(uint32_t rate, Millis now) {
    if (rate == 0) return false;
    const uint64_t cap = uint64_t(rate) * 1000;
    tokens_ = std::min<uint64_t>(cap, tokens_ + uint64_t(Millis(now - last_)) * rate);
    last_ = now;
    if (tokens_ < 1000) return false;
    tokens_ -= 1000;
    return true;
  }

 private:
  uint64_t tokens_ = 0;
  Millis last_ = 0;
};

struct PortQueue {
  uint16_t port = 0;
  uint16_t queue = 0;
};

// A queue whose packets the worker moves itself (dpdk::AfPacketPort): each turn of the
// poll loop Pulls what waits at the queue's source into the queue before receiving from
// it, and Pushes what it sent on the queue to the sink after sending. Worker lcore only;
// what goes wrong on the way is counted in `counters`.
class QueuePump {
 public:
  virtual ~QueuePump() = default;
  virtual void Pull(WorkerCounters& counters) = 0;
  virtual void Push(WorkerCounters& counters) = 0;
};

// How a worker's poll loop runs (Worker::Run).
struct RunOptions {
  // Per wire port: this worker's RX and TX queue on it, and its TX queue on the
  // exception (TAP) port that carries that port's kernel traffic.
  struct Ports {
    PortQueue wire;
    PortQueue kernel;
    QueuePump* wire_pump = nullptr;  // for the wire queue, when the worker moves its packets
  };
  std::vector<Ports> ports;
  // Packets the kernel sends through the exception path, handed over by the main lcore
  // (single producer, this worker the single consumer); sent out of ports[0]. May be null.
  rte_ring* from_kernel = nullptr;
  // NAT: every worker's inbox (multi-producer, its owner the single consumer), by worker
  // id. A worker drains its own and hands other workers the replies they own. Empty with
  // one worker.
  std::vector<rte_ring*> nat_inboxes;
  // Flow sync: the peers' flows, from the sync thread (single producer) to this worker
  // (Learn). May be null.
  rte_ring* flow_sync_learn = nullptr;
  // Idle back-off: after `idle_polls` empty polls in a row the worker goes offline in
  // QSBR and sleeps `idle_sleep_us` between polls until traffic returns. 0 busy-polls.
  uint32_t idle_polls = 0;
  uint32_t idle_sleep_us = 100;
};

// A flow-table lookup answered by a worker for the control thread (ExplainFlow).
struct FlowAnswer {
  bool found = false;
  uint32_t backend_slot = 0;
  uint32_t backend_generation = 0;
};

class Worker {
 public:
  struct Options {
    uint32_t id = 0;                       // QSBR thread id, 0 .. max_workers-1
    uint32_t flow_capacity = 1u << 20;
    uint32_t sweep_buckets_per_poll = 64;  // flow-table aging work per poll
    // NAT: the workers that share the SNAT ports (ids 0..workers-1), and the SNAT pool
    // (as DataplaneConfig::nat: its address count and port range).
    uint32_t workers = 1;
    uint32_t nat_addresses = 0;
    uint16_t nat_port_min = 1024;
    uint16_t nat_port_max = 65535;
    // Seeds the random choice of SNAT ports (NatTable); 0: lowest free port first (tests).
    uint64_t nat_port_secret = 0;
    FlowHasher flow_hasher;  // the cluster's flow hash (the same on every node)
    // Complete TCP/UDP checksums that senders left partial (rewrite::CompletePartialChecksum):
    // for ports whose frames come from the kernel as it has them (net_af_packet).
    bool complete_partial_checksums = false;
    // Flow sync (dataplane/flow_sync_wire.h): the ring of SyncedFlows this worker announces to the sync
    // thread (this worker the single producer; null: no sync), and how often a flow that
    // is still active is announced again, ms.
    rte_ring* flow_sync_announce = nullptr;
    uint32_t flow_sync_refresh_ms = 5000;
    // Flow sync: the NAT sessions of the peer nodes this worker can adopt (AdoptedTable).
    uint32_t nat_adopted_capacity = 0;
  };

  Worker(const Options& options, SnapshotStore* store);

  // Processes `n` <= kMaxBurst packets received at time `now` (`handed_over`: NAT replies
  // another worker received, already counted there).
  void ProcessBurst(rte_mbuf* const* pkts, uint16_t n, Millis now, BurstOutput& out, bool handed_over = false);

  // Flow sync: puts flows the peer nodes pinned into the flow table as learned entries
  // (each keeps its backend should its packets come here), and adopts their NAT sessions
  // (AdoptedTable: translated both ways should their packets come here), or refreshes
  // the learned entries and sessions it has; what this worker carries itself is left
  // alone. Returns how many it took.
  uint32_t Learn(std::span<const SyncedFlow> flows, Millis now);

  // One turn of the poll loop: receive a burst from `rx`, process it, send the wire
  // output to `tx` and the exception output to `kernel`, report a quiescent state and
  // age a slice of the flow table. Returns the number of packets received.
  uint16_t PollOnce(PortQueue rx, PortQueue tx, PortQueue kernel);

  // The poll loop of a worker lcore: PollOnce over every port until `stop` is set, with
  // the idle back-off of `options`, answering flow queries. Leaves QSBR offline.
  void Run(const RunOptions& options, const std::atomic<bool>& stop);

  // Control thread (callers serialise): whether this worker's flow table holds `key`,
  // asked through a mailbox the worker answers between polls. nullopt when the worker
  // has not answered within `timeout_us` (it is not running, or is stuck).
  std::optional<FlowAnswer> QueryFlow(const FlowKey& key, uint32_t timeout_us);

  // The clock PollOnce uses: milliseconds from the TSC.
  Millis Now() const;

  // Any thread: poll loops run so far (a heartbeat for health checks).
  uint64_t loops() const { return loops_.load(std::memory_order_relaxed); }

  uint32_t id() const { return options_.id; }
  const WorkerCounters& counters() const { return counters_; }  // any thread
  const FlowTable& flows() const { return flows_; }
  const NatTable& nat() const { return nat_; }  // in_use() from any thread

 private:
  struct Meta {
    ParsedPacket packet;
    ParseStatus status;
    FlowTag tag;  // of packet.key, when the flow table may be consulted
    FlowTable::Slot flow;  // the flow's live entry, when LookUpAhead found it
  };

  // The common path (TCP/UDP to a DSR service: Handle, HandleFlow, Forward) is inlined
  // into ProcessBurst's loop: calls and their register saves were ~100 instructions a
  // packet (callgrind). The rare paths stay out of line.
  // Hands `m` to the kernel (the exception path), unless it is for an announced VIP
  // CIDR (no_vip) or over this worker's exception budget for its class.
  void ToKernel(const Snapshot* snap, rte_mbuf* m, const ParsedPacket& p, Millis now, BurstOutput& out);
  [[gnu::always_inline]] void Handle(const Snapshot& snap, rte_mbuf* m, const Meta& meta, Millis now, BurstOutput& out);
  [[gnu::always_inline]] void HandleFlow(const Snapshot& snap, rte_mbuf* m, const Meta& meta, const ServiceRecord& svc,
                  Millis now, BurstOutput& out);
  // NAT: a packet of a known flow reads its bucket, then the session the bucket names, a
  // second dependent miss. So, this many packets ahead of its turn, the packet's flow is
  // looked up (its bucket was prefetched in stage 1; the entry is kept in meta.flow) and
  // its session prefetched; the burst's first ones all at the start of stage 2 (lbbench,
  // NAT 100k flows: 71 -> 52 pipeline ns a packet).
  static constexpr uint16_t kNatSessionLookahead = 8;
  void LookUpAhead(Meta& meta, Millis now);
  // The flow's live entry: the one LookUpAhead found, else looked up now (also when
  // LookUpAhead found none: an earlier packet of the burst may have created it since).
  // A found entry stays valid through the burst: ways are only taken when free or expired.
  FlowTable::Slot FindFlow(const Meta& meta, Millis now) { return meta.flow ? meta.flow : flows_.Find(meta.tag, now); }
  // Maglev's pick for the packet's flow, pinned into `*e` (backend slot and generation)
  // when there is one. Out of line: a flow-table hit needs neither it nor the service hash.
  const BackendRecord* PickAndPin(const Snapshot& snap, const ServiceRecord& svc, const Meta& meta, FlowEntry* e);
  // The service of a TCP/UDP packet: the burst's last lookup when it is for the same
  // VIP, protocol and port (consecutive packets mostly are), else the snapshot's.
  [[gnu::always_inline]] const ServiceRecord* FindService(const Snapshot& snap, const FlowKey& key);
  void HandleFragment(const Snapshot& snap, rte_mbuf* m, const Meta& meta,
                      const VipRecord& vip, Millis now, BurstOutput& out);
  void HandleIcmpError(const Snapshot& snap, rte_mbuf* m, const Meta& meta, Millis now,
                       BurstOutput& out);
  // NAT (nat.h): the client side of a NAT service, and what comes to an SNAT address.
  void HandleNat(const Snapshot& snap, rte_mbuf* m, const Meta& meta, const ServiceRecord& svc,
                 Millis now, BurstOutput& out);
  void HandleNatIcmpFromClientSide(const Snapshot& snap, const ServiceRecord& svc, rte_mbuf* m,
                                   const Meta& meta, Millis now, BurstOutput& out);
  void HandleSnat(const Snapshot& snap, rte_mbuf* m, const Meta& meta, uint32_t address, Millis now,
                  BurstOutput& out);
  // A NAT session's packet (own or adopted), translated: toward the backend `b` as `to`
  // says (from the session's SNAT address and port), or toward the client from the VIP.
  void NatToBackend(const Snapshot& snap, rte_mbuf* m, const ParsedPacket& p, const BackendRecord& b,
                    const rewrite::NatEndpoints& to, BurstOutput& out);
  void NatToClient(const Snapshot& snap, rte_mbuf* m, const ParsedPacket& p, const FlowKey& client, BurstOutput& out);
  // ICMP errors about a NAT session (own or adopted): one about what the backend sent
  // goes to the client, quoting what the client sent; one about what the client got
  // (from the VIP) goes to the backend `b` (nullptr: gone), quoting what it sent.
  void NatErrorToClient(const Snapshot& snap, rte_mbuf* m, const ParsedPacket& p, const FlowKey& client,
                        const IpAddress& backend, BurstOutput& out);
  void NatErrorToBackend(const Snapshot& snap, rte_mbuf* m, const ParsedPacket& p, const BackendRecord* b,
                         const IpAddress& backend, uint16_t backend_port_be, const IpAddress& snat,
                         uint16_t snat_port_be, BurstOutput& out);
  // The live session a flow entry names, or nullptr.
  NatSession* SessionOf(const FlowEntry& e, const FlowKey& key, Millis now);
  // A packet of session `s` (`from_client`: of the client side) keeps it alive; flow sync
  // announces it once established (on a packet of the client's), then every interval.
  void RefreshSession(const Snapshot& snap, NatSession& s, const ParsedPacket& p, Millis now, bool from_client);
  // Another SNAT port when the one allocated (`index`) would give the backend the 4-tuple
  // of an adopted session; kNone when a few tries find none.
  uint32_t AvoidAdopted(const Snapshot& snap, uint32_t index, const FlowKey& client, const IpAddress& backend,
                        uint16_t backend_port_be, uint32_t preferred, const bool* family_v4, Millis now);
  // Adopted NAT sessions (nat.h): the live one a flow entry names, or nullptr; the one
  // whose reply (or ICMP error about one) `meta` is, or nullptr; and their translation
  // each way.
  AdoptedSession* AdoptedOf(const FlowEntry& e, Millis now);
  AdoptedSession* AdoptedReply(const Meta& meta, Millis now);
  void AdoptedToBackend(const Snapshot& snap, rte_mbuf* m, const ParsedPacket& p, AdoptedSession& a,
                        const BackendRecord& b, Millis now, BurstOutput& out);
  void AdoptedToClient(const Snapshot& snap, rte_mbuf* m, const ParsedPacket& p, AdoptedSession& a, Millis now,
                       BurstOutput& out);
  // A packet of adopted session `a` came here: this node carries it from now on (counted
  // as rescued, and announced), and keeps it and its entries alive.
  void CarryAdopted(const Snapshot& snap, AdoptedSession& a, const ParsedPacket& p, Millis now);
  // Sends what the other workers handed this one (NAT replies it owns).
  uint32_t DrainInbox(rte_ring* inbox, PortQueue tx, PortQueue kernel);
  void SendBurst(BurstOutput& out, PortQueue tx, PortQueue kernel);
  [[gnu::always_inline]] void Forward(const Snapshot& snap, rte_mbuf* m, const ParsedPacket& p,
                                      const BackendRecord& backend, uint32_t hash, Millis now, BurstOutput& out);
  void AnswerEcho(rte_mbuf* m, const ParsedPacket& p, BurstOutput& out);
  // Flow sync: tells the peers (through the sync thread) that `key` is pinned to `b`, or
  // about a NAT session; and whether a flow whose deadline moves from `before` to `after`
  // is due to be announced again (its deadline entered another refresh interval).
  void Announce(const FlowKey& key, const BackendRecord& b, FlowState state);
  void Announce(const SyncedFlow& f);
  bool RefreshDue(Millis before, Millis after) const {
    return before / options_.flow_sync_refresh_ms != after / options_.flow_sync_refresh_ms;
  }
  // Until when a flow learned at `now` is kept: the peer's entry lives until the flow is
  // idle for its timeout, and is announced again every refresh interval while active, so
  // a learned entry outlives it.
  Millis LearnedDeadline(const Snapshot& snap, FlowState state, Millis now) const {
    return now + snap.Timeout(state) + options_.flow_sync_refresh_ms;
  }
  // Learn's part for a DSR flow and for a NAT session; each says whether it took it.
  bool LearnFlow(const Snapshot& snap, const SyncedFlow& f, Millis now);
  bool LearnSession(const Snapshot& snap, const SyncedFlow& f, Millis now);
  // A way for a learned entry (FlowTable::Claim), counted as flow_table_full when there is
  // none, as flow_expired when it reclaims an expired flow's.
  FlowTable::Slot ClaimForLearned(const FlowTag& tag, Millis now);
  void Drop(rte_mbuf* m, DropReason reason);
  void FlushDrops();
  void AnswerQuery(Millis now);
  // Sends what the kernel queued in `ring` out of `port`; returns how many were queued.
  uint32_t SendFromKernel(rte_ring* ring, PortQueue port);

  // The flow-query mailbox: kIdle -> (control) kAsked -> (worker) kAnswered -> (control)
  // kIdle. The key and answer are plain data published by the release/acquire pairs on
  // `state`.
  enum QueryState : uint32_t { kIdle, kAsked, kAnswered };
  struct alignas(64) Query {
    std::atomic<uint32_t> state{kIdle};
    FlowKey key;
    FlowAnswer answer;
  };

  Options options_;
  SnapshotStore* store_;
  FlowTable flows_;
  NatTable nat_;
  AdoptedTable adopted_;
  std::vector<rte_ring*> nat_inboxes_;  // set by Run
  WorkerCounters counters_;
  TokenBucket too_big_limiter_;
  TokenBucket exception_limiter_;          // ToKernel: everything but control traffic
  TokenBucket exception_control_limiter_;  // ToKernel: ARP, ND, BGP, BFD
  uint16_t next_ip_id_ = 0;
  uint64_t tsc_per_ms_;
  std::array<rte_mbuf*, kMaxBurst> dropped_;
  uint16_t num_dropped_ = 0;
  std::array<Meta, kMaxBurst> meta_;  // per burst; a member so that it is not built each time
  // The last service found in this burst (reset per burst: the snapshot may change).
  struct LastService {
    IpAddress vip;
    uint16_t port_be = 0;
    uint8_t protocol = 0;
    const ServiceRecord* svc = nullptr;
  } last_service_;
  Query query_;
  std::atomic<uint64_t> loops_{0};
};

}  // namespace lb::dataplane
