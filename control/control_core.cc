#include "control/control_core.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_format.h"
#include "common/hash.h"

namespace lb::control {

namespace {

std::vector<BackendConfig>::iterator FindBackend(ServiceConfig& s, const IpAddress& a, uint16_t port) {
  return std::find_if(s.backends.begin(), s.backends.end(),
                      [&](const BackendConfig& b) { return b.address == a && b.port == port; });
}

// A backend that is a VIP would loop (its packets come back to an LB node): refused.
absl::Status CheckNoVipBackend(const ServiceConfig& config, const std::string& field,
                               const absl::flat_hash_set<IpAddress>& vips) {
  for (size_t j = 0; j < config.backends.size(); ++j) {
    if (vips.contains(config.backends[j].address)) {
      return absl::InvalidArgumentError(absl::StrFormat("%s.backends[%d].address: %s is a VIP of this node (a loop)",
                                                        field, j, config.backends[j].address.ToString()));
    }
  }
  return absl::OkStatus();
}

BackendConfig ToConfig(const dataplane::BackendRecord& r) { return {r.address, r.port, r.weight, r.state}; }

}  // namespace

void ControlCore::State::Count(const ServiceConfig& c, int sign) {
  backends += uint64_t(int64_t(sign) * int64_t(c.backends.size()));
  table_memory += uint64_t(int64_t(sign) * int64_t(ServiceMemory(c)));
}

ControlCore::ControlCore(NodeSettings settings, dataplane::SnapshotStore* store, DataplaneProbe* probe,
                         std::shared_ptr<dataplane::TrafficTable> traffic)
    : store_(store), probe_(probe), traffic_(traffic), builder_(settings.limits, std::move(traffic)) {
  auto initial = std::make_shared<State>();
  initial->settings = std::move(settings);
  state_ = std::move(initial);
}

absl::Status ControlCore::Start() {
  absl::MutexLock lock(&write_mu_);
  auto next = std::make_shared<State>(*Current());
  if (absl::Status s = ValidateNode(next->settings); !s.ok()) return s;
  Commit(std::move(next));
  return absl::OkStatus();
}

std::shared_ptr<const ControlCore::State> ControlCore::Current() const {
  absl::MutexLock lock(&state_mu_);
  return state_;
}

void ControlCore::Commit(std::shared_ptr<State> next) {
  std::vector<dataplane::ServiceRecordPtr> records;
  records.reserve(next->services.size());
  for (const auto& [id, entry] : next->services) records.push_back(entry->record);
  store_->Publish(builder_.Assemble(std::move(records), next->settings, store_->current()));
  store_->Reclaim();
  absl::MutexLock lock(&state_mu_);
  state_ = std::move(next);
}

absl::StatusOr<std::shared_ptr<const ControlCore::ServiceEntry>> ControlCore::BuildEntry(uint64_t id,
                                                                                         const ServiceConfig& config,
                                                                                         const ServiceEntry* previous,
                                                                                         const NodeSettings& settings) {
  auto record = builder_.BuildService(config, previous == nullptr ? nullptr : previous->record.get(), settings);
  if (!record.ok()) return record.status();
  return std::make_shared<const ServiceEntry>(ServiceEntry{Service{id, config}, *std::move(record)});
}

absl::Status ControlCore::Admit(const State& next, const ServiceConfig& config, const std::string& field,
                                const absl::flat_hash_set<IpAddress>& vips) const {
  const Limits& limits = next.settings.limits;
  if (absl::Status s = ValidateService(config, field, next.settings, limits); !s.ok()) return s;
  if (absl::Status s = CheckNoVipBackend(config, field, vips); !s.ok()) return s;
  if (next.services.size() + 1 > limits.max_services) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("%s: lbd holds at most %d services (max_services)", field, limits.max_services));
  }
  if (next.backends + config.backends.size() > limits.max_backends_total) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "%s.backends: %d more backends would make %d, the limit is %d in all (max_backends_total)", field,
        config.backends.size(), next.backends + config.backends.size(), limits.max_backends_total));
  }
  const uint64_t memory = ServiceMemory(config);
  if (next.table_memory + memory > limits.max_table_memory) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("%s.table_size: its tables (%d bytes) would make %d bytes in all, the limit is %d "
                        "(max_table_memory)",
                        field, memory, next.table_memory + memory, limits.max_table_memory));
  }
  return absl::OkStatus();
}

