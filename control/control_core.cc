#include "control/control_core.h"

#include <arpa/inet.h>

#include <algorithm>

#include "absl/strings/str_format.h"
#include "dataplane/hash.h"

namespace lb::control {

using dataplane::BackendConfig;
using dataplane::ServiceConfig;

namespace {

std::string ProtocolName(uint8_t protocol) {
  switch (protocol) {
    case IPPROTO_TCP: return "tcp";
    case IPPROTO_UDP: return "udp";
    default: return std::to_string(protocol);
  }
}

std::vector<BackendConfig>::iterator FindBackend(ServiceConfig& s, const dataplane::IpAddress& a,
                                                 uint16_t port) {
  return std::find_if(s.backends.begin(), s.backends.end(),
                      [&](const BackendConfig& b) { return b.address == a && b.port == port; });
}

BackendConfig ToConfig(const dataplane::BackendRecord& r) {
  return {r.address, r.port, r.weight, r.state};
}

}  // namespace

std::string ServiceId::ToString() const {
  const std::string address = vip.IsV4() ? vip.ToString() : "[" + vip.ToString() + "]";
  return absl::StrFormat("%s:%s/%s", address, port == 0 ? "*" : std::to_string(port),
                         ProtocolName(protocol));
}

ServiceId IdOf(const ServiceConfig& s) { return {s.vip, s.protocol, s.port}; }

ControlCore::ControlCore(NodeSettings settings, dataplane::SnapshotStore* store,
                         DataplaneProbe* probe)
    : settings_(std::move(settings)),
      store_(store),
      probe_(probe),
      builder_(settings_.limits) {}

absl::Status ControlCore::Start() {
  absl::MutexLock lock(&mu_);
  return Commit(services_);
}

absl::Status ControlCore::Commit(ServiceMap next) {
  dataplane::DataplaneConfig config;
  config.encap = settings_.encap;
  config.nat = settings_.nat;
  config.next_hop = settings_.next_hop;
  config.neighbors = settings_.neighbors;
  config.mtu = settings_.mtu;
  config.icmp_too_big_per_second = settings_.icmp_too_big_per_second;
  config.timeouts = settings_.timeouts;
  config.services.reserve(next.size());
  for (const auto& [id, service] : next) config.services.push_back(service.config);
  auto snapshot = builder_.Build(config);
  if (!snapshot.ok()) return snapshot.status();
  store_->Publish(*std::move(snapshot));
  store_->Reclaim();
  services_ = std::move(next);
  return absl::OkStatus();
}

absl::Status ControlCore::ValidateOne(const ServiceConfig& s, const std::string& field) const {
  return dataplane::ValidateService(s, field, settings_.encap, settings_.nat, settings_.limits);
}

absl::StatusOr<Service*> ControlCore::Find(ServiceMap& map, const ServiceId& id) {
  auto it = map.find(id);
  if (it == map.end()) {
    return absl::NotFoundError(absl::StrFormat("service %s does not exist", id.ToString()));
  }
  return &it->second;
}

absl::StatusOr<Service> ControlCore::CreateService(const ServiceConfig& config) {
  absl::MutexLock lock(&mu_);
  if (absl::Status s = ValidateOne(config, "service"); !s.ok()) return s;
  const ServiceId id = IdOf(config);
  if (auto it = services_.find(id); it != services_.end()) {
    return absl::AlreadyExistsError(absl::StrFormat("service %s already exists (id %d)",
                                                    id.ToString(), it->second.id));
  }
  ServiceMap next = services_;
  const Service created{next_id_, config};
  next.emplace(id, created);
  if (absl::Status s = Commit(std::move(next)); !s.ok()) return s;
  ++next_id_;
  return created;
}

absl::StatusOr<Service> ControlCore::UpdateService(const ServiceConfig& config,
                                                   bool keep_backends) {
  return EditService(IdOf(config), [&](ServiceConfig& s) {
    std::vector<BackendConfig> backends = std::move(s.backends);
    s = config;
    if (keep_backends) s.backends = std::move(backends);
    return absl::OkStatus();
  });
}

absl::Status ControlCore::DeleteService(const ServiceId& id) {
  absl::MutexLock lock(&mu_);
  ServiceMap next = services_;
  if (auto found = Find(next, id); !found.ok()) return found.status();
  next.erase(id);
  return Commit(std::move(next));
}

absl::StatusOr<Service> ControlCore::GetService(const ServiceId& id) const {
  absl::MutexLock lock(&mu_);
  auto it = services_.find(id);
  if (it == services_.end()) {
    return absl::NotFoundError(absl::StrFormat("service %s does not exist", id.ToString()));
  }
  return it->second;
}

std::vector<Service> ControlCore::ListServices() const {
  absl::MutexLock lock(&mu_);
  std::vector<Service> out;
  out.reserve(services_.size());
  for (const auto& [id, s] : services_) out.push_back(s);
  std::sort(out.begin(), out.end(), [](const Service& a, const Service& b) { return a.id < b.id; });
  return out;
}

template <typename Edit>
absl::StatusOr<Service> ControlCore::EditService(const ServiceId& id, Edit edit) {
  absl::MutexLock lock(&mu_);
  ServiceMap next = services_;
  auto found = Find(next, id);
  if (!found.ok()) return found.status();
  Service& service = **found;
  if (absl::Status s = edit(service.config); !s.ok()) return s;
  if (absl::Status s = ValidateOne(service.config, "service"); !s.ok()) return s;
  const Service result = service;
  if (absl::Status s = Commit(std::move(next)); !s.ok()) return s;
  return result;
}

absl::StatusOr<Service> ControlCore::SetBackends(const ServiceId& id,
                                                 const std::vector<BackendConfig>& backends) {
  return EditService(id, [&](ServiceConfig& s) {
    s.backends = backends;
    return absl::OkStatus();
  });
}

absl::StatusOr<Service> ControlCore::AddBackend(const ServiceId& id, const BackendConfig& backend) {
  return EditService(id, [&](ServiceConfig& s) {
    if (FindBackend(s, backend.address, backend.port) != s.backends.end()) {
      return absl::AlreadyExistsError(
          absl::StrFormat("backend %s port %d is already in service %s",
                          backend.address.ToString(), backend.port, id.ToString()));
    }
    s.backends.push_back(backend);
    return absl::OkStatus();
  });
}

absl::StatusOr<Service> ControlCore::RemoveBackend(const ServiceId& id,
                                                   const dataplane::IpAddress& address,
                                                   uint16_t port) {
  return EditService(id, [&](ServiceConfig& s) {
    auto it = FindBackend(s, address, port);
    if (it == s.backends.end()) {
      return absl::NotFoundError(absl::StrFormat("backend %s port %d is not in service %s",
                                                 address.ToString(), port, id.ToString()));
    }
    s.backends.erase(it);
    return absl::OkStatus();
  });
}

absl::StatusOr<Service> ControlCore::UpdateBackend(const ServiceId& id,
                                                   const dataplane::IpAddress& address,
                                                   uint16_t port, const BackendUpdate& update) {
  return EditService(id, [&](ServiceConfig& s) {
    auto it = FindBackend(s, address, port);
    if (it == s.backends.end()) {
      return absl::NotFoundError(absl::StrFormat("backend %s port %d is not in service %s",
                                                 address.ToString(), port, id.ToString()));
    }
    if (update.weight) it->weight = *update.weight;
    if (update.state) it->state = *update.state;
    return absl::OkStatus();
  });
}

absl::StatusOr<ApplyResult> ControlCore::Apply(uint64_t generation,
                                               const std::vector<ServiceConfig>& services) {
  absl::MutexLock lock(&mu_);
  if (generation != 0 && generation < applied_generation_) {
    return absl::FailedPreconditionError(
        absl::StrFormat("generation: %d is older than the applied generation %d", generation,
                        applied_generation_));
  }
  std::map<ServiceId, size_t> seen;
  for (size_t i = 0; i < services.size(); ++i) {
    const std::string field = absl::StrFormat("services[%d]", i);
    if (absl::Status s = ValidateOne(services[i], field); !s.ok()) return s;
    auto [it, inserted] = seen.emplace(IdOf(services[i]), i);
    if (!inserted) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: same VIP, protocol and port as services[%d] (%s)", field, it->second,
          it->first.ToString()));
    }
  }
  ApplyResult result;
  ServiceMap next;
  uint64_t next_id = next_id_;
  for (const ServiceConfig& config : services) {
    const ServiceId id = IdOf(config);
    auto it = services_.find(id);
    if (it == services_.end()) {
      next.emplace(id, Service{next_id++, config});
      ++result.created;
    } else {
      next.emplace(id, Service{it->second.id, config});
      ++(it->second.config == config ? result.unchanged : result.updated);
    }
  }
  for (const auto& [id, s] : services_) result.deleted += !next.contains(id);
  const bool changes = result.created + result.updated + result.deleted > 0;
  if (generation != 0 && generation == applied_generation_ && changes) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "generation: %d was applied already, with other services", generation));
  }
  if (changes) {
    if (absl::Status s = Commit(std::move(next)); !s.ok()) return s;
    next_id_ = next_id;
  }
  applied_generation_ = std::max(applied_generation_, generation);
  result.generation = applied_generation_;
  return result;
}

