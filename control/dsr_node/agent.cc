#include "control/dsr_node/agent.h"

#include <net/if.h>

#include <algorithm>
#include <set>
#include <thread>

#include <glog/logging.h>
#include <nlohmann/json.hpp>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "control/k8s/objects.h"
#include "control/prometheus.h"

namespace lb::control::dsr_node {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

namespace {

template <typename T, typename Parse>
std::vector<T> ParseAll(const k8s::Informer& informer, Parse parse) {
  std::vector<T> out;
  for (const k8s::Object& o : informer.Objects()) {
    if (auto parsed = parse(*o); parsed.ok()) out.push_back(*std::move(parsed));
  }
  return out;
}

std::string PodsPath(const std::string& node) {
  return "/api/v1/pods?fieldSelector=" + k8s::QueryEscape("spec.nodeName=" + node);
}

}  // namespace

class Agent::NetnsIndex {
 public:
  struct Entry {
    NetnsRef ref;
    std::vector<InterfaceAddress> addresses;
  };

  explicit NetnsIndex(const std::string& proc_dir) : proc_dir_(proc_dir) {}

  const std::vector<Entry>& entries() {
    if (scanned_) return entries_;
    scanned_ = true;
    for (NetnsRef& ref : ListNetns(proc_dir_)) {
      Entry entry{std::move(ref), {}};
      const absl::Status read = RunInNetns(entry.ref, [&] {
        auto addresses = ListAddresses();
        if (!addresses.ok()) return addresses.status();
        entry.addresses = *std::move(addresses);
        return absl::OkStatus();
      });
      if (read.ok()) entries_.push_back(std::move(entry));  // else it ended meanwhile, or is not ours to enter
    }
    return entries_;
  }

  // The namespace with `address` on an interface other than lo, and that interface.
  std::pair<const Entry*, int> Holding(const IpAddress& address) {
    for (const Entry& e : entries()) {
      for (const InterfaceAddress& a : e.addresses) {
        if (a.address == address && a.ifindex != kLoopbackIfindex) return {&e, a.ifindex};
      }
    }
    return {nullptr, 0};
  }

  const Entry* Find(const NetnsId& id) {
    for (const Entry& e : entries()) {
      if (e.ref.id == id) return &e;
    }
    return nullptr;
  }

