// The worker's side of flow sync (docs/flow-sync.md), first half: announcing the flows
// it pins to the node's sync thread (flow_learner.h: the second half). FlowAnnouncer
// queues SyncedFlows on the worker's announce ring (this worker the single producer); the
// helpers here are shared with learning. Worker lcore only.
#pragma once

#include <rte_ring.h>

#include <cstdint>

#include "common/flow_key.h"
#include "common/millis.h"
#include "dataplane/counters.h"
#include "dataplane/flow_sync_wire.h"
#include "dataplane/flow_table.h"
#include "dataplane/snapshot.h"

namespace lb::dataplane {

class FlowAnnouncer {
 public:
  // `ring`: null when the node does not sync flows.
  FlowAnnouncer(rte_ring* ring, uint32_t refresh_ms, WorkerCounters& counters)
      : ring_(ring), refresh_ms_(refresh_ms), counters_(counters) {}

  bool enabled() const { return ring_ != nullptr; }

  // Tells the peers (through the sync thread) that `key` is pinned to `b`, or about a NAT
  // session.
  void Announce(const FlowKey& key, const BackendRecord& b, FlowState state) {
    Announce(SyncedFlow{.key = key, .backend = b.address, .backend_port = b.port, .state = uint8_t(state)});
  }
  void Announce(const SyncedFlow& f) {
    // The ring copies the element (its API takes no const pointer).
    if (rte_ring_sp_enqueue_elem(ring_, const_cast<SyncedFlow*>(&f), sizeof(f)) == 0) {
      counters_.Add(Event::kFlowsAnnounced);
    } else {
      counters_.Add(Event::kFlowAnnouncesLost);
    }
  }

  // Whether a flow whose deadline moves from `before` to `after` is due to be announced
  // again (its deadline entered another refresh interval).
  bool RefreshDue(Millis before, Millis after) const { return before / refresh_ms_ != after / refresh_ms_; }

  // Until when a flow learned at `now` is kept: the peer's entry lives until the flow is
  // idle for its timeout, and is announced again every refresh interval while active, so
  // a learned entry outlives it.
  Millis LearnedDeadline(const Snapshot& snap, FlowState state, Millis now) const {
    return now + snap.Timeout(state) + refresh_ms_;
  }

 private:
  rte_ring* ring_;
  uint32_t refresh_ms_;
  WorkerCounters& counters_;
};

// The state a flow learned from a peer is kept in: only announceable flows are announced.
inline FlowState LearnedState(const SyncedFlow& f) {
  return f.key.protocol == IPPROTO_UDP ? FlowState::kUdp : FlowState::kTcpEstablished;
}

// A NAT session (own or adopted) as flow sync tells it.
SyncedFlow SessionAnnouncement(const FlowKey& client, const IpAddress& backend, uint16_t backend_port_be,
                               const IpAddress& snat, uint16_t snat_port_be, FlowState state);

// A way for a learned entry (FlowTable::Claim), counted as flow_table_full when there is
// none, as flow_expired when it reclaims an expired flow's.
FlowTable::Slot ClaimForLearned(FlowTable& flows, WorkerCounters& counters, const FlowTag& tag, Millis now);

}  // namespace lb::dataplane
