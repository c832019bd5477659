// FastPath: a burst run to completion (docs/design.md, the worker).
//
// Stage 1 brings the headers in, parses and hashes the whole burst and prefetches the
// flow-table buckets. Stage 2 classifies each packet (a service's, an SNAT address's, the
// kernel's, or a drop), looks its flow up, picks a backend by Maglev on a miss and
// forwards it: DSR here, NAT through NatPath. The exception path (to the kernel) is
// rate-limited per class. It owns the lcore's tables (counters, flow table, the
// flow-sync announcer and NatPath), which the worker's other parts borrow.
//
// The common case (TCP/UDP to a DSR service: Handle, HandleFlow, Forward) is inlined into
// the burst loop: calls and their register saves were ~100 instructions a packet
// (callgrind). The rare paths stay out of line. Worker lcore only.
#pragma once

#include <rte_mbuf.h>
#include <rte_ring.h>

#include <array>
#include <cstdint>

#include "common/flow_key.h"
#include "dataplane/counters.h"
#include "dataplane/flow_table.h"
#include "dataplane/snapshot.h"
#include "dataplane/token_bucket.h"
#include "dataplane/worker/burst.h"
#include "dataplane/worker/flow_announcer.h"
#include "dataplane/worker/nat_path.h"

namespace lb::dataplane {

class FastPath {
 public:
  struct Options {
    uint32_t flow_capacity = 1u << 20;
    FlowHasher flow_hasher;  // the cluster's flow hash (the same on every node)
    // Complete TCP/UDP checksums that senders left partial (rewrite::CompletePartialChecksum):
    // for ports whose frames come from the kernel as it has them (net_af_packet).
    bool complete_partial_checksums = false;
    // Flow sync: the announce ring (null: no sync) and the refresh interval, ms.
    rte_ring* flow_sync_announce = nullptr;
    uint32_t flow_sync_refresh_ms = 5000;
    NatPath::Options nat;
    // Where it counts each service's and backend's traffic (TrafficTable::cells; by
    // default the sink alone).
    TrafficCells traffic;
  };

  explicit FastPath(const Options& options);
  FastPath(const FastPath&) = delete;
  FastPath& operator=(const FastPath&) = delete;

  // Processes `n` <= kMaxBurst packets received at `now` against `snap` (nullptr: nothing
  // configured yet, so nothing is for a VIP). Drops are left in out.dropped.
  void ProcessBurst(const Snapshot* snap, rte_mbuf* const* pkts, uint16_t n, Millis now, BurstOutput& out);

  // The lcore's tables, which the worker's other parts share: its counters and traffic
  // cells (any thread reads them), its flow table, the flow-sync announcer and the NAT path.
  WorkerCounters& counters() { return counters_; }
  const WorkerCounters& counters() const { return counters_; }
  const TrafficCells& traffic() const { return traffic_; }
  FlowTable& flows() { return flows_; }
  const FlowTable& flows() const { return flows_; }
  FlowAnnouncer& announcer() { return announcer_; }
  NatPath& nat() { return nat_; }
  const NatPath& nat() const { return nat_; }

 private:
  // NAT: this many packets ahead of its turn, a packet's flow is looked up and its session
  // prefetched; the burst's first ones all at the start of stage 2 (lbbench, NAT 100k
  // flows: 71 -> 52 pipeline ns a packet).
  static constexpr uint16_t kNatSessionLookahead = 8;

  [[gnu::always_inline]] void Handle(BurstContext& ctx, rte_mbuf* m, const PacketMeta& meta);
  [[gnu::always_inline]] void HandleFlow(BurstContext& ctx, rte_mbuf* m, const PacketMeta& meta,
                                         const ServiceRecord& svc);
  // The service of a TCP/UDP packet: the burst's last lookup when it is for the same
  // VIP, protocol and port (consecutive packets mostly are), else the snapshot's.
  [[gnu::always_inline]] const ServiceRecord* FindService(const Snapshot& snap, const FlowKey& key);
  // Maglev's pick for the packet's flow, pinned into `*e` (backend slot and generation)
  // when there is one. Out of line: a flow-table hit needs neither it nor the service hash.
  const BackendRecord* PickAndPin(const Snapshot& snap, const ServiceRecord& svc, const PacketMeta& meta, FlowEntry* e);
  // Encapsulates the packet to `backend` (DSR), counted in the traffic of ctx.service.
  [[gnu::always_inline]] void Forward(BurstContext& ctx, rte_mbuf* m, const ParsedPacket& p,
                                      const BackendRecord& backend, uint32_t hash);
  void HandleFragment(BurstContext& ctx, rte_mbuf* m, const PacketMeta& meta, const VipRecord& vip);
  void HandleIcmpError(BurstContext& ctx, rte_mbuf* m, const PacketMeta& meta);
  // Hands `m` to the kernel (the exception path), unless it is for an announced VIP CIDR
  // (no_vip) or over this worker's exception budget for its class.
  void ToKernel(BurstContext& ctx, rte_mbuf* m, const ParsedPacket& p);

  // The lcore's tables are members, not references, so that the inlined common path
  // reaches them at fixed offsets from `this` (references cost lbbench 3-5%).
  const Options options_;
  WorkerCounters counters_;
  TrafficCells traffic_;
  FlowTable flows_;
  FlowAnnouncer announcer_;
  NatPath nat_;
  TokenBucket too_big_limiter_;
  TokenBucket exception_limiters_[kExceptionClasses];  // ToKernel, by ExceptionClass
  uint16_t next_ip_id_ = 0;
  std::array<PacketMeta, kMaxBurst> meta_;  // per burst; a member so that it is not built each time
  // The last service found in this burst (reset per burst: the snapshot may change).
  struct LastService {
    IpAddress vip;
    uint16_t port_be = 0;
    uint8_t protocol = 0;
    const ServiceRecord* svc = nullptr;
  } last_service_;
};

}  // namespace lb::dataplane