absl::StatusOr<Service> ControlCore::Write(State& next, const ServiceConfig& config, const ServiceEntry* previous,
                                           uint64_t id) {
  absl::flat_hash_set<IpAddress> vips{config.vip};
  bool vip_is_new = true;
  for (const auto& [key, entry] : next.services) {
    vips.insert(key.vip);
    vip_is_new &= key.vip != config.vip;
  }
  if (absl::Status s = Admit(next, config, "service", vips); !s.ok()) return s;
  if (vip_is_new) {
    // A new VIP must not be another service's backend either (it would loop the same way).
    for (const auto& [key, entry] : next.services) {
      for (const BackendConfig& b : entry->service.config.backends) {
        if (b.address == config.vip) {
          return absl::InvalidArgumentError(absl::StrFormat("service.vip: %s is a backend of service %s (a loop)",
                                                            config.vip.ToString(), key.ToString()));
        }
      }
    }
  }
  auto entry = BuildEntry(id, config, previous, next.settings);
  if (!entry.ok()) return entry.status();
  const Service written = (*entry)->service;
  next.services.emplace(IdOf(config), *std::move(entry));
  next.Count(config, +1);
  return written;
}

absl::StatusOr<Service> ControlCore::CreateService(const ServiceConfig& config) {
  absl::MutexLock lock(&write_mu_);
  auto next = std::make_shared<State>(*Current());
  const ServiceId id = IdOf(config);
  if (auto it = next->services.find(id); it != next->services.end()) {
    return absl::AlreadyExistsError(
        absl::StrFormat("service %s already exists (id %d)", id.ToString(), it->second->service.id));
  }
  auto created = Write(*next, config, nullptr, next_id_);
  if (!created.ok()) return created.status();
  ++next_id_;
  Commit(std::move(next));
  return created;
}

absl::StatusOr<Service> ControlCore::UpdateService(const ServiceConfig& config, bool keep_backends) {
  return EditService(IdOf(config), [&](ServiceConfig& s) {
    std::vector<BackendConfig> backends = std::move(s.backends);
    s = config;
    if (keep_backends) s.backends = std::move(backends);
    return absl::OkStatus();
  });
}

absl::Status ControlCore::DeleteService(const ServiceId& id) {
  absl::MutexLock lock(&write_mu_);
  auto next = std::make_shared<State>(*Current());
  auto it = next->services.find(id);
  if (it == next->services.end()) {
    return absl::NotFoundError(absl::StrFormat("service %s does not exist", id.ToString()));
  }
  next->Count(it->second->service.config, -1);
  next->services.erase(it);
  Commit(std::move(next));
  return absl::OkStatus();
}

absl::StatusOr<Service> ControlCore::GetService(const ServiceId& id) const {
  const std::shared_ptr<const State> state = Current();
  auto it = state->services.find(id);
  if (it == state->services.end()) {
    return absl::NotFoundError(absl::StrFormat("service %s does not exist", id.ToString()));
  }
  return it->second->service;
}

std::vector<Service> ControlCore::ListServices() const {
  const std::shared_ptr<const State> state = Current();
  std::vector<Service> out;
  out.reserve(state->services.size());
  for (const auto& [id, entry] : state->services) out.push_back(entry->service);
  std::sort(out.begin(), out.end(), [](const Service& a, const Service& b) { return a.id < b.id; });
  return out;
}

template <typename Edit>
absl::StatusOr<Service> ControlCore::EditService(const ServiceId& id, Edit edit) {
  absl::MutexLock lock(&write_mu_);
  auto next = std::make_shared<State>(*Current());
  auto it = next->services.find(id);
  if (it == next->services.end()) {
    return absl::NotFoundError(absl::StrFormat("service %s does not exist", id.ToString()));
  }
  const std::shared_ptr<const ServiceEntry> previous = it->second;
  ServiceConfig config = previous->service.config;
  if (absl::Status s = edit(config); !s.ok()) return s;
  next->services.erase(it);
  next->Count(previous->service.config, -1);
  auto edited = Write(*next, config, previous.get(), previous->service.id);
  if (!edited.ok()) return edited.status();
  Commit(std::move(next));
  return edited;
}

absl::StatusOr<Service> ControlCore::SetBackends(const ServiceId& id, const std::vector<BackendConfig>& backends) {
  return EditService(id, [&](ServiceConfig& s) {
    s.backends = backends;
    return absl::OkStatus();
  });
}

