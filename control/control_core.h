// ControlCore: the one API over lbd's configuration, stats and health. The gRPC service
// translates requests into these calls (and so do lbctl and the Kubernetes watcher,
// through gRPC); nothing else changes the dataplane's tables.
//
// It holds the desired services as an immutable State and, for every change, builds the
// next State and snapshot incrementally: only the services a change touches are
// validated and rebuilt (their Maglev tables are shared otherwise), so a change costs what
// it changes. A change that fails validation or the build changes nothing.
//
// Thread model: any thread. Changes are serialised by one mutex (write_mu_), which makes
// the holder the SnapshotStore's single control thread; the long work of a change (a
// large Apply) runs under it. Readers (stats, health, explain, lists) never wait for a
// change: they take the State in force under a second mutex held only to copy a pointer.
// Neither the workers nor the main lcore's exception path ever take either mutex.
#pragma once

#include <cstdint>
#include <atomic>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "control/api_types.h"
#include "control/dataplane_probe.h"
#include "common/config.h"
#include "dataplane/snapshot.h"
#include "dataplane/snapshot_store.h"

namespace lb::control {

// What every configuration of this node shares (NodeConfig: fixed by lbd's
// flags, except the next hop and the neighbours, which neighbour resolution follows), and
// the limits on what the API may ask for.
struct NodeSettings : NodeConfig {
  Limits limits;
  FlowHasher flow_hasher;  // the workers' (ExplainFlow picks as they do)
};

struct ApplyResult {
  uint64_t generation = 0;
  uint32_t created = 0, updated = 0, deleted = 0, unchanged = 0, refused = 0;
  std::vector<ServiceOutcome> outcomes;  // request order, then the deleted services
};

struct BackendUpdate {
  std::optional<uint32_t> weight;
  std::optional<BackendState> state;
};

struct Stats {
  std::vector<WorkerView> workers;
  std::array<uint64_t, dataplane::kNumEvents> events{};
  std::array<uint64_t, dataplane::kNumDropReasons> drops{};
  uint64_t flows = 0, flow_capacity = 0;
  uint64_t generation = 0;
  uint64_t backends = 0;      // in all services
  uint64_t table_memory = 0;  // ServiceMemory summed over the services
  uint64_t table_memory_limit = 0;
  std::optional<FlowSyncView> flow_sync;
  struct BackendStats {
    size_t index = 0;  // in the service's config.backends
    uint32_t maglev_entries = 0;
    std::optional<MacAddress> neighbor_mac;  // set: on-link, sent to this MAC
    dataplane::BackendTraffic traffic;
  };
  struct ServiceStats {
    Service service;
    dataplane::ServiceTraffic traffic;
    std::vector<BackendStats> backends;  // those StatsQuery chose, in configuration order
  };
  std::vector<ServiceStats> services;  // every service
  uint64_t traffic_uncounted = 0;      // services and backends given no traffic counter (ids exhausted)
  struct SnatStats {
    IpAddress address;
    uint64_t ports_in_use = 0, ports_total = 0;
  };
  std::vector<SnatStats> snat;  // NAT mode: per SNAT address
  std::vector<PortView> ports;
  MacAddress gateway_mac{};
};

// Which backends GetStats reports one by one (every service's totals are always there):
// at 4096 services of 100 backends, all of them would be 409,600 rows.
struct StatsQuery {
  std::optional<ServiceId> service;  // set: this service alone, with every backend
  uint32_t top_backends = 0;         // else: the N backends of all services sent the most packets
};

struct Health {
  bool healthy = false;
  std::vector<std::string> problems;
  uint32_t workers = 0, workers_alive = 0;
  bool links_up = false;
  bool drained = false;
  uint64_t generation = 0;
  uint64_t snapshot_generation = 0;  // of the snapshot published last
  bool snapshot_visible = false;     // every worker has moved on to it
  std::string flow_hash;             // FlowHasher::Describe: equal on the nodes of a cluster
};

struct Explanation {
  bool vip = false;
  std::optional<ServiceId> service;
  std::optional<BackendConfig> backend;         // what this node would do
  std::optional<BackendConfig> maglev_backend;  // what Maglev alone says
  std::string decision;
  int32_t worker = -1;
};

class ControlCore {
 public:
  // `store` and `probe` outlive the core; `probe` may be null (no stats/health/explain
  // data, as in unit tests of configuration alone). `traffic` (may be null: no traffic
  // counters) holds the workers' traffic cells; the core gives services and backends
  // their ids in it.
  ControlCore(NodeSettings settings, dataplane::SnapshotStore* store, DataplaneProbe* probe,
              std::shared_ptr<dataplane::TrafficTable> traffic = nullptr);

