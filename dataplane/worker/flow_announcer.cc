#include "dataplane/worker/flow_announcer.h"

#include <rte_byteorder.h>

namespace lb::dataplane {

SyncedFlow SessionAnnouncement(const FlowKey& client, const IpAddress& backend, uint16_t backend_port_be,
                               const IpAddress& snat, uint16_t snat_port_be, FlowState state) {
  return {.key = client,
          .backend = backend,
          .backend_port = rte_be_to_cpu_16(backend_port_be),
          .state = uint8_t(state),
          .nat = true,
          .snat = snat,
          .snat_port = rte_be_to_cpu_16(snat_port_be)};
}

FlowTable::Slot ClaimForLearned(FlowTable& flows, WorkerCounters& counters, const FlowTag& tag, Millis now) {
  bool reclaimed = false;
  const FlowTable::Slot slot = flows.Claim(tag, now, &reclaimed);
  if (!slot) counters.Add(Event::kFlowTableFull);
  if (reclaimed) counters.Add(Event::kFlowExpired);
  return slot;
}

}  // namespace lb::dataplane