absl::StatusOr<Service> ControlCore::AddBackend(const ServiceId& id, const BackendConfig& backend) {
  return EditService(id, [&](ServiceConfig& s) {
    if (FindBackend(s, backend.address, backend.port) != s.backends.end()) {
      return absl::AlreadyExistsError(absl::StrFormat("backend %s port %d is already in service %s",
                                                      backend.address.ToString(), backend.port, id.ToString()));
    }
    s.backends.push_back(backend);
    return absl::OkStatus();
  });
}

absl::StatusOr<Service> ControlCore::RemoveBackend(const ServiceId& id, const IpAddress& address, uint16_t port) {
  return EditService(id, [&](ServiceConfig& s) {
    auto it = FindBackend(s, address, port);
    if (it == s.backends.end()) {
      return absl::NotFoundError(
          absl::StrFormat("backend %s port %d is not in service %s", address.ToString(), port, id.ToString()));
    }
    s.backends.erase(it);
    return absl::OkStatus();
  });
}

absl::StatusOr<Service> ControlCore::UpdateBackend(const ServiceId& id, const IpAddress& address, uint16_t port,
                                                   const BackendUpdate& update) {
  return EditService(id, [&](ServiceConfig& s) {
    auto it = FindBackend(s, address, port);
    if (it == s.backends.end()) {
      return absl::NotFoundError(
          absl::StrFormat("backend %s port %d is not in service %s", address.ToString(), port, id.ToString()));
    }
    if (update.weight) it->weight = *update.weight;
    if (update.state) it->state = *update.state;
    return absl::OkStatus();
  });
}

