// ControlCore: the one API over lbd's configuration, stats and health. The gRPC service
// translates requests into these calls (and so do lbctl and the Kubernetes watcher,
// through gRPC); nothing else changes the dataplane's tables.
//
// It holds the desired services, and for every change builds a complete snapshot and
// publishes it to the workers (SnapshotStore). A change that fails validation or the
// build changes nothing. Thread model: any thread; every method is serialised by one
// mutex, which also makes it the single "control thread" of the SnapshotStore.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "control/dataplane_probe.h"
#include "dataplane/config.h"
#include "dataplane/snapshot.h"
#include "dataplane/snapshot_store.h"

namespace lb::control {

// What every configuration of this node shares: fixed by lbd's flags, except the next
// hop, which neighbour resolution may change.
struct NodeSettings {
  dataplane::EncapConfig encap;
  dataplane::NatConfig nat;
  dataplane::NextHop next_hop;
  absl::flat_hash_map<dataplane::IpAddress, dataplane::MacAddress> neighbors;  // on-link backends
  uint16_t mtu = 1500;
  uint32_t icmp_too_big_per_second = 100;
  dataplane::FlowTimeouts timeouts;
  dataplane::Limits limits;
};

// A service's identity: its frontend.
struct ServiceId {
  dataplane::IpAddress vip;
  uint8_t protocol = 0;
  uint16_t port = 0;
  auto operator<=>(const ServiceId&) const = default;
  std::string ToString() const;  // "10.1.0.10:53/udp", "[2001:db8::1]:80/tcp", ".../tcp (all ports)"
};

struct Service {
  uint64_t id = 0;  // assigned on creation, stable while the service exists
  dataplane::ServiceConfig config;
};

struct ApplyResult {
  uint64_t generation = 0;
  uint32_t created = 0, updated = 0, deleted = 0, unchanged = 0;
};

struct BackendUpdate {
  std::optional<uint32_t> weight;
  std::optional<dataplane::BackendState> state;
};

struct Stats {
  std::vector<WorkerView> workers;
  std::array<uint64_t, dataplane::kNumEvents> events{};
  std::array<uint64_t, dataplane::kNumDropReasons> drops{};
  uint64_t flows = 0, flow_capacity = 0;
  uint64_t generation = 0;
  struct BackendStats {
    uint32_t maglev_entries = 0;
    std::optional<dataplane::MacAddress> neighbor_mac;  // set: on-link, sent to this MAC
  };
  // Per service, per backend (configuration order).
  std::vector<std::pair<Service, std::vector<BackendStats>>> services;
  struct SnatStats {
    dataplane::IpAddress address;
    uint64_t ports_in_use = 0, ports_total = 0;
  };
  std::vector<SnatStats> snat;  // NAT mode: per SNAT address
  dataplane::MacAddress gateway_mac{};
};

struct Health {
  bool healthy = false;
  std::vector<std::string> problems;
  uint32_t workers = 0, workers_alive = 0;
  bool links_up = false;
  bool drained = false;
  uint64_t generation = 0;
};

struct Explanation {
  bool vip = false;
  std::optional<ServiceId> service;
  std::optional<dataplane::BackendConfig> backend;  // what this node would do
  std::optional<dataplane::BackendConfig> maglev_backend;  // what Maglev alone says
  std::string decision;
  int32_t worker = -1;
};

ServiceId IdOf(const dataplane::ServiceConfig& s);

class ControlCore {
 public:
  // `store` and `probe` outlive the core; `probe` may be null (no stats/health/explain
  // data, as in unit tests of configuration alone).
  ControlCore(NodeSettings settings, dataplane::SnapshotStore* store, DataplaneProbe* probe);

  // Publishes the (empty) initial configuration.
  absl::Status Start();

  absl::StatusOr<Service> CreateService(const dataplane::ServiceConfig& service);
  // Replaces the service's settings; its backends too unless `keep_backends`.
  absl::StatusOr<Service> UpdateService(const dataplane::ServiceConfig& service, bool keep_backends);
  absl::Status DeleteService(const ServiceId& id);
  absl::StatusOr<Service> GetService(const ServiceId& id) const;
  std::vector<Service> ListServices() const;

  absl::StatusOr<Service> SetBackends(const ServiceId& id,
                                      const std::vector<dataplane::BackendConfig>& backends);
  absl::StatusOr<Service> AddBackend(const ServiceId& id, const dataplane::BackendConfig& backend);
  absl::StatusOr<Service> RemoveBackend(const ServiceId& id, const dataplane::IpAddress& address,
                                        uint16_t port);
  absl::StatusOr<Service> UpdateBackend(const ServiceId& id, const dataplane::IpAddress& address,
                                        uint16_t port, const BackendUpdate& update);

  // Replaces every service by `services`, all or nothing. `generation` 0 skips the
  // generation check; otherwise it must not be below the last one applied, and an
  // equal one must come with the same services (a repeat is a no-op).
  absl::StatusOr<ApplyResult> Apply(uint64_t generation,
                                    const std::vector<dataplane::ServiceConfig>& services);

  // Neighbour resolution found a (new) gateway MAC.
  absl::Status SetNextHop(const dataplane::NextHop& next_hop);
  // Neighbour resolution's MACs of the backends on the node's own segments.
  absl::Status SetNeighbors(
      const absl::flat_hash_map<dataplane::IpAddress, dataplane::MacAddress>& neighbors);
  // Every backend address of every service (for neighbour resolution).
  std::vector<dataplane::IpAddress> BackendAddresses() const;

  // The operator drains (or undrains) the node: it reports unhealthy while drained, so
  // that lb-bird-gen withdraws its VIPs; forwarding is not affected.
  void SetDrained(bool drained);

  Stats GetStats() const;
  Health GetHealth() const;
  absl::StatusOr<Explanation> ExplainFlow(const dataplane::FlowKey& key);

  // Frees snapshots no worker can still read. Call periodically.
  void Reclaim();

 private:
  using ServiceMap = std::map<ServiceId, Service>;

  // Builds and publishes the snapshot of `next`; on success it becomes the state.
  absl::Status Commit(ServiceMap next) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<Service*> Find(ServiceMap& map, const ServiceId& id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status ValidateOne(const dataplane::ServiceConfig& s, const std::string& field) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Modifies a copy of service `id` with `edit` and commits it.
  template <typename Edit>
  absl::StatusOr<Service> EditService(const ServiceId& id, Edit edit) ABSL_LOCKS_EXCLUDED(mu_);

  mutable absl::Mutex mu_;
  NodeSettings settings_ ABSL_GUARDED_BY(mu_);
  dataplane::SnapshotStore* const store_;
  DataplaneProbe* const probe_;
  dataplane::SnapshotBuilder builder_ ABSL_GUARDED_BY(mu_);
  ServiceMap services_ ABSL_GUARDED_BY(mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t applied_generation_ ABSL_GUARDED_BY(mu_) = 0;
  bool drained_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace lb::control
