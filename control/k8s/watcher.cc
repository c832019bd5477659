#include "control/k8s/watcher.h"

#include <thread>

#include <glog/logging.h>
#include <grpcpp/grpcpp.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "control/prometheus.h"
#include "control/proto_convert.h"

namespace lb::control::k8s {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

std::string Rfc3339Now() { return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::Now(), absl::UTCTimeZone()); }

// Each object parsed with `parse`, with the object it came from; an object that does not
// parse is logged (bounded), counted in `*invalid`, skipped, and listed in `*failed`.
template <typename T>
std::vector<std::pair<Object, T>> ParseEach(const std::vector<Object>& objects,
                                            absl::StatusOr<T> (*parse)(const nlohmann::json&), uint64_t* invalid,
                                            std::vector<std::pair<Object, absl::Status>>* failed) {
  std::vector<std::pair<Object, T>> parsed;
  for (const Object& o : objects) {
    absl::StatusOr<T> t = parse(*o);
    if (!t.ok()) {
      ++*invalid;
      LOG(WARNING) << "skipped: " << Printable(std::string(t.status().message()), 300);
      failed->emplace_back(o, t.status());
      continue;
    }
    parsed.emplace_back(o, *std::move(t));
  }
  return parsed;
}

}  // namespace

Watcher::Watcher(KubeClient* kube, lb::v1::LoadBalancer::StubInterface* lbd, WatcherOptions options)
    : kube_(kube),
      lbd_(lbd),
      options_(std::move(options)),
      services_(
          kube, "/api/v1/services", [this] { OnChange(); }, options_.informer),
      slices_(
          kube, "/apis/discovery.k8s.io/v1/endpointslices", [this] { OnChange(); }, options_.informer) {
  // A renewal changes nothing by itself (every agent renews every few seconds): the loop
  // looks at the live set once a poll and acts when it changed.
  if (!options_.dsr_lease_namespace.empty()) {
    leases_ = std::make_unique<Informer>(
        kube, absl::StrFormat("/apis/coordination.k8s.io/v1/namespaces/%s/leases", options_.dsr_lease_namespace), [] {},
        options_.informer);
  }
}

std::optional<std::set<std::string>> Watcher::LiveDsrNodesNow() const {
  if (!leases_) return std::nullopt;
  std::vector<KLease> leases;
  for (const Object& o : leases_->Objects()) {
    if (auto l = ParseLease(*o); l.ok()) leases.push_back(*std::move(l));
  }
  return LiveDsrNodes(leases, absl::Now());
}

void Watcher::OnChange() {
  std::lock_guard<std::mutex> lock(change_mu_);
  const auto now = Clock::now();
  if (!dirty_) first_change_ = now;
  last_change_ = now;
  dirty_ = true;
  ++changes_;
  change_cv_.notify_all();
}