absl::StatusOr<ApplyResult> ControlCore::Apply(uint64_t generation, const std::vector<ServiceConfig>& services,
                                               bool partial) {
  absl::MutexLock lock(&write_mu_);
  const std::shared_ptr<const State> current = Current();
  if (generation != 0 && generation < current->applied_generation) {
    return absl::FailedPreconditionError(absl::StrFormat("generation: %d is older than the applied generation %d",
                                                         generation, current->applied_generation));
  }
  auto next = std::make_shared<State>();
  next->settings = current->settings;
  next->applied_generation = current->applied_generation;
  ApplyResult result;
  // First every service is validated and counted against the limits (cheap), so that an
  // all-or-nothing request that fails builds nothing; then the changed ones are built.
  struct ToBuild {
    size_t index;                  // in `services`
    const ServiceEntry* previous;  // the entry in force, or null
    size_t outcome;                // in result.outcomes
  };
  std::vector<ToBuild> to_build;
  absl::flat_hash_set<IpAddress> vips;  // of the whole request
  for (const ServiceConfig& config : services) vips.insert(config.vip);
  auto in_force = [&](const ServiceConfig& config) -> const std::shared_ptr<const ServiceEntry>* {
    auto it = current->services.find(IdOf(config));
    return it == current->services.end() ? nullptr : &it->second;
  };
  // `config` (the request's, or in its place the version in force) joins `next`.
  auto join = [&](size_t i, const ServiceConfig& config, const std::shared_ptr<const ServiceEntry>* previous,
                  ServiceOutcome outcome) {
    const ServiceId id = IdOf(config);
    if (previous != nullptr && (*previous)->service.config == config) {
      next->services.insert_or_assign(id, *previous);
      if (outcome.kind != ServiceOutcome::Kind::kRefused) outcome.kind = ServiceOutcome::Kind::kUnchanged;
    } else {
      next->services.insert_or_assign(id, nullptr);  // built below; holds its place for the limits
      to_build.push_back({i, previous == nullptr ? nullptr : previous->get(), result.outcomes.size()});
      outcome.kind = previous != nullptr ? ServiceOutcome::Kind::kUpdated : ServiceOutcome::Kind::kCreated;
    }
    next->Count(config, +1);
    result.outcomes.push_back(std::move(outcome));
  };
  auto refuse = [&](size_t i, absl::Status status) {
    result.outcomes.push_back({ServiceOutcome::Kind::kRefused, IdOf(services[i]), int32_t(i), std::move(status)});
  };

  // The order of admission. All or nothing: the request's. Partial: what serves keeps
  // serving. The services in force come first, each admitted at its version in force (all
  // of those fit together, as they did); then each is updated where its new version fits
  // (else it is refused and the version in force stays); then the new services, in the
  // request's order. A service that grows beyond a limit is refused its growth: it never
  // takes the place of another that serves (the watcher sends the oldest first).
  std::vector<size_t> order;
  std::map<ServiceId, size_t> seen;
  for (size_t i = 0; i < services.size(); ++i) {
    if (auto [it, inserted] = seen.emplace(IdOf(services[i]), i); !inserted) {
      const absl::Status status = absl::InvalidArgumentError(absl::StrFormat(
          "services[%d]: same VIP, protocol and port as services[%d] (%s)", i, it->second, it->first.ToString()));
      if (!partial) return status;
      refuse(i, status);
      continue;
    }
    order.push_back(i);
  }
  if (partial) {
    std::stable_partition(order.begin(), order.end(), [&](size_t i) { return in_force(services[i]) != nullptr; });
  }
  // Partial: the services in force, reserved at their versions in force.
  std::vector<bool> reserved(services.size(), false);
  for (size_t i : order) {
    const auto* previous = partial ? in_force(services[i]) : nullptr;
    if (previous == nullptr) break;  // the new ones follow
    const ServiceConfig& in_force_config = (*previous)->service.config;
    if (Admit(*next, in_force_config, absl::StrFormat("services[%d]", i), vips).ok()) {
      next->services.emplace(IdOf(in_force_config), *previous);
      next->Count(in_force_config, +1);
      reserved[i] = true;
    }
  }
  for (size_t i : order) {
    const ServiceConfig& config = services[i];
    const ServiceId id = IdOf(config);
    const auto* previous = in_force(config);
    if (reserved[i]) {
      // Its version in force makes room for the request's.
      next->Count((*previous)->service.config, -1);
      next->services.erase(id);
    }
    absl::Status status = Admit(*next, config, absl::StrFormat("services[%d]", i), vips);
    if (status.ok()) {
      join(i, config, previous, {ServiceOutcome::Kind::kCreated, id, int32_t(i), absl::OkStatus()});
    } else if (!partial) {
      return status;
    } else if (reserved[i]) {
      join(i, (*previous)->service.config, previous,
           {ServiceOutcome::Kind::kRefused, id, int32_t(i),
            absl::Status(status.code(), absl::StrCat(status.message(), " (the version in force stays)"))});
    } else {
      refuse(i, std::move(status));
    }
  }
  uint64_t next_id = next_id_;
  for (const auto& [i, previous, outcome] : to_build) {
    const ServiceId id = IdOf(services[i]);
    auto entry =
        BuildEntry(previous != nullptr ? previous->service.id : next_id, services[i], previous, next->settings);
    if (!entry.ok()) {
      const absl::Status status(entry.status().code(),
                                absl::StrFormat("services[%d]: %s", i, entry.status().message()));
      if (!partial) return status;
      next->services.erase(id);
      next->Count(services[i], -1);
      result.outcomes[outcome] = {ServiceOutcome::Kind::kRefused, id, int32_t(i), status};
      continue;
    }
    if (previous == nullptr) ++next_id;
    next->services[id] = *std::move(entry);
  }
  // Reported in the request's order, whatever the order of admission.
  std::ranges::stable_sort(result.outcomes, {}, &ServiceOutcome::index);
  std::set<ServiceId> refused;
  for (const ServiceOutcome& o : result.outcomes) {
    switch (o.kind) {
      case ServiceOutcome::Kind::kCreated:
        ++result.created;
        break;
      case ServiceOutcome::Kind::kUpdated:
        ++result.updated;
        break;
      case ServiceOutcome::Kind::kUnchanged:
        ++result.unchanged;
        break;
      case ServiceOutcome::Kind::kRefused:
        ++result.refused;
        refused.insert(o.id);
        break;
      case ServiceOutcome::Kind::kDeleted:
        break;  // none yet
    }
  }
  // A service in force that is not in `next` is deleted, or, when the request refused
  // it, gone all the same but reported as refused.
  bool refused_existing = false;
  for (const auto& [id, entry] : current->services) {
    if (next->services.contains(id)) continue;
    if (refused.contains(id)) {
      refused_existing = true;
      continue;
    }
    result.outcomes.push_back({ServiceOutcome::Kind::kDeleted, id, -1, absl::OkStatus()});
    ++result.deleted;
  }
  const bool changes = result.created + result.updated + result.deleted > 0 || refused_existing;
  if (generation != 0 && generation == current->applied_generation && changes) {
    return absl::FailedPreconditionError(
        absl::StrFormat("generation: %d was applied already, with other services", generation));
  }
  next->applied_generation = std::max(current->applied_generation, generation);
  result.generation = next->applied_generation;
  if (changes || next->applied_generation != current->applied_generation) {
    next_id_ = next_id;
    if (changes) {
      Commit(std::move(next));
    } else {
      // Only the generation moved: no snapshot to publish.
      auto same = std::make_shared<State>(*current);
      same->applied_generation = result.generation;
      absl::MutexLock state_lock(&state_mu_);
      state_ = std::move(same);
    }
  }
  applied_.store(true, std::memory_order_relaxed);
  return result;
}

