#include "dataplane/snapshot.h"

#include <arpa/inet.h>

#include <algorithm>

#include "absl/strings/str_format.h"

namespace lb::dataplane {
namespace {

constexpr uint32_t kGenerationMask = (1u << 24) - 1;  // FlowEntry::backend_generation

EncapHeaderSpec EncapSpecFor(const NodeConfig& node, const ServiceConfig& service, const BackendRecord& b) {
  const bool v4 = b.address.IsV4();
  return {.destination = b.address,
          .source = v4 ? node.encap.source_v4 : node.encap.source_v6,
          .gue = service.mode == ForwardingMode::kDsrGue,
          .inner_v4 = service.vip.IsV4(),
          .gue_port = node.encap.gue_port,
          .ttl = node.encap.outer_ttl,
          .destination_mac = b.on_link ? b.neighbor_mac : node.next_hop.gateway_mac,
          .next_hop = node.next_hop};
}

// The share of new flows a backend takes: its weight while active, else none.
uint32_t MaglevWeight(const BackendRecord& b) { return b.in_use && b.state == BackendState::kActive ? b.weight : 0; }

// Whether `a` and `b` (backends by slot) give the same Maglev table at one size: every
// slot takes the same share, and every slot with a share holds the same backend.
bool SameMaglevInputs(const std::vector<BackendRecord>& a, const std::vector<BackendRecord>& b) {
  const size_t n = std::max(a.size(), b.size());
  for (size_t slot = 0; slot < n; ++slot) {
    const uint32_t wa = slot < a.size() ? MaglevWeight(a[slot]) : 0;
    const uint32_t wb = slot < b.size() ? MaglevWeight(b[slot]) : 0;
    if (wa != wb) return false;
    if (wa != 0 && (a[slot].address != b[slot].address || a[slot].port != b[slot].port)) return false;
  }
  return true;
}

void AddFragmentService(uint32_t& slot, uint32_t service, bool all_ports, bool& has_all_ports) {
  if (has_all_ports) return;
  if (all_ports) {
    slot = service;
    has_all_ports = true;
  } else {
    slot = slot == kNoServiceIndex ? service : kAmbiguousServiceIndex;
  }
}

}  // namespace

absl::StatusOr<ServiceRecordPtr> SnapshotBuilder::BuildService(const ServiceConfig& config,
                                                               const ServiceRecord* previous, const NodeConfig& node) {
  auto rec = std::make_shared<ServiceRecord>();
  rec->key = ServiceKey{config.vip, htons(config.port), config.protocol};
  rec->mode = config.mode;
  rec->hash_fields = config.hash_fields;
  rec->table_size = EffectiveTableSize(config);
  if (!config.source_ranges.empty()) rec->set_source_filter(SourceFilter::Build(config.source_ranges));
  rec->traffic = previous != nullptr ? previous->traffic : NewTrafficId(TrafficId::Kind::kService);
  rec->traffic_id = TrafficIdValue(rec->traffic);

  // Slots: a backend the previous record had keeps its slot and generation; a new one
  // takes the lowest free slot and a new generation.
  absl::flat_hash_map<std::pair<IpAddress, uint16_t>, uint32_t> old_slots;
  if (previous != nullptr) {
    old_slots.reserve(previous->backends.size());
    for (uint32_t slot = 0; slot < previous->backends.size(); ++slot) {
      const BackendRecord& b = previous->backends[slot];
      if (b.in_use) old_slots.emplace(std::make_pair(b.address, b.port), slot);
    }
  }
  std::vector<int64_t> slot_of(config.backends.size(), -1);
  std::vector<bool> kept(config.backends.size(), false);  // in `previous`, in the same slot
  std::vector<bool> taken;
  for (size_t j = 0; j < config.backends.size(); ++j) {
    auto it = old_slots.find(std::make_pair(config.backends[j].address, config.backends[j].port));
    if (it == old_slots.end()) continue;
    slot_of[j] = it->second;
    kept[j] = true;
    if (taken.size() <= it->second) taken.resize(it->second + 1, false);
    taken[it->second] = true;
  }
  uint32_t next_free = 0;
  for (size_t j = 0; j < config.backends.size(); ++j) {
    if (slot_of[j] >= 0) continue;
    while (next_free < taken.size() && taken[next_free]) ++next_free;
    slot_of[j] = next_free++;
  }
  size_t slots = 0;
  for (int64_t s : slot_of) slots = std::max<size_t>(slots, size_t(s) + 1);
  if (slots > kMaxMaglevBackends) {
    return absl::ResourceExhaustedError(absl::StrFormat("%d backend slots, at most %d", slots, kMaxMaglevBackends));
  }

  rec->backends.resize(slots);
  rec->backend_slots.reserve(config.backends.size());
  for (size_t j = 0; j < config.backends.size(); ++j) {
    const BackendConfig& c = config.backends[j];
    const uint32_t slot = uint32_t(slot_of[j]);
    BackendRecord& r = rec->backends[slot];
    r.address = c.address;
    r.port = c.port;
    r.state = c.state;
    r.weight = c.weight;
    r.in_use = true;
    if (kept[j]) {
      r.generation = previous->backends[slot].generation;
      r.traffic = previous->backends[slot].traffic;
    } else {
      r.generation = next_backend_generation_;
      next_backend_generation_ = (next_backend_generation_ + 1) & kGenerationMask;
      r.traffic = NewTrafficId(TrafficId::Kind::kBackend);
    }
    r.traffic_id = TrafficIdValue(r.traffic);
    if (auto n = node.neighbors.find(r.address); n != node.neighbors.end()) {
      r.on_link = true;
      r.neighbor_mac = n->second;
    }
    if (config.mode != ForwardingMode::kNat) r.encap = BuildEncapHeader(EncapSpecFor(node, config, r));
    rec->backend_slots.push_back(uint16_t(slot));
  }

  rec->slots_by_address = rec->backend_slots;
  std::sort(rec->slots_by_address.begin(), rec->slots_by_address.end(), [&](uint16_t a, uint16_t b) {
    return std::pair(rec->backends[a].address, rec->backends[a].port) <
           std::pair(rec->backends[b].address, rec->backends[b].port);
  });

  if (previous != nullptr && previous->table_size == rec->table_size &&
      SameMaglevInputs(previous->backends, rec->backends)) {
    rec->set_maglev_table(previous->maglev_table());
    return ServiceRecordPtr(std::move(rec));
  }
  // Maglev over the slots in use; its indexes are then turned into slots.
  std::vector<MaglevBackend> inputs;
  std::vector<uint16_t> input_slot;
  inputs.reserve(config.backends.size());
  input_slot.reserve(config.backends.size());
  for (uint32_t slot = 0; slot < rec->backends.size(); ++slot) {
    const BackendRecord& b = rec->backends[slot];
    if (!b.in_use) continue;
    inputs.push_back({b.address, b.port, MaglevWeight(b)});
    input_slot.push_back(uint16_t(slot));
  }
  auto table = BuildMaglevTable(inputs, rec->table_size);
  if (!table.ok()) return table.status();
  for (uint16_t& entry : *table) entry = input_slot[entry];
  rec->set_maglev_table(std::make_shared<const std::vector<uint16_t>>(*std::move(table)));
  return ServiceRecordPtr(std::move(rec));
}

std::unique_ptr<const Snapshot> SnapshotBuilder::Assemble(std::vector<ServiceRecordPtr> services,
                                                          const NodeConfig& node, const Snapshot* previous) {
  auto snap = std::make_unique<Snapshot>();
  const bool same_keys = previous != nullptr && previous->index_->keys.size() == services.size() &&
                         std::equal(services.begin(), services.end(), previous->index_->keys.begin(),
                                    [](const ServiceRecordPtr& r, const ServiceKey& k) { return r->key == k; });
  if (same_keys) {
    snap->index_ = previous->index_;
  } else {
    auto index = std::make_shared<Snapshot::Index>();
    std::vector<std::pair<ServiceKey, uint32_t>> by_key;
    by_key.reserve(services.size());
    index->keys.reserve(services.size());
    absl::flat_hash_map<IpAddress, std::pair<VipRecord, std::array<bool, 2>>> vips;
    for (uint32_t i = 0; i < services.size(); ++i) {
      const ServiceKey& key = services[i]->key;
      index->keys.push_back(key);
      by_key.emplace_back(key, i);
      auto& [vip, has_all_ports] = vips[key.vip];
      const bool tcp = key.protocol == IPPROTO_TCP;
      AddFragmentService(tcp ? vip.fragment_service_tcp : vip.fragment_service_udp, i, key.port_be == 0,
                         has_all_ports[tcp ? 0 : 1]);
    }
    index->services = FlatMap<ServiceKey, uint32_t>(by_key);
    std::vector<std::pair<IpAddress, VipRecord>> vip_items;
    vip_items.reserve(vips.size());
    for (const auto& [address, v] : vips) vip_items.emplace_back(address, v.first);
    index->vips = FlatMap<IpAddress, VipRecord>(vip_items);
    snap->index_ = std::move(index);
  }
  snap->records_.reserve(services.size());
  for (const ServiceRecordPtr& r : services) snap->records_.push_back(r.get());
  snap->services_ = std::move(services);

  snap->nat_ = node.nat;
  snap->mtu_ = node.mtu;
  snap->next_hop_ = node.next_hop;
  snap->gateway_known_ = node.next_hop.gateway_mac != MacAddress{};
  snap->icmp_too_big_per_second_ = node.icmp_too_big_per_second;
  snap->exception_budgets_ = node.exception_budgets;
  snap->vip_cidrs_ = node.vip_cidrs;
  snap->control_peers_ = node.control_peers;
  snap->flow_sync_peers_ = node.flow_sync_peers;
  snap->flow_sync_port_ = node.flow_sync_port;
  const FlowTimeouts& t = node.timeouts;
  snap->timeouts_.fill(t.other);
  snap->timeouts_[uint8_t(FlowState::kUdp)] = t.udp;
  snap->timeouts_[uint8_t(FlowState::kTcpSynSent)] = t.tcp_syn_sent;
  snap->timeouts_[uint8_t(FlowState::kTcpMidstream)] = t.tcp_syn_sent;
  snap->timeouts_[uint8_t(FlowState::kTcpEstablished)] = t.tcp_established;
  snap->timeouts_[uint8_t(FlowState::kTcpClosing)] = t.tcp_closing;
  snap->generation_ = next_generation_++;
  return snap;
}

absl::StatusOr<std::unique_ptr<const Snapshot>> SnapshotBuilder::Build(const DataplaneConfig& config) {
  if (absl::Status s = ValidateConfig(config, limits_); !s.ok()) return s;
  const uint32_t generation_before = next_backend_generation_;
  std::vector<ServiceRecordPtr> records;
  records.reserve(config.services.size());
  for (size_t i = 0; i < config.services.size(); ++i) {
    const ServiceConfig& sc = config.services[i];
    auto last = last_built_.find(ServiceKey{sc.vip, htons(sc.port), sc.protocol});
    auto rec = BuildService(sc, last == last_built_.end() ? nullptr : last->second.get(), config);
    if (!rec.ok()) {
      next_backend_generation_ = generation_before;
      return absl::InternalError(absl::StrFormat("services[%d]: %s", i, rec.status().message()));
    }
    records.push_back(*std::move(rec));
  }
  last_built_.clear();
  for (const ServiceRecordPtr& r : records) last_built_.emplace(r->key, r);
  return std::unique_ptr<const Snapshot>(Assemble(std::move(records), config));
}

}  // namespace lb::dataplane