  // Validates the node settings and publishes the (empty) initial configuration.
  absl::Status Start();

  absl::StatusOr<Service> CreateService(const ServiceConfig& service);
  // Replaces the service's settings; its backends too unless `keep_backends`.
  absl::StatusOr<Service> UpdateService(const ServiceConfig& service, bool keep_backends);
  absl::Status DeleteService(const ServiceId& id);
  absl::StatusOr<Service> GetService(const ServiceId& id) const;
  std::vector<Service> ListServices() const;

  absl::StatusOr<Service> SetBackends(const ServiceId& id, const std::vector<BackendConfig>& backends);
  absl::StatusOr<Service> AddBackend(const ServiceId& id, const BackendConfig& backend);
  absl::StatusOr<Service> RemoveBackend(const ServiceId& id, const IpAddress& address, uint16_t port);
  absl::StatusOr<Service> UpdateBackend(const ServiceId& id, const IpAddress& address, uint16_t port,
                                        const BackendUpdate& update);

  // Replaces every service by `services`. `generation` 0 skips the generation check;
  // otherwise it must not be below the last one applied, and an equal one must come with
  // the same services (a repeat is a no-op).
  //
  // All or nothing unless `partial`: then each service that fails validation or would
  // exceed a limit is refused on its own (and is absent afterwards, as if deleted), the
  // others are applied. Limits are counted in request order, so a caller that lists its
  // oldest services first keeps them when the newest exceed a limit, and every node given
  // the same request accepts the same services.
  absl::StatusOr<ApplyResult> Apply(uint64_t generation, const std::vector<ServiceConfig>& services,
                                    bool partial = false);

  // Neighbour resolution found a (new) gateway MAC. Rebuilds every backend record (not
  // the Maglev tables); a no-op when nothing changed.
  absl::Status SetNextHop(const NextHop& next_hop);
  // The kernel's neighbour table on the exception interface changed: each address with
  // its MAC, or nullopt when it has none any more. Rebuilds only the services with a
  // backend among them; a no-op when nothing changed.
  using NeighborChange = std::pair<IpAddress, std::optional<MacAddress>>;
  absl::Status UpdateNeighbors(const std::vector<NeighborChange>& changes);
  // Backend addresses inside `prefixes` (the node's own segments) that have no neighbour
  // entry yet, at most `limit` of them.
  std::vector<IpAddress> UnresolvedOnLinkBackends(const std::vector<IpPrefix>& prefixes, size_t limit) const;

  // The operator drains (or undrains) the node: it reports unhealthy while drained, so
  // that lb-bird-gen withdraws its VIPs; forwarding is not affected. With a drain file
  // (PersistDrainIn) the drain is recorded there first, and an error leaves it unchanged.
  absl::Status SetDrained(bool drained);
  // Before serving (not thread-safe): the drain lives in file `path` (present: drained),
  // so that it survives a restart of lbd; a drain recorded there applies now.
  absl::Status PersistDrainIn(const std::string& path);
  // Before serving (not thread-safe): the node reports unhealthy until the first Apply,
  // the whole configuration a watcher sends once it has listed the cluster, so that a
  // (re)started node announces nothing before it has something to serve.
  void AwaitFirstApply() { await_apply_ = true; }