void Watcher::Run(const Stopper& stop) {
  std::thread services_thread([&] { services_.Run(stop); });
  std::thread slices_thread([&] { slices_.Run(stop); });
  std::thread leases_thread([&] {
    if (leases_) leases_->Run(stop);
  });
  // The loop's waits end at the next lbd poll at the latest, so it sees a stop within
  // options_.lbd_poll.
  Backoff apply_backoff(std::chrono::milliseconds(200), std::chrono::seconds(10));
  auto next_poll = Clock::now();
  auto next_resync = Clock::now() + options_.resync;
  auto next_apply_retry = Clock::now();
  while (!stop.stopped()) {
    const bool synced = services_.synced() && slices_.synced() && (!leases_ || leases_->synced());
    bool changed = false;
    {
      std::unique_lock<std::mutex> lock(change_mu_);
      auto deadline = std::min(next_poll, next_resync);
      if (dirty_) deadline = std::min({deadline, last_change_ + options_.debounce, first_change_ + options_.max_delay});
      if (synced && apply_pending_) deadline = std::min(deadline, next_apply_retry);
      const uint64_t seen = changes_;
      change_cv_.wait_until(lock, deadline, [&] { return stop.stopped() || changes_ != seen; });
      if (stop.stopped()) break;
      const auto now = Clock::now();
      if (dirty_ && (now >= last_change_ + options_.debounce || now >= first_change_ + options_.max_delay)) {
        dirty_ = false;
        changed = true;
      }
    }
    const auto now = Clock::now();
    if (now >= next_poll) {
      next_poll = now + options_.lbd_poll;
      if (synced && LiveDsrNodesNow() != dsr_nodes_) changed = true;  // an agent came or its Lease ran out
      const auto generation = PollLbd();
      if (generation && *generation != applied_generation_ && !apply_pending_) {
        LOG(WARNING) << "lbd holds generation " << *generation << ", the watcher applied " << applied_generation_
                     << " (lbd restarted, or another client applied): applying the cluster's state again";
        apply_pending_ = true;
        next_apply_retry = now;
        absl::MutexLock lock(&mu_);
        ++metrics_.lbd_restarts_seen;
      }
    }
    bool resync = false;
    if (now >= next_resync) {
      next_resync = now + options_.resync;
      status_attempted_.clear();
      resync = true;
    }
    const bool retry_apply = apply_pending_ && now >= next_apply_retry;
    if (!synced || !(changed || resync || retry_apply)) continue;  // nothing is pushed before both are listed
    try {
      Reconcile(resync || apply_pending_);
    } catch (const std::exception& e) {
      // The net under every read of the API server's objects: a value of a type nobody
      // expected costs this round (retried), never the process.
      LOG(ERROR) << "reconcile failed on an object of an unexpected shape: " << e.what();
      apply_pending_ = true;
    }
    if (apply_pending_) {
      next_apply_retry = Clock::now() + apply_backoff.Next();
    } else {
      apply_backoff.Reset();
    }
  }
  services_thread.join();
  slices_thread.join();
  leases_thread.join();
}

std::optional<uint64_t> Watcher::PollLbd() {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(900));
  lb::v1::Health health;
  const grpc::Status s = lbd_->GetHealth(&ctx, {}, &health);
  absl::MutexLock lock(&mu_);
  if (!s.ok()) {
    if (metrics_.lbd_reachable) LOG(WARNING) << "lbd unreachable: " << s.error_message();
    metrics_.lbd_reachable = false;
    return std::nullopt;
  }
  if (!metrics_.lbd_reachable) LOG(INFO) << "lbd reachable, at generation " << health.generation();
  metrics_.lbd_reachable = true;
  return health.generation();
}

void Watcher::Reconcile(bool force_apply) {
  std::map<std::string, Object> raw_services;
  std::vector<KService> services;
  std::vector<KEndpointSlice> slices;
  uint64_t invalid = 0;
  std::vector<std::pair<Object, absl::Status>> bad_services, bad_slices;
  for (auto& [o, s] : ParseEach(services_.Objects(), ParseService, &invalid, &bad_services)) {
    raw_services[s.Key()] = o;
    services.push_back(std::move(s));
  }
  for (auto& [o, e] : ParseEach(slices_.Objects(), ParseEndpointSlice, &invalid, &bad_slices)) {
    slices.push_back(std::move(e));
  }
  MappingOptions mapping = options_.mapping;
  mapping.dsr_nodes = dsr_nodes_ = LiveDsrNodesNow();
  DesiredState desired = MapClusterState(services, slices, mapping, &last_good_);
  // A Service the watcher cannot read gets an Event saying so, when it names itself well
  // enough to be the Event's object (a slice's problem is logged only).
  std::vector<KService> unreadable;
  for (const auto& [o, status] : bad_services) {
    const nlohmann::json& meta = o->is_object() && o->contains("metadata") ? (*o)["metadata"] : nlohmann::json();
    KService identity;  // what its metadata says, for the Event
    identity.ns = StringField(meta, "namespace");
    identity.name = StringField(meta, "name");
    identity.uid = StringField(meta, "uid");
    identity.resource_version = StringField(meta, "resourceVersion");
    if (identity.ns.empty() || identity.name.empty()) continue;
    desired.problems.push_back(
        {identity.Key(), "InvalidObject", "not served: " + Printable(std::string(status.message()), 200)});
    unreadable.push_back(std::move(identity));
  }
  std::set<std::string> notes(desired.notes.begin(), desired.notes.end());
  for (const std::string& note : notes) {
    if (!notes_logged_.contains(note)) LOG(INFO) << note;
  }
  notes_logged_ = std::move(notes);

  WriteStatuses(desired.status_updates, raw_services);
  const bool applied = Apply(desired, force_apply);
  std::map<std::string, KService> by_key;
  for (KService& s : services) by_key.emplace(s.Key(), std::move(s));
  for (KService& s : unreadable) by_key.emplace(s.Key(), std::move(s));
  ReportProblems(desired.problems, by_key);

  absl::MutexLock lock(&mu_);
  ++metrics_.reconciles;
  metrics_.invalid_objects = invalid;
  metrics_.problems = desired.problems.size();
  metrics_.pool_used = desired.pool_addresses_used;
  if (applied) {
    metrics_.services = desired.services.size() - refused_.size();
    metrics_.backends = 0;
    for (const auto& s : desired.services) metrics_.backends += s.backends.size();
  }
}

