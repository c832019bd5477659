#include "dataplane/snapshot.h"

#include <arpa/inet.h>

#include "absl/strings/str_format.h"

namespace lb::dataplane {
namespace {

constexpr uint32_t kGenerationMask = (1u << 24) - 1;  // FlowEntry::backend_generation

EncapHeaderSpec EncapSpecFor(const DataplaneConfig& config, size_t service, const BackendRecord& b) {
  const bool v4 = b.address.IsV4();
  return {.destination = b.address,
          .source = v4 ? config.encap.source_v4 : config.encap.source_v6,
          .gue = config.services[service].mode == ForwardingMode::kDsrGue,
          .inner_v4 = config.services[service].vip.IsV4(),
          .gue_port = config.encap.gue_port,
          .ttl = config.encap.outer_ttl,
          .destination_mac = b.on_link ? b.neighbor_mac : config.next_hop.gateway_mac,
          .next_hop = config.next_hop};
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

uint32_t SnapshotBuilder::TakeSlot() {
  if (!free_slots_.empty()) {
    const uint32_t slot = free_slots_.front();
    free_slots_.pop_front();
    return slot;
  }
  slot_generations_.push_back(0);
  return uint32_t(slot_generations_.size() - 1);
}

absl::StatusOr<std::unique_ptr<const Snapshot>> SnapshotBuilder::Build(
    const DataplaneConfig& config) {
  if (absl::Status s = ValidateConfig(config, limits_); !s.ok()) return s;

  auto snap = std::make_unique<Snapshot>();
  // Maglev tables first: the only step that could fail after validation.
  snap->services_.reserve(config.services.size());
  for (size_t i = 0; i < config.services.size(); ++i) {
    const ServiceConfig& sc = config.services[i];
    std::vector<MaglevBackend> active;
    active.reserve(sc.backends.size());
    for (const BackendConfig& b : sc.backends) {
      const bool takes_new = b.state == BackendState::kActive;
      active.push_back({b.address, b.port, takes_new ? b.weight : 0});
    }
    auto table = BuildMaglevTable(active, sc.table_size);
    if (!table.ok()) {
      return absl::InternalError(absl::StrFormat("services[%d]: %s", i, table.status().message()));
    }
    ServiceRecord rec;
    rec.key = ServiceKey{sc.vip, htons(sc.port), sc.protocol};
    rec.mode = sc.mode;
    rec.hash_fields = sc.hash_fields;
    rec.table_size = sc.table_size;
    rec.maglev = *std::move(table);
    snap->services_.push_back(std::move(rec));
  }

  // Slots: keep each surviving backend's slot; new ones take the oldest free slot.
  absl::flat_hash_map<BackendIdentity, uint32_t> next_slots;
  for (size_t i = 0; i < config.services.size(); ++i) {
    ServiceRecord& rec = snap->services_[i];
    for (const BackendConfig& b : config.services[i].backends) {
      const BackendIdentity id{rec.key, b.address, b.port};
      auto it = slots_.find(id);
      const uint32_t slot = it != slots_.end() ? it->second : TakeSlot();
      next_slots.emplace(id, slot);
      rec.backend_slots.push_back(slot);
    }
  }
  for (const auto& [id, slot] : slots_) {
    if (next_slots.contains(id)) continue;
    slot_generations_[slot] = (slot_generations_[slot] + 1) & kGenerationMask;
    free_slots_.push_back(slot);
  }
  slots_ = std::move(next_slots);

  snap->backends_.resize(slot_generations_.size());
  for (size_t i = 0; i < config.services.size(); ++i) {
    const auto& backends = config.services[i].backends;
    for (size_t j = 0; j < backends.size(); ++j) {
      const uint32_t slot = snap->services_[i].backend_slots[j];
      BackendRecord& r = snap->backends_[slot];
      r.address = backends[j].address;
      r.port = backends[j].port;
      r.state = backends[j].state;
      r.weight = backends[j].weight;
      r.in_use = true;
      r.generation = slot_generations_[slot];
      r.service_index = uint32_t(i);
      if (auto n = config.neighbors.find(r.address); n != config.neighbors.end()) {
        r.on_link = true;
        r.neighbor_mac = n->second;
      }
      if (config.services[i].mode != ForwardingMode::kNat) r.encap = BuildEncapHeader(EncapSpecFor(config, i, r));
    }
  }

  std::vector<std::pair<ServiceKey, uint32_t>> index;
  absl::flat_hash_map<IpAddress, std::pair<VipRecord, std::array<bool, 2>>> vips;
  for (uint32_t i = 0; i < snap->services_.size(); ++i) {
    const ServiceKey& key = snap->services_[i].key;
    index.emplace_back(key, i);
    auto& [vip, has_all_ports] = vips[key.vip];
    const bool tcp = key.protocol == IPPROTO_TCP;
    AddFragmentService(tcp ? vip.fragment_service_tcp : vip.fragment_service_udp, i,
                       key.port_be == 0, has_all_ports[tcp ? 0 : 1]);
  }
  snap->service_index_ = FlatMap<ServiceKey, uint32_t>(index);
  std::vector<std::pair<IpAddress, VipRecord>> vip_items;
  for (const auto& [address, v] : vips) vip_items.emplace_back(address, v.first);
  snap->vips_ = FlatMap<IpAddress, VipRecord>(vip_items);

  snap->nat_ = config.nat;
  snap->mtu_ = config.mtu;
  snap->next_hop_ = config.next_hop;
  snap->gateway_known_ = config.next_hop.gateway_mac != MacAddress{};
  snap->icmp_too_big_per_second_ = config.icmp_too_big_per_second;
  const FlowTimeouts& t = config.timeouts;
  snap->timeouts_.fill(t.other);
  snap->timeouts_[uint8_t(FlowState::kUdp)] = t.udp;
  snap->timeouts_[uint8_t(FlowState::kTcpSynSent)] = t.tcp_syn_sent;
  snap->timeouts_[uint8_t(FlowState::kTcpEstablished)] = t.tcp_established;
  snap->timeouts_[uint8_t(FlowState::kTcpClosing)] = t.tcp_closing;
  snap->generation_ = next_generation_++;
  return std::unique_ptr<const Snapshot>(std::move(snap));
}

}  // namespace lb::dataplane
