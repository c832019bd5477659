#include "dataplane/worker/flow_learner.h"

namespace lb::dataplane {

uint32_t FlowLearner::Learn(const Snapshot& snap, std::span<const SyncedFlow> flows, Millis now) {
  uint32_t taken = 0;
  for (const SyncedFlow& f : flows) taken += f.nat ? nat_.Adopt(snap, f, now) : LearnFlow(snap, f, now);
  counters_.Add(Event::kFlowsLearned, taken);
  return taken;
}

bool FlowLearner::LearnFlow(const Snapshot& snap, const SyncedFlow& f, Millis now) {
  const ServiceRecord* svc = snap.FindService(f.key.dst, f.key.protocol, f.key.dst_port_be);
  uint32_t slot_id = 0;
  const BackendRecord* b = svc != nullptr && svc->mode != ForwardingMode::kNat
                               ? svc->FindBackend(f.backend, f.backend_port, &slot_id)
                               : nullptr;
  if (b == nullptr) {
    counters_.Add(Event::kFlowsLearnedUnknown);
    return false;
  }
  const FlowState state = LearnedState(f);
  const Millis deadline = announcer_.LearnedDeadline(snap, state, now);
  const FlowEntry learned{slot_id, b->generation, uint8_t(uint8_t(state) | kLearnedFlag | kAnnouncedFlag)};
  const FlowTag tag = flows_.Tag(f.key, hasher_.Hash(f.key));
  FlowTable::Slot slot = flows_.Find(tag, now);
  if (slot) {
    // Refreshed when announced again; else this worker carries the flow itself, unless its
    // handshake never completed here: its SYN came here, and the connection went to the
    // peer (ECMP changed before the SYN's retransmission). Left alone, the entry would
    // expire with the handshake timeout and the connection go to the current Maglev pick.
    const bool handshake_only = !(slot.entry->state & (kNatEntryFlag | kLearnedFlag)) &&
                                FlowState(slot.entry->state & kStateMask) == FlowState::kTcpSynSent;
    if (!IsLearnedFlowEntry(*slot.entry) && !handshake_only) return false;
    if (handshake_only) counters_.Add(Event::kHandshakesYielded);
  } else if (!(slot = ClaimForLearned(flows_, counters_, tag, now))) {
    return false;
  }
  *slot.entry = learned;
  *slot.deadline = deadline;
  return true;
}

}  // namespace lb::dataplane