  Stats GetStats(const StatsQuery& query = {}) const;
  Health GetHealth() const;
  absl::StatusOr<Explanation> ExplainFlow(const FlowKey& key);

  // Frees snapshots no worker can still read. Call periodically (not from the main
  // lcore's loop: it waits for a change in progress).
  void Reclaim();

 private:
  struct ServiceEntry {
    Service service;
    dataplane::ServiceRecordPtr record;
  };
  // A B-tree: copying one (every change does, to build the next State) allocates a node
  // per few dozen services rather than one per service.
  using ServiceMap = absl::btree_map<ServiceId, std::shared_ptr<const ServiceEntry>>;
  // One version of the configuration. Immutable once published.
  struct State {
    NodeSettings settings;
    ServiceMap services;
    uint64_t applied_generation = 0;
    uint64_t backends = 0;                         // in all services
    uint64_t table_memory = 0;                     // ServiceMemory summed
    void Count(const ServiceConfig& c, int sign);  // adds (+1) or removes (-1) c's share
  };

  std::shared_ptr<const State> Current() const ABSL_LOCKS_EXCLUDED(state_mu_);
  // Assembles and publishes the snapshot of `next`, then makes it the State in force.
  void Commit(std::shared_ptr<State> next) ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  // The entry for `config`, built from `previous` (same key) when given.
  absl::StatusOr<std::shared_ptr<const ServiceEntry>> BuildEntry(uint64_t id, const ServiceConfig& config,
                                                                 const ServiceEntry* previous,
                                                                 const NodeSettings& settings)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  // Rebuilds the records of the services `affected` selects, for `next`'s settings.
  template <typename Affected>
  absl::Status RebuildWhere(State& next, Affected affected) ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  // The one admission check of every write (create, edit, apply): whether `config` may
  // join `next`, which holds the services admitted so far. It must be valid, within the
  // limits, and none of its backends may be a VIP of `vips` (those `next` will hold, its
  // own included): that would loop. `field` names it in the error.
  absl::Status Admit(const State& next, const ServiceConfig& config, const std::string& field,
                     const absl::flat_hash_set<IpAddress>& vips) const;
  // The single-service write path (create and edit): admits `config` into `next` (which
  // lacks it), refuses a new VIP that is a backend of another service, builds its entry
  // (from `previous` when it replaces one) as service `id`, and puts it in `next`.
  absl::StatusOr<Service> Write(State& next, const ServiceConfig& config, const ServiceEntry* previous, uint64_t id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  // GetStats: for each of `entries`, the indexes (in its config.backends) of the
  // backends `query` asks for.
  std::vector<std::vector<size_t>> ChooseBackends(const std::vector<const ServiceEntry*>& entries,
                                                  const StatsQuery& query) const;
  // Modifies a copy of service `id` with `edit` and commits it.
  template <typename Edit>
  absl::StatusOr<Service> EditService(const ServiceId& id, Edit edit) ABSL_LOCKS_EXCLUDED(write_mu_);

  dataplane::SnapshotStore* const store_;
  DataplaneProbe* const probe_;
  const std::shared_ptr<dataplane::TrafficTable> traffic_;

  absl::Mutex write_mu_ ABSL_ACQUIRED_BEFORE(state_mu_);
  dataplane::SnapshotBuilder builder_ ABSL_GUARDED_BY(write_mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(write_mu_) = 1;

  mutable absl::Mutex state_mu_;
  std::shared_ptr<const State> state_ ABSL_GUARDED_BY(state_mu_);
  std::atomic<bool> drained_{false};
  std::string drain_file_;    // set before serving, then read only
  bool await_apply_ = false;  // likewise
  // An Apply has succeeded. Relaxed: a flag read for health, which orders nothing else.
  std::atomic<bool> applied_{false};
};

}  // namespace lb::control