bool Watcher::Apply(DesiredState& desired, bool force) {
  if (!force && !apply_pending_ && desired.services == applied_request_) {
    // Unchanged: what lbd refused last time it still refuses.
    desired.problems.insert(desired.problems.end(), refused_.begin(), refused_.end());
    return true;
  }
  const std::vector<ServiceConfig> request_services = desired.services;
  std::vector<Problem> refused;
  apply_pending_ = true;
  const auto lbd_generation = PollLbd();
  if (!lbd_generation) {
    absl::MutexLock lock(&mu_);
    ++metrics_.apply_errors;
    metrics_.last_apply_ok = false;
    return false;
  }
  // lbd refuses a service only for a reason of its own (a limit, an address family it
  // has no encapsulation source for). The request is partial: lbd refuses each such
  // service alone and applies the rest, so one bad Service cannot hold back the others.
  const uint64_t generation = std::max(applied_generation_, *lbd_generation) + 1;
  lb::v1::ApplyRequest request;
  request.set_generation(generation);
  request.set_partial(true);
  for (const auto& s : desired.services) *request.add_services() = ToProto(Service{.config = s});
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  lb::v1::ApplyResponse response;
  const grpc::Status s = lbd_->Apply(&ctx, request, &response);
  if (!s.ok()) {
    LOG(WARNING) << "lbd Apply failed: " << s.error_message();
    absl::MutexLock lock(&mu_);
    ++metrics_.apply_errors;
    metrics_.last_apply_ok = false;
    return false;
  }
  for (const lb::v1::ServiceResult& r : response.results()) {
    if (r.outcome() != lb::v1::REFUSED || r.index() < 0 || size_t(r.index()) >= desired.owners.size()) continue;
    // "services[3].table_size" -> "table_size: ..."; the Service's own fields only.
    const std::string& field = r.field();
    const size_t dot = field.find("].");
    const std::string what = dot == std::string::npos ? r.reason() : field.substr(dot + 2) + ": " + r.reason();
    refused.push_back({desired.owners[size_t(r.index())], "RejectedByLbd", what});
    desired.problems.push_back(refused.back());
  }
  if (response.created() + response.updated() + response.deleted() + response.refused() > 0 ||
      applied_generation_ == 0) {
    LOG(INFO) << absl::StrFormat("applied generation %d: %d services (%d created, %d updated, %d deleted, %d refused)",
                                 response.generation(), desired.services.size() - response.refused(),
                                 response.created(), response.updated(), response.deleted(), response.refused());
  }
  applied_request_ = request_services;
  refused_ = std::move(refused);
  applied_generation_ = response.generation();
  apply_pending_ = false;
  absl::MutexLock lock(&mu_);
  ++metrics_.applies;
  metrics_.last_apply_ok = true;
  metrics_.last_apply_seconds = absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch());
  return true;
}