 private:
  const std::string proc_dir_;
  bool scanned_ = false;
  std::vector<Entry> entries_;
};

Agent::Agent(k8s::KubeClient* kube, AgentOptions options)
    : kube_(kube),
      options_(std::move(options)),
      services_(
          kube, "/api/v1/services", [this] { OnChange(); }, options_.informer),
      slices_(
          kube, "/apis/discovery.k8s.io/v1/endpointslices", [this] { OnChange(); }, options_.informer),
      pods_(
          kube, PodsPath(options_.policy.node_name), [this] { OnChange(); }, options_.informer) {}

void Agent::OnChange() {
  std::lock_guard<std::mutex> lock(change_mu_);
  dirty_ = true;
  ++changes_;
  last_change_ = Clock::now();
  change_cv_.notify_all();
}

void Agent::Run(const k8s::Stopper& stop) {
  std::thread services_thread([&] { services_.Run(stop); });
  std::thread slices_thread([&] { slices_.Run(stop); });
  std::thread pods_thread([&] { pods_.Run(stop); });
  constexpr auto kRetry = std::chrono::seconds(1);  // a pod that failed, e.g. not started yet
  const auto lease_every = std::max<Clock::duration>(options_.lease_duration / 3, std::chrono::seconds(1));
  auto next_resync = Clock::now() + options_.resync;
  auto next_lease = Clock::now();
  auto next_retry = Clock::now();
  while (!stop.stopped()) {
    const bool synced = services_.synced() && slices_.synced() && pods_.synced();
    bool changed = false;
    {
      std::unique_lock<std::mutex> lock(change_mu_);
      auto deadline = std::min(next_resync, Clock::now() + std::chrono::seconds(1));  // sees a stop within 1 s
      if (dirty_) deadline = std::min(deadline, last_change_ + options_.debounce);
      if (!failing_.empty()) deadline = std::min(deadline, next_retry);
      if (pass_done_ && !options_.lease_namespace.empty()) deadline = std::min(deadline, next_lease);
      const uint64_t seen = changes_;
      change_cv_.wait_until(lock, deadline, [&] { return stop.stopped() || changes_ != seen; });
      if (stop.stopped()) break;
      if (dirty_ && Clock::now() >= last_change_ + options_.debounce) {
        dirty_ = false;
        changed = true;
      }
    }
    const auto now = Clock::now();
    const bool resync = now >= next_resync;
    if (resync) next_resync = now + options_.resync;
    const bool retry = !failing_.empty() && now >= next_retry;
    if (synced && (changed || resync || retry || !pass_done_)) {
      try {
        Reconcile(resync || !pass_done_);  // the first pass also finds what an earlier agent left
      } catch (const std::exception& e) {
        LOG(ERROR) << "pass failed on an object of an unexpected shape: " << e.what();
      }
      next_retry = Clock::now() + kRetry;
    }
    if (pass_done_ && !options_.lease_namespace.empty() && Clock::now() >= next_lease) {
      RenewLease();
      next_lease = Clock::now() + lease_every;
    }
  }
  services_thread.join();
  slices_thread.join();
  pods_thread.join();
}

void Agent::Reconcile(bool verify) {
  const auto services = ParseAll<k8s::KService>(services_, k8s::ParseService);
  const auto slices = ParseAll<k8s::KEndpointSlice>(slices_, k8s::ParseEndpointSlice);
  const auto pods = ParseAll<k8s::KPod>(pods_, k8s::ParsePod);
  const LocalPods want = LocalDsrPods(services, slices, pods, options_.policy, &last_good_);
  for (const std::string& note : want.notes) {
    if (notes_logged_.insert(note).second) LOG(INFO) << note;
  }

  NetnsIndex index(options_.proc_dir);
  std::vector<std::string> gone;
  for (const auto& [pod, state] : configured_) {
    if (!want.pods.contains(pod)) gone.push_back(pod);
  }
  for (const std::string& pod : gone) Unconfigure(pod, index);

  uint64_t errors = 0;
  for (const auto& [pod, vips] : want.pods) {
    const absl::Status s = Configure(vips, index, verify);
    if (s.ok()) {
      if (failing_.erase(pod) > 0) LOG(INFO) << pod << ": decapsulating " << vips.vips.size() << " VIP(s) now";
      continue;
    }
    ++errors;
    auto [it, fresh] = failing_.try_emplace(pod, std::string(s.message()));
    if (fresh || it->second != s.message()) LOG(WARNING) << pod << ": " << s.message() << "; trying again";
    it->second = std::string(s.message());
  }
  std::erase_if(failing_, [&](const auto& entry) { return !want.pods.contains(entry.first); });
  if (verify) {
    std::set<IpAddress> local_pod_addresses;  // this node's pods, as the API server says
    for (const k8s::KPod& p : pods) {
      if (p.node_name != options_.policy.node_name || p.host_network) continue;
      for (const std::string& ip : p.pod_ips) {
        if (auto a = IpAddress::Parse(ip)) local_pod_addresses.insert(*a);
      }
    }
    SweepLeftovers(index, local_pod_addresses);
  }
  pass_done_ = true;

  absl::MutexLock lock(&mu_);
  ++metrics_.passes;
  metrics_.pod_errors += errors;
  metrics_.pods = configured_.size();
  metrics_.pods_failing = failing_.size();
  metrics_.vips = 0;
  programs_.clear();
  for (const auto& [pod, state] : configured_) {
    metrics_.vips += state.applied.vips.size();
    programs_.push_back(state.program);
  }
}

absl::Status Agent::Configure(const PodVips& want, NetnsIndex& index, bool verify) {
  auto existing = configured_.find(want.pod);
  if (existing != configured_.end() && existing->second.applied == want && !verify) return absl::OkStatus();
  // Not a structured binding: the lambda below captures them (clang 14 cannot).
  const auto holding = index.Holding(want.addresses.front());
  const NetnsIndex::Entry* ns = holding.first;
  const int ifindex = holding.second;
  if (ns == nullptr) {
    return absl::NotFoundError(
        absl::StrFormat("no network namespace on this node holds %s (the pod's sandbox is "
                        "not up yet, or the agent lacks hostPID)",
                        want.addresses.front().ToString()));
  }
  std::shared_ptr<DecapProgram> loaded;
  DecapProgram* program = existing != configured_.end() ? existing->second.program.get() : nullptr;
  if (program == nullptr) {
    auto fresh = DecapProgram::Load(options_.gue_port);
    if (!fresh.ok()) return fresh.status();
    loaded = *std::move(fresh);
    program = loaded.get();
  }
  const absl::Status applied =
      RunInNetns(ns->ref, [&] { return Decapsulate(*program, ifindex, want.vips, options_.sysctl_dir); });
  if (!applied.ok()) return applied;
  PodState& state = configured_[want.pod];
  if (state.netns != ns->ref.id && existing != configured_.end())
    LOG(INFO) << want.pod << ": its network namespace changed (sandbox recreated); configured the new one";
  if (loaded) state.program = std::move(loaded);
  if (existing == configured_.end() || state.applied.vips != want.vips) {
    std::vector<std::string> texts;
    for (const IpAddress& v : want.vips) texts.push_back(v.ToString());
    LOG(INFO) << want.pod << " (" << want.addresses.front().ToString() << ", ifindex " << ifindex << " in "
              << ns->ref.id.ToString() << "): decapsulates " << absl::StrJoin(texts, ", ");
  }
  state.netns = ns->ref.id;
  state.ifindex = ifindex;
  state.applied = want;
  return absl::OkStatus();
}

void Agent::Unconfigure(const std::string& pod, NetnsIndex& index) {
  auto it = configured_.find(pod);
  PodState& state = it->second;
  if (const NetnsIndex::Entry* ns = index.Find(state.netns)) {
    const absl::Status s =
        RunInNetns(ns->ref, [&] { return StopDecapsulating(state.ifindex, state.program->prog_id()); });
    LOG_IF(WARNING, !s.ok()) << pod << ": undoing its decapsulation: " << s.message();
    LOG_IF(INFO, s.ok()) << pod << ": no longer backs a DSR Service here; its filter and VIPs are removed";
  } else {
    LOG(INFO) << pod << ": gone, and its network namespace with it";
  }
  {
    absl::MutexLock lock(&mu_);
    const DecapCounters c = state.program->Counters();
    for (size_t i = 0; i < c.size(); ++i) metrics_.packets_gone[i] += c[i];
  }
  configured_.erase(it);
}

void Agent::SweepLeftovers(NetnsIndex& index, const std::set<IpAddress>& local_pod_addresses) {
  std::set<NetnsId> owned;
  for (const auto& [pod, state] : configured_) owned.insert(state.netns);
  uint64_t removed = 0;
  for (const NetnsIndex::Entry& e : index.entries()) {
    if (owned.contains(e.ref.id)) continue;
    const bool local_pod = std::any_of(e.addresses.begin(), e.addresses.end(), [&](const InterfaceAddress& a) {
      return a.ifindex != kLoopbackIfindex && local_pod_addresses.contains(a.address);
    });
    if (!local_pod) continue;  // only this node's pods are the agent's to touch
    std::set<int> interfaces;
    for (const InterfaceAddress& a : e.addresses) interfaces.insert(a.ifindex);
    const absl::Status s = RunInNetns(e.ref, [&]() -> absl::Status {
      for (int ifindex : interfaces) {
        auto attached = AttachedProgramId(ifindex);
        if (!attached.ok() || *attached == 0) continue;
        if (absl::Status d = DetachIngress(ifindex); !d.ok()) return d;
        ++removed;
      }
      for (const InterfaceAddress& a : e.addresses) {
        if (a.proto != kAddressProto) continue;
        if (absl::Status r = RemoveVipAddress(a.ifindex, a.address); !r.ok()) return r;
        ++removed;
      }
      return absl::OkStatus();
    });
    LOG_IF(WARNING, !s.ok()) << "sweeping " << e.ref.id.ToString() << ": " << s.message();
  }
  if (removed == 0) return;
  LOG(INFO) << "removed " << removed << " filter(s) and VIP address(es) of ours from pods that back no DSR Service";
  absl::MutexLock lock(&mu_);
  metrics_.leftovers_removed += removed;
}

void Agent::RenewLease() {
  const std::string& node = options_.policy.node_name;
  const std::string collection =
      absl::StrFormat("/apis/coordination.k8s.io/v1/namespaces/%s/leases", options_.lease_namespace);
  json lease = {
      {"apiVersion", "coordination.k8s.io/v1"},
      {"kind", "Lease"},
      {"metadata",
       {{"name", k8s::kDsrLeasePrefix + node},
        {"namespace", options_.lease_namespace},
        {"labels", {{"app.kubernetes.io/name", "lb-dsr-node"}}}}},
      {"spec",
       {{"holderIdentity", node},
        {"leaseDurationSeconds", options_.lease_duration.count()},
        {"renewTime", absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", absl::Now(), absl::UTCTimeZone())}}},
  };
  // An unconditional update (no resourceVersion): this agent is the Lease's only writer.
  auto response = kube_->Request("PUT", collection + "/" + k8s::kDsrLeasePrefix + node, lease.dump());
  if (response.ok() && response->status == 404) response = kube_->Request("POST", collection, lease.dump());
  const bool ok = response.ok() && response->status / 100 == 2;
  if (!ok) {
    LOG_EVERY_N(WARNING, 10) << "renewing Lease " << options_.lease_namespace << "/" << k8s::kDsrLeasePrefix << node
                             << ": "
                             << (response.ok() ? k8s::DescribeFailure(*response) : response.status().ToString());
  }
  absl::MutexLock lock(&mu_);
  ++(ok ? metrics_.lease_renewals : metrics_.lease_errors);
}

std::pair<bool, std::string> Agent::Healthz() const {
  if (!services_.synced() || !slices_.synced() || !pods_.synced())
    return {false, "not ready: Services, EndpointSlices and this node's Pods not listed yet\n"};
  if (!pass_done_) return {false, "not ready: the first pass has not finished\n"};
  absl::MutexLock lock(&mu_);
  return {true, absl::StrFormat("ok: %d pod(s) decapsulate %d VIP(s); %d pod(s) failing\n", metrics_.pods,
                                metrics_.vips, metrics_.pods_failing)};
}

std::string Agent::RenderMetrics() const {
  absl::MutexLock lock(&mu_);
  const Metrics& m = metrics_;
  std::string out;
  auto metric = [&](const char* name, const char* type, const char* help, uint64_t value) {
    AppendMetricHeader(out, name, type, help);
    absl::StrAppendFormat(&out, "%s %d\n", name, value);
  };
  metric("lb_dsr_node_pods", "gauge", "Pods decapsulating the VIPs of DSR Services on this node.", m.pods);
  metric("lb_dsr_node_vips", "gauge", "VIPs over those pods (a VIP counts once per pod).", m.vips);
  metric("lb_dsr_node_pods_failing", "gauge", "Pods that should decapsulate but could not be configured yet.",
         m.pods_failing);
  metric("lb_dsr_node_passes_total", "counter", "Reconcile passes.", m.passes);
  metric("lb_dsr_node_pod_errors_total", "counter", "Pod configurations that failed (retried every second).",
         m.pod_errors);
  metric("lb_dsr_node_leftovers_removed_total", "counter",
         "Filters and VIP addresses of ours removed from pods that back no DSR Service.", m.leftovers_removed);
  metric("lb_dsr_node_lease_renewals_total", "counter", "Lease renewals.", m.lease_renewals);
  metric("lb_dsr_node_lease_errors_total", "counter", "Lease renewals that failed.", m.lease_errors);
  AppendMetricHeader(out, "lb_dsr_node_packets_total", "counter",
                     "Packets seen by the pods' decapsulation programs, by what was done with them.");
  DecapCounters packets = m.packets_gone;
  for (const auto& program : programs_) {
    const DecapCounters c = program->Counters();
    for (size_t i = 0; i < c.size(); ++i) packets[i] += c[i];
  }
  for (int i = 0; i < DSR_DECAP_COUNTERS; ++i)
    absl::StrAppendFormat(&out, "lb_dsr_node_packets_total{result=\"%s\"} %d\n", DecapCounterName(i), packets[i]);
  return out;
}

}  // namespace lb::control::dsr_node