absl::Status ControlCore::SetNextHop(const dataplane::NextHop& next_hop) {
  absl::MutexLock lock(&mu_);
  const dataplane::NextHop previous = settings_.next_hop;
  settings_.next_hop = next_hop;
  absl::Status s = Commit(services_);
  if (!s.ok()) settings_.next_hop = previous;
  return s;
}

absl::Status ControlCore::SetNeighbors(
    const absl::flat_hash_map<dataplane::IpAddress, dataplane::MacAddress>& neighbors) {
  absl::MutexLock lock(&mu_);
  auto previous = std::move(settings_.neighbors);
  settings_.neighbors = neighbors;
  absl::Status s = Commit(services_);
  if (!s.ok()) settings_.neighbors = std::move(previous);
  return s;
}

std::vector<dataplane::IpAddress> ControlCore::BackendAddresses() const {
  absl::MutexLock lock(&mu_);
  std::vector<dataplane::IpAddress> out;
  for (const auto& [id, s] : services_) {
    for (const auto& b : s.config.backends) out.push_back(b.address);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

void ControlCore::Reclaim() {
  absl::MutexLock lock(&mu_);
  store_->Reclaim();
}

Stats ControlCore::GetStats() const {
  Stats stats;
  if (probe_ != nullptr) stats.workers = probe_->Workers();
  for (const WorkerView& w : stats.workers) {
    for (size_t i = 0; i < dataplane::kNumEvents; ++i) {
      stats.events[i] += w.counters->Get(dataplane::Event(i));
    }
    for (size_t i = 0; i < dataplane::kNumDropReasons; ++i) {
      stats.drops[i] += w.counters->Get(dataplane::DropReason(i));
    }
    stats.flows += w.flows;
    stats.flow_capacity += w.flow_capacity;
  }
  absl::MutexLock lock(&mu_);
  for (size_t a = 0; a < settings_.nat.addresses.size(); ++a) {
    Stats::SnatStats snat{.address = settings_.nat.addresses[a]};
    for (const WorkerView& w : stats.workers) {
      if (w.nat == nullptr || a >= w.nat->num_addresses()) continue;
      snat.ports_in_use += w.nat->in_use(uint32_t(a));
      snat.ports_total += 2 * uint64_t(w.nat->ports_per_address());  // TCP and UDP
    }
    stats.snat.push_back(snat);
  }
  const dataplane::Snapshot* snap = store_->current();
  stats.generation = applied_generation_;
  stats.gateway_mac = settings_.next_hop.gateway_mac;
  for (const auto& [id, service] : services_) {
    std::vector<Stats::BackendStats> backends(service.config.backends.size());
    const dataplane::ServiceRecord* rec =
        snap == nullptr ? nullptr : snap->FindService(id.vip, id.protocol, htons(id.port));
    if (rec != nullptr) {
      for (uint16_t i : rec->maglev) ++backends[i].maglev_entries;
    }
    for (size_t i = 0; i < backends.size(); ++i) {
      auto n = settings_.neighbors.find(service.config.backends[i].address);
      if (n != settings_.neighbors.end()) backends[i].neighbor_mac = n->second;
    }
    stats.services.emplace_back(service, std::move(backends));
  }
  return stats;
}

void ControlCore::SetDrained(bool drained) {
  absl::MutexLock lock(&mu_);
  drained_ = drained;
}

Health ControlCore::GetHealth() const {
  Health h;
  if (probe_ == nullptr) {
    h.problems.push_back("no dataplane attached");
  } else {
    h.problems = probe_->HealthProblems();
    h.workers = uint32_t(probe_->Workers().size());
    h.workers_alive = probe_->WorkersAlive();
    h.links_up = probe_->LinksUp();
  }
  absl::MutexLock lock(&mu_);
  h.generation = applied_generation_;
  h.drained = drained_;
  if (drained_) h.problems.push_back("drained by the operator");
  h.healthy = h.problems.empty();
  return h;
}

absl::StatusOr<Explanation> ControlCore::ExplainFlow(const dataplane::FlowKey& key) {
  Explanation e;
  {
    absl::MutexLock lock(&mu_);
    const dataplane::Snapshot* snap = store_->current();
    if (snap == nullptr || snap->FindVip(key.dst) == nullptr) {
      e.decision = "not a VIP: handed to the kernel (exception path)";
      return e;
    }
    e.vip = true;
    const dataplane::ServiceRecord* rec = snap->FindService(key.dst, key.protocol, key.dst_port_be);
    if (rec == nullptr) {
      e.decision = "no service for this protocol and port: dropped (no_service)";
      return e;
    }
    e.service = ServiceId{rec->key.vip, rec->key.protocol, ntohs(rec->key.port_be)};
    // The same pick as the worker's (Snapshot::Pick).
    uint32_t slot;
    const auto* b = snap->Pick(*rec, dataplane::ServiceHash(key, rec->hash_fields, dataplane::HashFlowKey(key)), &slot);
    if (b != nullptr) e.maglev_backend = ToConfig(*b);
  }
  // The workers answer without the lock held. Backend slots are stable across
  // snapshots; the service is looked up again, as the snapshot may have changed.
  const FlowLocation flow =
      probe_ != nullptr ? probe_->FindFlow(key).value_or(FlowLocation{}) : FlowLocation{};
  absl::MutexLock lock(&mu_);
  const dataplane::Snapshot* snap = store_->current();
  if (flow.answer.found) {
    e.worker = int32_t(flow.worker);
    const dataplane::ServiceRecord* rec = snap->FindService(key.dst, key.protocol, key.dst_port_be);
    const dataplane::BackendRecord* b =
        rec == nullptr ? nullptr
                       : snap->Pinned(*rec, flow.answer.backend_slot, flow.answer.backend_generation);
    if (b != nullptr) {
      e.backend = ToConfig(*b);
      e.decision = absl::StrFormat("flow-table: worker %d holds this flow", flow.worker);
      return e;
    }
  }
  if (e.maglev_backend) {
    e.backend = e.maglev_backend;
    e.decision = e.worker >= 0 ? "maglev: the flow's backend is gone, a new one is picked"
                               : "maglev: no worker holds this flow";
  } else {
    e.decision = "no active backend: dropped (no_backend)";
  }
  return e;
}

}  // namespace lb::control
