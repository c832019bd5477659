// The worker's side of flow sync (docs/flow-sync.md), second half: learning the flows the
// peer nodes pinned (flow_announcer.h: the first half). FlowLearner puts the peers' DSR
// flows into the flow table as learned entries, each keeping its backend should its
// packets come here, and hands their NAT sessions to NatPath to adopt. Worker lcore only.
#pragma once

#include <cstdint>
#include <span>

#include "common/flow_key.h"
#include "common/millis.h"
#include "dataplane/counters.h"
#include "dataplane/flow_sync_wire.h"
#include "dataplane/flow_table.h"
#include "dataplane/snapshot.h"
#include "dataplane/worker/flow_announcer.h"
#include "dataplane/worker/nat_path.h"

namespace lb::dataplane {

class FlowLearner {
 public:
  FlowLearner(FlowTable& flows, NatPath& nat, const FlowAnnouncer& announcer, const FlowHasher& hasher,
              WorkerCounters& counters)
      : flows_(flows), nat_(nat), announcer_(announcer), hasher_(hasher), counters_(counters) {}

  // Puts flows the peer nodes pinned into the flow table as learned entries, and adopts
  // their NAT sessions, or refreshes the learned entries and sessions it has; what this
  // worker carries itself is left alone. Returns how many it took.
  uint32_t Learn(const Snapshot& snap, std::span<const SyncedFlow> flows, Millis now);

 private:
  bool LearnFlow(const Snapshot& snap, const SyncedFlow& f, Millis now);

  FlowTable& flows_;
  NatPath& nat_;
  const FlowAnnouncer& announcer_;
  const FlowHasher& hasher_;
  WorkerCounters& counters_;
};

}  // namespace lb::dataplane
