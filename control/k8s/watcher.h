// Watcher: keeps lbd's services equal to the cluster's. Two informers (Services,
// EndpointSlices) feed a reconcile loop that, after a quiet debounce window, maps the
// cluster state (mapping.h), writes allocated VIPs to the Services' status, pushes the
// complete state to lbd with Apply under a new generation, and reports each problem once
// as a Warning Event on its Service. It polls lbd's health: when lbd's generation is not
// the one it applied (lbd restarted, or someone else applied), it applies again.
//
// Thread model: Run() on one thread (it starts the informers' threads and joins them);
// Healthz() and RenderMetrics() from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "control/k8s/backoff.h"
#include "control/k8s/informer.h"
#include "control/k8s/kube_client.h"
#include "control/k8s/mapping.h"
#include "lb/v1/lb.grpc.pb.h"

namespace lb::control::k8s {

struct WatcherOptions {
  MappingOptions mapping;
  InformerOptions informer;
  std::chrono::milliseconds debounce{100};                    // quiet time after a change before acting
  std::chrono::milliseconds max_delay{1000};                  // act at the latest this long after a change
  std::chrono::milliseconds lbd_poll{1000};                   // lbd health / generation check
  std::chrono::milliseconds resync{std::chrono::minutes(5)};  // apply everything again regardless
  std::string node_name;                                      // the Events' source host
  // Where lb-dsr-node's Leases are: DSR endpoints only on nodes holding a live one
  // (MappingOptions::dsr_nodes). Empty: not checked.
  std::string dsr_lease_namespace;
};

class Watcher {
 public:
  Watcher(KubeClient* kube, lb::v1::LoadBalancer::StubInterface* lbd, WatcherOptions options);

  void Run(const Stopper& stop);

  // Ready: both resources listed, lbd reachable and holding what was applied last.
  std::pair<bool, std::string> Healthz() const ABSL_LOCKS_EXCLUDED(mu_);
  std::string RenderMetrics() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Metrics {
    uint64_t reconciles = 0, applies = 0, apply_errors = 0, status_updates = 0, status_errors = 0;
    uint64_t events = 0, event_errors = 0, invalid_objects = 0, lbd_restarts_seen = 0;
    uint64_t services = 0, backends = 0, pool_used = 0, problems = 0;
    bool lbd_reachable = false, last_apply_ok = false;
    double last_apply_seconds = 0;
  };

  void OnChange();
  // One pass: map, write statuses, apply, report. Reconcile-thread only.
  void Reconcile(bool force_apply);
  // Pushes `desired` to lbd; drops services lbd refuses (reported as problems).
  bool Apply(DesiredState& desired, bool force);
  void WriteStatuses(const std::vector<StatusUpdate>& updates, const std::map<std::string, Object>& raw);
  void ReportProblems(const std::vector<Problem>& problems, const std::map<std::string, KService>& services);
  // The nodes with a live lb-dsr-node Lease now; nullopt when not checked.
  std::optional<std::set<std::string>> LiveDsrNodesNow() const;
  // lbd's generation, or nullopt when unreachable.
  std::optional<uint64_t> PollLbd();

  KubeClient* const kube_;
  lb::v1::LoadBalancer::StubInterface* const lbd_;
  const WatcherOptions options_;
  Informer services_;
  Informer slices_;
  std::unique_ptr<Informer> leases_;  // lb-dsr-node's, when checked

  // Change notifications from the informers' threads.
  std::mutex change_mu_;
  std::condition_variable change_cv_;
  bool dirty_ = false;
  uint64_t changes_ = 0;  // counts notifications, so a waiter sees each
  std::chrono::steady_clock::time_point first_change_, last_change_;

  // Reconcile-thread state.
  LastGoodSettings last_good_;
  std::vector<ServiceConfig> applied_request_;  // the desired services last applied
  std::vector<Problem> refused_;                // what lbd refused of them
  uint64_t applied_generation_ = 0;
  std::optional<std::set<std::string>> dsr_nodes_;  // as the last pass mapped them
  bool apply_pending_ = true;
  std::set<Problem> reported_;
  std::set<std::string> notes_logged_;
  std::map<std::string, std::string> status_attempted_;  // Service key -> resourceVersion + ingress

  mutable absl::Mutex mu_;
  Metrics metrics_ ABSL_GUARDED_BY(mu_);
};

}  // namespace lb::control::k8s
