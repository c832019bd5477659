// DataplaneProbe: what the control core asks of the running dataplane (workers, links)
// for stats, health and flow explanations. lbd implements it over its workers and
// ports; tests use a fake. Thread model: any thread (implementations serialise what
// needs it).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/flow_key.h"
#include "dataplane/counters.h"
#include "dataplane/flow_table.h"
#include "dataplane/nat.h"

namespace lb::control {

struct WorkerView {
  uint32_t id = 0;
  uint32_t lcore = 0;
  const dataplane::WorkerCounters* counters = nullptr;  // owned by the dataplane
  uint64_t flows = 0;
  uint64_t flow_capacity = 0;
  const dataplane::NatTable* nat = nullptr;  // owned by the dataplane; its in_use() is any-thread
};

// Flow sync (docs/flow-sync.md): what the node's sync thread sent to and received from
// its peer nodes.
struct FlowSyncView {
  std::vector<std::string> peers;
  uint64_t datagrams_sent = 0;
  uint64_t flows_sent = 0;  // to each peer
  uint64_t bytes_sent = 0;  // UDP payload, to all peers
  uint64_t send_errors = 0;
  uint64_t datagrams_received = 0;
  uint64_t flows_received = 0;
  uint64_t datagrams_rejected = 0;     // not from a peer, bad tag, malformed
  uint64_t datagrams_replayed = 0;     // authentic, but not newer than the sender's last
  uint64_t datagrams_stale = 0;        // authentic, but dated outside the clock window
  uint64_t dump_requests_refused = 0;  // a peer asked again within 500 ms
  uint64_t flows_over_budget = 0;      // beyond a peer's learn budget
  uint64_t sessions_refused = 0;       // NAT sessions on an SNAT address not the peer's
  uint64_t flows_undelivered = 0;      // a worker's learn ring was full
  uint64_t dumps_sent = 0;             // peers' dump requests answered
  uint64_t journal_flows = 0;          // flows the journal holds (a gauge)
  uint64_t journal_full = 0;           // flows not kept: the journal was full
  // Per peer, in --flow_sync_peers order: what came from it.
  struct Peer {
    std::string address;
    uint64_t datagrams = 0;           // authentic and fresh, taken
    uint64_t flows_learned = 0;       // handed to the workers
    uint64_t datagrams_rejected = 0;  // from its address: without its tag, malformed, replayed or stale
    uint64_t flows_refused = 0;       // over its budget, or sessions on an SNAT address not its own
    int64_t last_heard_unix_ms = 0;   // its last datagram taken; 0: never
    int64_t delay_us = 0;             // of that datagram: this node's clock minus the peer's stamp
  };
  std::vector<Peer> peer_stats;
};

// One of the node's ports, with its own counters (the NIC's or the PMD's).
struct PortView {
  std::string name;  // as lbd's flags name it: a PCI address, net_..., af_packet:IFACE, the TAP
  std::string role;  // "wire" (the node's uplink) or "exception" (the TAP to the kernel)
  std::string driver;
  bool link_up = false;
  dataplane::PortCounters counters;
};

struct FlowLocation {
  uint32_t worker = 0;
  dataplane::FlowAnswer answer;
};

class DataplaneProbe {
 public:
  virtual ~DataplaneProbe() = default;
  virtual std::vector<WorkerView> Workers() const = 0;
  // Empty when healthy: links up and every worker alive.
  virtual std::vector<std::string> HealthProblems() const = 0;
  virtual bool LinksUp() const = 0;
  virtual uint32_t WorkersAlive() const = 0;
  // The worker whose flow table holds `key`, if any.
  virtual std::optional<FlowLocation> FindFlow(const FlowKey& key) = 0;
  // Flow sync's counters; nullopt when the node has no flow-sync peers.
  virtual std::optional<FlowSyncView> FlowSync() const { return std::nullopt; }
  // The ports and their own counters.
  virtual std::vector<PortView> Ports() const { return {}; }
};

}  // namespace lb::control