template <typename Affected>
absl::Status ControlCore::RebuildWhere(State& next, Affected affected) {
  for (auto& [id, entry] : next.services) {
    if (!affected(entry->service.config)) continue;
    auto rebuilt = BuildEntry(entry->service.id, entry->service.config, entry.get(), next.settings);
    if (!rebuilt.ok()) return rebuilt.status();
    entry = *std::move(rebuilt);
  }
  return absl::OkStatus();
}

absl::Status ControlCore::SetNextHop(const NextHop& next_hop) {
  absl::MutexLock lock(&write_mu_);
  const std::shared_ptr<const State> current = Current();
  const NextHop& hop = current->settings.next_hop;
  if (hop.source_mac == next_hop.source_mac && hop.gateway_mac == next_hop.gateway_mac && hop.vlan == next_hop.vlan) {
    return absl::OkStatus();
  }
  auto next = std::make_shared<State>(*current);
  next->settings.next_hop = next_hop;
  // Every DSR backend's prepared headers name the gateway (NAT services read it per packet).
  if (absl::Status s = RebuildWhere(*next, [](const ServiceConfig& c) { return c.mode != ForwardingMode::kNat; });
      !s.ok()) {
    return s;
  }
  Commit(std::move(next));
  return absl::OkStatus();
}

absl::Status ControlCore::UpdateNeighbors(const std::vector<NeighborChange>& changes) {
  // Most notifications are state changes of entries whose MAC stays: check against the
  // State in force first, without waiting for a change in progress.
  auto differs = [](const State& state, const NeighborChange& c) {
    auto it = state.settings.neighbors.find(c.first);
    return c.second ? it == state.settings.neighbors.end() || it->second != *c.second
                    : it != state.settings.neighbors.end();
  };
  if (const std::shared_ptr<const State> in_force = Current();
      std::none_of(changes.begin(), changes.end(), [&](const NeighborChange& c) { return differs(*in_force, c); })) {
    return absl::OkStatus();
  }
  absl::MutexLock lock(&write_mu_);
  const std::shared_ptr<const State> current = Current();
  auto next = std::make_shared<State>(*current);
  absl::flat_hash_set<IpAddress> changed;
  for (const NeighborChange& c : changes) {
    if (!differs(*next, c)) continue;
    changed.insert(c.first);
    if (c.second) {
      next->settings.neighbors[c.first] = *c.second;
    } else {
      next->settings.neighbors.erase(c.first);
    }
  }
  if (changed.empty()) return absl::OkStatus();
  if (absl::Status s = RebuildWhere(*next,
                                    [&](const ServiceConfig& c) {
                                      return std::any_of(
                                          c.backends.begin(), c.backends.end(),
                                          [&](const BackendConfig& b) { return changed.contains(b.address); });
                                    });
      !s.ok()) {
    return s;
  }
  Commit(std::move(next));
  return absl::OkStatus();
}

std::vector<IpAddress> ControlCore::UnresolvedOnLinkBackends(const std::vector<IpPrefix>& prefixes,
                                                             size_t limit) const {
  const std::shared_ptr<const State> state = Current();
  absl::flat_hash_set<IpAddress> out;
  for (const auto& [id, entry] : state->services) {
    for (const BackendConfig& b : entry->service.config.backends) {
      if (out.size() >= limit) break;
      if (state->settings.neighbors.contains(b.address)) continue;
      if (std::any_of(prefixes.begin(), prefixes.end(), [&](const IpPrefix& p) { return p.Contains(b.address); })) {
        out.insert(b.address);
      }
    }
  }
  return {out.begin(), out.end()};
}