void Watcher::WriteStatuses(const std::vector<StatusUpdate>& updates, const std::map<std::string, Object>& raw) {
  for (const StatusUpdate& u : updates) {
    const auto it = raw.find(u.service);
    if (it == raw.end()) continue;
    json object = *it->second;
    if (!object.is_object() || !object["metadata"].is_object() ||
        (object.contains("status") && !object["status"].is_object())) {
      LOG(WARNING) << "Service " << u.service << ": status not written: the object has an unexpected shape";
      continue;
    }
    json ingress = json::array();
    std::vector<std::string> ips;
    for (const auto& a : u.ingress) {
      ingress.push_back(json::object({{"ip", a.ToString()}}));
      ips.push_back(a.ToString());
    }
    // One attempt per version of the Service: a refusal is retried when it changes (or at resync).
    const json& version = object["metadata"]["resourceVersion"];
    const std::string attempt =
        (version.is_string() ? version.get<std::string>() : std::string()) + " " + absl::StrJoin(ips, ",");
    if (status_attempted_[u.service] == attempt) continue;
    status_attempted_[u.service] = attempt;
    object["status"]["loadBalancer"]["ingress"] = ingress;
    object["kind"] = "Service";  // list items come without them
    object["apiVersion"] = "v1";
    // The key is "namespace/name", from the parsed Service (both checked strings).
    const std::string ns = u.service.substr(0, u.service.find('/'));
    const std::string name = u.service.substr(u.service.find('/') + 1);
    auto response =
        kube_->Request("PUT", absl::StrFormat("/api/v1/namespaces/%s/services/%s/status", ns, name), object.dump());
    absl::MutexLock lock(&mu_);
    if (response.ok() && response->status == 200) {
      LOG(INFO) << "Service " << u.service << ": status.loadBalancer.ingress = " << absl::StrJoin(ips, ", ");
      ++metrics_.status_updates;
    } else {
      ++metrics_.status_errors;
      LOG(WARNING) << "Service " << u.service << ": status update failed: "
                   << (response.ok() ? DescribeFailure(*response) : std::string(response.status().message()))
                   << (response.ok() && response->status == 409 ? " (retried when the Service's update arrives)" : "");
    }
  }
}

void Watcher::ReportProblems(const std::vector<Problem>& problems, const std::map<std::string, KService>& services) {
  std::set<Problem> current;
  for (const Problem& p : problems) {
    current.insert(p);
    if (reported_.contains(p)) continue;
    const auto it = services.find(p.service);
    if (it == services.end()) continue;
    const KService& s = it->second;
    LOG(WARNING) << "Service " << p.service << ": " << p.reason << ": " << p.message;
    const std::string now = Rfc3339Now();
    const json event = {
        {"apiVersion", "v1"},
        {"kind", "Event"},
        {"metadata", {{"generateName", s.name + "."}, {"namespace", s.ns}}},
        {"involvedObject",
         {{"apiVersion", "v1"},
          {"kind", "Service"},
          {"namespace", s.ns},
          {"name", s.name},
          {"uid", s.uid},
          {"resourceVersion", s.resource_version}}},
        {"reason", p.reason},
        {"message", p.message},
        {"type", "Warning"},
        {"source", {{"component", "lb-k8s-watcher"}, {"host", options_.node_name}}},
        {"reportingComponent", "lb-k8s-watcher"},
        {"reportingInstance", options_.node_name},
        {"firstTimestamp", now},
        {"lastTimestamp", now},
        {"count", 1},
    };
    auto response = kube_->Request("POST", absl::StrFormat("/api/v1/namespaces/%s/events", s.ns), event.dump());
    absl::MutexLock lock(&mu_);
    if (response.ok() && response->status == 201) {
      ++metrics_.events;
    } else {
      ++metrics_.event_errors;
      current.erase(p);  // reported again next time
      LOG(WARNING) << "cannot post an Event for " << p.service << ": "
                   << (response.ok() ? DescribeFailure(*response) : std::string(response.status().message()));
    }
  }
  reported_ = std::move(current);
}

