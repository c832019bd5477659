// Worker: one pinned lcore's packet pipeline, its tables and its poll loop.
//
// A Worker is made of parts, one file each:
//   FastPath (fast_path.h)         a burst run to completion: parse, classify, DSR; it
//                                  owns the lcore's tables, which the others borrow;
//   NatPath (nat_path.h)           NAT and SNAT, sessions adopted from peers, their ICMP;
//   FlowAnnouncer, FlowLearner     flow sync's worker side (flow_announcer.h,
//                                  flow_learner.h);
//   BurstContext (burst.h)         what a burst carries, and the emit primitives;
// and here, the poll loop (ports, the exception path's rings, the NAT hand-over between
// workers, the idle back-off) and the control thread's flow-query mailbox. Every packet
// leaves in an output or is freed and counted under its drop reason.
//
// Thread model: a Worker belongs to one worker lcore; every method but counters(),
// flows().occupied(), nat().in_use(), loops() and QueryFlow() is for that lcore only. It
// reads the snapshot once per burst and never holds it across PollOnce()'s
// quiescent-state report.
#pragma once

#include <rte_mbuf.h>
#include <rte_ring.h>

#include <atomic>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "dataplane/counters.h"
#include "dataplane/dpdk/queue_pump.h"
#include "dataplane/flow_sync_wire.h"
#include "dataplane/flow_table.h"
#include "dataplane/nat.h"
#include "dataplane/snapshot_store.h"
#include "dataplane/worker/burst.h"
#include "dataplane/worker/fast_path.h"
#include "dataplane/worker/flow_announcer.h"
#include "dataplane/worker/flow_learner.h"
#include "dataplane/worker/nat_path.h"

namespace lb::dataplane {

struct PortQueue {
  uint16_t port = 0;
  uint16_t queue = 0;
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

class Worker {
 public:
  struct Options {
    uint32_t id = 0;  // QSBR thread id, 0 .. max_workers-1
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
    // Flow sync (flow_announcer.h): the ring of SyncedFlows this worker announces to the
    // sync thread (this worker the single producer; null: no sync), and how often a flow
    // that is still active is announced again, ms.
    rte_ring* flow_sync_announce = nullptr;
    uint32_t flow_sync_refresh_ms = 5000;
    // Flow sync: the NAT sessions of the peer nodes this worker can adopt (AdoptedTable).
    uint32_t nat_adopted_capacity = 0;
    // Where it counts each service's and backend's traffic (TrafficTable::cells).
    TrafficCells traffic;
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
  const WorkerCounters& counters() const { return fast_.counters(); }  // any thread
  const TrafficCells& traffic() const { return fast_.traffic(); }      // any thread
  const FlowTable& flows() const { return fast_.flows(); }
  const NatTable& nat() const { return fast_.nat().table(); }  // in_use() from any thread

 private:
  // Sends what the other workers handed this one (NAT replies it owns).
  uint32_t DrainInbox(rte_ring* inbox, PortQueue tx, PortQueue kernel);
  void SendBurst(BurstOutput& out, PortQueue tx, PortQueue kernel);
  // Sends what the kernel queued in `ring` out of `port`; returns how many were queued.
  uint32_t SendFromKernel(rte_ring* ring, PortQueue port);
  void AnswerQuery(Millis now);

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
  FastPath fast_;  // owns the counters, the flow table, the announcer and NatPath
  FlowLearner learner_;
  std::vector<rte_ring*> nat_inboxes_;  // set by Run
  uint64_t tsc_per_ms_;
  Query query_;
  std::atomic<uint64_t> loops_{0};
};

}  // namespace lb::dataplane