std::vector<std::vector<size_t>> ControlCore::ChooseBackends(const std::vector<const ServiceEntry*>& entries,
                                                             const StatsQuery& query) const {
  std::vector<std::vector<size_t>> chosen(entries.size());
  if (query.service) {
    for (size_t i = 0; i < entries.size(); ++i) {
      for (size_t j = 0; j < entries[i]->service.config.backends.size(); ++j) chosen[i].push_back(j);
    }
    return chosen;
  }
  if (query.top_backends == 0) return chosen;
  // The N busiest: a heap of the best so far, the least of them on top (ties: the later
  // service and backend lose, so that the choice is the same on every call).
  struct Ranked {
    uint64_t packets;
    size_t service, backend;
  };
  const auto better = [](const Ranked& a, const Ranked& b) {
    return a.packets != b.packets ? a.packets > b.packets
                                  : std::tie(a.service, a.backend) < std::tie(b.service, b.backend);
  };
  std::vector<Ranked> heap;
  heap.reserve(query.top_backends + 1);
  for (size_t i = 0; i < entries.size(); ++i) {
    const dataplane::ServiceRecord& record = *entries[i]->record;
    for (size_t j = 0; j < record.backend_slots.size(); ++j) {
      const uint32_t id = record.backends[record.backend_slots[j]].traffic_id;
      heap.push_back({traffic_ == nullptr ? 0 : traffic_->Backend(id).packets, i, j});
      std::push_heap(heap.begin(), heap.end(), better);
      if (heap.size() > query.top_backends) {
        std::pop_heap(heap.begin(), heap.end(), better);
        heap.pop_back();
      }
    }
  }
  for (const Ranked& r : heap) chosen[r.service].push_back(r.backend);
  for (auto& c : chosen) std::sort(c.begin(), c.end());
  return chosen;
}

void ControlCore::Reclaim() {
  absl::MutexLock lock(&write_mu_);
  store_->Reclaim();
}

Stats ControlCore::GetStats(const StatsQuery& query) const {
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
  const std::shared_ptr<const State> state = Current();
  const NodeSettings& settings = state->settings;
  for (size_t a = 0; a < settings.nat.addresses.size(); ++a) {
    Stats::SnatStats snat{.address = settings.nat.addresses[a]};
    for (const WorkerView& w : stats.workers) {
      if (w.nat == nullptr || a >= w.nat->num_addresses()) continue;
      snat.ports_in_use += w.nat->in_use(uint32_t(a));
      snat.ports_total += 2 * uint64_t(w.nat->ports_per_address());  // TCP and UDP
    }
    stats.snat.push_back(snat);
  }
  stats.generation = state->applied_generation;
  stats.gateway_mac = settings.next_hop.gateway_mac;
  stats.backends = state->backends;
  stats.table_memory = state->table_memory;
  stats.table_memory_limit = settings.limits.max_table_memory;
  if (probe_ != nullptr) {
    stats.flow_sync = probe_->FlowSync();
    stats.ports = probe_->Ports();
  }
  // Every service's totals, then the backends the query chose, one by one.
  std::vector<const ServiceEntry*> entries;
  if (query.service) {
    if (auto it = state->services.find(*query.service); it != state->services.end())
      entries.push_back(it->second.get());
  } else {
    entries.reserve(state->services.size());
    for (const auto& [id, entry] : state->services) entries.push_back(entry.get());
  }
  stats.services.reserve(entries.size());
  for (const ServiceEntry* entry : entries) {
    Stats::ServiceStats& ss = stats.services.emplace_back();
    ss.service = entry->service;
    if (traffic_ != nullptr) ss.traffic = traffic_->Service(entry->record->traffic_id);
  }
  const std::vector<std::vector<size_t>> chosen = ChooseBackends(entries, query);
  for (size_t i = 0; i < entries.size(); ++i) {
    if (chosen[i].empty()) continue;
    const dataplane::ServiceRecord& record = *entries[i]->record;
    const ServiceConfig& config = entries[i]->service.config;
    std::vector<uint32_t> entries_by_slot(record.backends.size());
    for (uint16_t slot : record.maglev()) ++entries_by_slot[slot];
    for (size_t j : chosen[i]) {
      const uint16_t slot = record.backend_slots[j];
      Stats::BackendStats& b = stats.services[i].backends.emplace_back();
      b.index = j;
      b.maglev_entries = entries_by_slot[slot];
      if (auto n = settings.neighbors.find(config.backends[j].address); n != settings.neighbors.end()) {
        b.neighbor_mac = n->second;
      }
      if (traffic_ != nullptr) b.traffic = traffic_->Backend(record.backends[slot].traffic_id);
    }
  }
  if (traffic_ != nullptr) stats.traffic_uncounted = traffic_->exhausted();
  return stats;
}

