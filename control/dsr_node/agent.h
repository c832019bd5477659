// Agent: lb-dsr-node's loop. Three informers (Services, EndpointSlices, this node's
// Pods) feed LocalDsrPods (local_pods.h); after a quiet debounce window the agent makes
// every pod it names decapsulate exactly its VIPs:
//   - in the pod's network namespace (pod_network.h), a DecapProgram (decap_program.h)
//     with the pod's VIPs on the ingress of the interface holding the pod's IP;
//   - the VIPs as local addresses on the pod's lo (our IFA_PROTO);
//   - rp_filter loosened on that interface if it was strict.
// A pod no longer named is undone (filter and addresses); a pod that is gone took all of
// it with its namespace. Every `resync` the agent verifies what it set (a recreated
// sandbox, a removed filter) and sweeps the namespaces of this node's other pods (by the
// Pods' addresses) for a filter or address of ours that an earlier agent left (it owns
// handle kFilterHandle and IFA_PROTO kAddressProto in its node's pods). Namespaces that
// hold no Pod of this node are never changed. Restarting the agent changes nothing in a
// pod: it finds each pod again and replaces the filter in one step.
//
// While it runs, it renews a Lease ("lb-dsr-node-NODE" in `lease_namespace`) after its
// first complete pass: lb-k8s-watcher sends DSR traffic only to endpoints on nodes whose
// agent holds a live Lease.
//
// Thread model: Run() on one thread (it starts the informers' threads and joins them);
// Healthz() and RenderMetrics() from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "absl/synchronization/mutex.h"
#include "control/dsr_node/decap_program.h"
#include "control/dsr_node/local_pods.h"
#include "control/dsr_node/pod_network.h"
#include "control/k8s/backoff.h"
#include "control/k8s/informer.h"
#include "control/k8s/kube_client.h"

namespace lb::control::dsr_node {

struct AgentOptions {
  LocalPolicy policy;
  uint16_t gue_port = 6080;
  std::string proc_dir = "/proc";
  std::string sysctl_dir = "/proc/sys";
  std::string lease_namespace;  // empty: no Lease
  std::chrono::seconds lease_duration{30};
  std::chrono::milliseconds debounce{100};
  std::chrono::seconds resync{30};
  k8s::InformerOptions informer;
};

class Agent {
 public:
  Agent(k8s::KubeClient* kube, AgentOptions options);

  void Run(const k8s::Stopper& stop);

  // Ready: everything listed and one complete pass done.
  std::pair<bool, std::string> Healthz() const ABSL_LOCKS_EXCLUDED(mu_);
  std::string RenderMetrics() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  // What the agent set up in one pod.
  struct PodState {
    NetnsId netns;
    int ifindex = 0;
    std::shared_ptr<DecapProgram> program;  // shared with the metrics, which read its counters
    PodVips applied;
  };
  // The host's network namespaces and the addresses in each, read once per pass when a
  // pass needs them.
  class NetnsIndex;

  void OnChange();
  // One pass; `verify`: check every configured pod, and sweep for leftovers.
  void Reconcile(bool verify);
  absl::Status Configure(const PodVips& want, NetnsIndex& index, bool verify);
  void Unconfigure(const std::string& pod, NetnsIndex& index);
  // Removes our filter and addresses from the namespaces of this node's pods (those
  // holding one of `local_pod_addresses`) that back no DSR Service now.
  void SweepLeftovers(NetnsIndex& index, const std::set<IpAddress>& local_pod_addresses);
  void RenewLease();

  k8s::KubeClient* const kube_;
  const AgentOptions options_;
  k8s::Informer services_;
  k8s::Informer slices_;
  k8s::Informer pods_;

  std::mutex change_mu_;
  std::condition_variable change_cv_;
  bool dirty_ = false;
  uint64_t changes_ = 0;
  std::chrono::steady_clock::time_point last_change_;

  // Reconcile-thread state.
  k8s::LastGoodSettings last_good_;
  std::map<std::string, PodState> configured_;
  std::map<std::string, std::string> failing_;  // pod -> last error logged
  std::set<std::string> notes_logged_;
  std::atomic<bool> pass_done_{false};  // read by Healthz() too
  std::string lease_version_;           // resourceVersion of our Lease, "" when unknown

  struct Metrics {
    uint64_t passes = 0, pod_errors = 0, leftovers_removed = 0, lease_renewals = 0, lease_errors = 0;
    size_t pods = 0, vips = 0, pods_failing = 0;
    DecapCounters packets_gone{};  // of programs dropped: counters stay monotonic
  };
  mutable absl::Mutex mu_;
  Metrics metrics_ ABSL_GUARDED_BY(mu_);
  // The pods' programs, whose counters /metrics sums when it is read.
  std::vector<std::shared_ptr<const DecapProgram>> programs_ ABSL_GUARDED_BY(mu_);
};

}  // namespace lb::control::dsr_node
