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

#include <algorithm>
#include <array>
#include <cstdint>

#include "dataplane/counters.h"
#include "dataplane/flow_table.h"
#include "dataplane/parse.h"
#include "dataplane/snapshot_store.h"

namespace lb::dataplane {

inline constexpr uint16_t kMaxBurst = 32;

struct BurstOutput {
  std::array<rte_mbuf*, kMaxBurst> wire;    // out of the port they came in on
  std::array<rte_mbuf*, kMaxBurst> kernel;  // to the exception path (TAP)
  uint16_t num_wire = 0;
  uint16_t num_kernel = 0;
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

class Worker {
 public:
  struct Options {
    uint32_t id = 0;                       // QSBR thread id, 0 .. max_workers-1
    uint32_t flow_capacity = 1u << 20;
    uint32_t sweep_buckets_per_poll = 64;  // flow-table aging work per poll
  };

  Worker(const Options& options, SnapshotStore* store);

  // Processes `n` <= kMaxBurst packets received at time `now`.
  void ProcessBurst(rte_mbuf* const* pkts, uint16_t n, Millis now, BurstOutput& out);

  // One turn of the poll loop: receive a burst from `rx`, process it, send the wire
  // output to `tx` and the exception output to `kernel`, report a quiescent state and
  // age a slice of the flow table. Returns the number of packets received.
  uint16_t PollOnce(PortQueue rx, PortQueue tx, PortQueue kernel);

  // The clock PollOnce uses: milliseconds from the TSC.
  Millis Now() const;

  uint32_t id() const { return options_.id; }
  const WorkerCounters& counters() const { return counters_; }  // any thread
  const FlowTable& flows() const { return flows_; }

 private:
  struct Meta {
    ParsedPacket packet;
    ParseStatus status;
    uint32_t hash;  // HashFlowKey(packet.key) when the flow table may be consulted
  };

  void Handle(const Snapshot& snap, rte_mbuf* m, const Meta& meta, Millis now, BurstOutput& out);
  void HandleFlow(const Snapshot& snap, rte_mbuf* m, const Meta& meta, const ServiceRecord& svc,
                  Millis now, BurstOutput& out);
  void HandleFragment(const Snapshot& snap, rte_mbuf* m, const Meta& meta,
                      const VipRecord& vip, Millis now, BurstOutput& out);
  void HandleIcmpError(const Snapshot& snap, rte_mbuf* m, const Meta& meta, Millis now,
                       BurstOutput& out);
  void Forward(const Snapshot& snap, rte_mbuf* m, const ParsedPacket& p, const ServiceRecord& svc,
               const BackendRecord& backend, uint32_t hash, Millis now, BurstOutput& out);
  void Drop(rte_mbuf* m, DropReason reason);
  void FlushDrops();

  Options options_;
  SnapshotStore* store_;
  FlowTable flows_;
  WorkerCounters counters_;
  TokenBucket too_big_limiter_;
  uint16_t next_ip_id_ = 0;
  uint64_t tsc_per_ms_;
  std::array<rte_mbuf*, kMaxBurst> dropped_;
  uint16_t num_dropped_ = 0;
};

}  // namespace lb::dataplane