std::pair<bool, std::string> Watcher::Healthz() const {
  std::vector<std::string> problems;
  if (!services_.synced()) problems.push_back("Services not listed yet");
  if (!slices_.synced()) problems.push_back("EndpointSlices not listed yet");
  if (leases_ && !leases_->synced()) problems.push_back("lb-dsr-node Leases not listed yet");
  absl::MutexLock lock(&mu_);
  if (!metrics_.lbd_reachable) problems.push_back("lbd unreachable");
  if (!metrics_.last_apply_ok) problems.push_back("the last Apply to lbd did not succeed (or none yet)");
  if (problems.empty()) return {true, "ok\n"};
  return {false, absl::StrJoin(problems, "\n") + "\n"};
}

std::string Watcher::RenderMetrics() const {
  std::string out;
  auto metric = [&](const char* name, const char* type, const char* help, auto value) {
    AppendMetricHeader(out, name, type, help);
    out += absl::StrFormat("%s %s\n", name, absl::StrCat(value));
  };
  auto informer = [&](const char* name, const char* help, auto field, const char* type = "counter") {
    AppendMetricHeader(out, name, type, help);
    for (const Informer* i : {&services_, &slices_}) {
      out += absl::StrFormat("%s{resource=\"%s\"} %d\n", name, i->path(), field(i->stats()));
    }
  };
  informer("lb_watcher_lists_total", "Full lists of the resource.", [](const InformerStats& s) { return s.lists; });
  informer("lb_watcher_watches_total", "Watch requests started.", [](const InformerStats& s) { return s.watches; });
  informer("lb_watcher_relists_gone_total", "Lists forced by 410 Gone.",
           [](const InformerStats& s) { return s.relists_gone; });
  informer("lb_watcher_api_errors_total", "Failed lists and watches.", [](const InformerStats& s) { return s.errors; });
  informer("lb_watcher_watch_events_total", "ADDED/MODIFIED/DELETED events.",
           [](const InformerStats& s) { return s.events; });
  informer("lb_watcher_bookmarks_total", "BOOKMARK events.", [](const InformerStats& s) { return s.bookmarks; });
  informer(
      "lb_watcher_objects", "Objects in the local copy.", [](const InformerStats& s) { return s.objects; }, "gauge");
  absl::MutexLock lock(&mu_);
  const Metrics& m = metrics_;
  metric("lb_watcher_reconciles_total", "counter", "Reconcile passes.", m.reconciles);
  metric("lb_watcher_applies_total", "counter", "Successful Apply calls to lbd.", m.applies);
  metric("lb_watcher_apply_errors_total", "counter", "Failed Apply calls to lbd.", m.apply_errors);
  metric("lb_watcher_last_apply_timestamp_seconds", "gauge", "Time of the last successful Apply.",
         absl::StrFormat("%.3f", m.last_apply_seconds));
  metric("lb_watcher_lbd_reachable", "gauge", "1 when lbd answered the last health check.", int(m.lbd_reachable));
  metric("lb_watcher_lbd_generation_mismatches_total", "counter",
         "Times lbd held another generation than the one applied (lbd restarts).", m.lbd_restarts_seen);
  metric("lb_watcher_services", "gauge", "lbd services applied.", m.services);
  metric("lb_watcher_backends", "gauge", "Backends over all applied services.", m.backends);
  metric("lb_watcher_pool_addresses_used", "gauge", "VIP pool addresses held by LoadBalancer Services.", m.pool_used);
  metric("lb_watcher_problems", "gauge", "Current problems reported as Events.", m.problems);
  metric("lb_watcher_events_total", "counter", "Events posted.", m.events);
  metric("lb_watcher_event_errors_total", "counter", "Events that could not be posted.", m.event_errors);
  metric("lb_watcher_status_updates_total", "counter", "Service status writes.", m.status_updates);
  metric("lb_watcher_status_errors_total", "counter", "Failed Service status writes.", m.status_errors);
  metric("lb_watcher_invalid_objects", "gauge", "Objects skipped as malformed.", m.invalid_objects);
  return out;
}

}  // namespace lb::control::k8s