absl::Status ControlCore::PersistDrainIn(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) == 0) {
    drained_.store(true, std::memory_order_relaxed);
  } else if (errno != ENOENT) {
    return absl::FailedPreconditionError(absl::StrFormat("%s: %s", path, std::strerror(errno)));
  }
  drain_file_ = path;
  return absl::OkStatus();
}

absl::Status ControlCore::SetDrained(bool drained) {
  absl::MutexLock lock(&write_mu_);  // one writer of the file at a time
  if (!drain_file_.empty()) {
    // The file first: a drain that the API confirmed must be there after a restart.
    if (drained) {
      const int fd = open(drain_file_.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
      if (fd < 0 || fsync(fd) != 0) {
        const int err = errno;
        if (fd >= 0) close(fd);
        return absl::UnavailableError(
            absl::StrFormat("cannot record the drain in %s: %s", drain_file_, std::strerror(err)));
      }
      close(fd);
    } else if (unlink(drain_file_.c_str()) != 0 && errno != ENOENT) {
      return absl::UnavailableError(absl::StrFormat("cannot remove %s: %s", drain_file_, std::strerror(errno)));
    }
  }
  drained_.store(drained, std::memory_order_relaxed);
  return absl::OkStatus();
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
  h.generation = Current()->applied_generation;
  h.snapshot_generation = store_->published_generation();
  h.snapshot_visible = store_->WorkersOnLatest();
  h.flow_hash = Current()->settings.flow_hasher.Describe();
  h.drained = drained_.load(std::memory_order_relaxed);
  if (h.drained) h.problems.push_back("drained by the operator");
  if (await_apply_ && !applied_.load(std::memory_order_relaxed)) {
    h.problems.push_back("no configuration yet: waiting for the first Apply (the watcher's first full sync)");
  }
  h.healthy = h.problems.empty();
  return h;
}

absl::StatusOr<Explanation> ControlCore::ExplainFlow(const FlowKey& key) {
  Explanation e;
  // The State's records are the ones the snapshot in force was assembled from, and the
  // State keeps them alive while this runs.
  const std::shared_ptr<const State> state = Current();
  const ServiceMap& services = state->services;
  auto vip = services.lower_bound(ServiceId{key.dst, 0, 0});
  if (vip == services.end() || vip->first.vip != key.dst) {
    e.decision = "not a VIP: handed to the kernel (exception path)";
    return e;
  }
  e.vip = true;
  auto it = services.find(ServiceId{key.dst, key.protocol, ntohs(key.dst_port_be)});
  if (it == services.end()) it = services.find(ServiceId{key.dst, key.protocol, 0});
  if (it == services.end()) {
    e.decision = "no service for this protocol and port: dropped (no_service)";
    return e;
  }
  e.service = it->first;
  const dataplane::ServiceRecord& rec = *it->second->record;
  // The same pick as the worker's (Snapshot::Pick).
  uint32_t slot;
  const FlowHasher& hasher = state->settings.flow_hasher;
  const auto* b = rec.Pick(hasher.ServiceHash(key, rec.hash_fields, hasher.Hash(key)), &slot);
  if (b != nullptr) e.maglev_backend = ToConfig(*b);
  // Slots and generations are stable across snapshots while a backend exists.
  const FlowLocation flow = probe_ != nullptr ? probe_->FindFlow(key).value_or(FlowLocation{}) : FlowLocation{};
  if (flow.answer.found) {
    e.worker = int32_t(flow.worker);
    if (const auto* pinned = rec.Pinned(flow.answer.backend_slot, flow.answer.backend_generation)) {
      e.backend = ToConfig(*pinned);
      e.decision = absl::StrFormat("flow-table: worker %d holds this flow", flow.worker);
      return e;
    }
  }
  if (e.maglev_backend) {
    e.backend = e.maglev_backend;
    e.decision =
        e.worker >= 0 ? "maglev: the flow's backend is gone, a new one is picked" : "maglev: no worker holds this flow";
  } else {
    e.decision = "no active backend: dropped (no_backend)";
  }
  return e;
}

}  // namespace lb::control
