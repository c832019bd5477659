// Snapshot: one immutable, complete version of the dataplane's tables (VIPs, services,
// backends, Maglev tables, encapsulation and next-hop parameters).
//
// A Snapshot is assembled from per-service ServiceRecords, which are immutable and shared
// between consecutive snapshots (std::shared_ptr): a change rebuilds the records of the
// services it touches and re-indexes the rest, so its cost follows what it changes, not
// the size of the configuration. SnapshotBuilder builds them on the control thread; the
// SnapshotStore publishes a snapshot to workers, which only read it. Nothing in a
// published Snapshot changes, so no update is ever seen half-applied.
//
// Flows outlive snapshots, so a flow entry names its backend by *slot* (the backend's
// index in its service's record, kept while the backend exists) and *generation* (a
// number the builder gives each backend when it appears, unique over 2^24 appearances).
// A flow pinned to a removed backend is recognised as orphaned even after its slot is
// reused, and even when another service now matches the flow.
#pragma once

#include <array>
#include <algorithm>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "common/config.h"
#include "dataplane/encap.h"
#include "dataplane/flat_map.h"
#include "dataplane/flow_table.h"
#include "dataplane/source_filter.h"
#include "dataplane/traffic.h"
#include "common/hash.h"

namespace lb::dataplane {

struct ServiceKey {
  IpAddress vip;
  uint16_t port_be = 0;  // network order; 0: all ports
  uint8_t protocol = 0;
  uint8_t pad = 0;
  friend bool operator==(const ServiceKey&, const ServiceKey&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const ServiceKey& k) {
    return H::combine(std::move(h), k.vip, k.port_be, k.protocol);
  }
};

inline constexpr uint32_t kNoServiceIndex = UINT32_MAX;
inline constexpr uint32_t kAmbiguousServiceIndex = UINT32_MAX - 1;

// Per VIP address: which service (an index into Snapshot::services()) takes its
// non-first fragments, per protocol (they carry no port). kNoServiceIndex when the VIP has
// no service of that protocol, kAmbiguousServiceIndex when it has several and none for
// all ports.
struct VipRecord {
  uint32_t fragment_service_tcp = kNoServiceIndex;
  uint32_t fragment_service_udp = kNoServiceIndex;
};

struct BackendRecord {
  IpAddress address;
  uint16_t port = 0;
  BackendState state = BackendState::kDown;
  bool in_use = false;  // false: a free slot
  uint32_t weight = 0;
  uint32_t generation = 0;  // 24 bits, as stored in FlowEntry
  bool on_link = false;     // on the node's segment: sent to neighbor_mac, not the gateway
  MacAddress neighbor_mac{};
  // Its traffic counters (traffic.h): the id workers add to (0: the sink; next to the
  // fields every packet reads), and the handle that holds it while any record names it.
  // Kept while the backend keeps its slot.
  uint32_t traffic_id = 0;
  EncapHeader encap;  // DSR services: the headers its packets get
  TrafficIdHandle traffic;
};

// One service as workers read it. Immutable once built; shared by every snapshot in which
// the service is unchanged.
class ServiceRecord {
 public:
  ServiceKey key;
  ForwardingMode mode = ForwardingMode::kDsrIpip;
  HashFields hash_fields = HashFields::kFiveTuple;
  uint32_t table_size = 0;  // M of the Maglev table in use
  // Its traffic counters (as BackendRecord's), kept by every version of the service.
  uint32_t traffic_id = 0;
  TrafficIdHandle traffic;
  std::vector<BackendRecord> backends;     // by slot
  std::vector<uint16_t> backend_slots;     // in configuration order
  std::vector<uint16_t> slots_by_address;  // the slots in use, by (address, port)

  // The Maglev table: a backend slot per entry; empty when no backend takes new flows.
  std::span<const uint16_t> maglev() const { return {maglev_data_, maglev_size_}; }
  // The table object, shared with the records of earlier and later versions of the
  // service whose Maglev inputs are the same.
  const std::shared_ptr<const std::vector<uint16_t>>& maglev_table() const { return maglev_; }
  void set_maglev_table(std::shared_ptr<const std::vector<uint16_t>> table) {
    maglev_ = std::move(table);
    maglev_data_ = maglev_ == nullptr ? nullptr : maglev_->data();
    maglev_size_ = maglev_ == nullptr ? 0 : uint32_t(maglev_->size());
  }

  // Maglev (§3.4): the backend this service's table gives a flow of service hash `hash`,
  // and its slot. nullptr when the service has no active backend.
  const BackendRecord* Pick(uint32_t hash, uint32_t* slot) const {
    if (maglev_size_ == 0) return nullptr;
    *slot = maglev_data_[ReduceToRange(hash, maglev_size_)];
    return &backends[*slot];
  }
  // The backend a flow pinned to (slot, generation) may still use: nullptr when it was
  // removed (no backend of this service has that generation now) or is down.
  const BackendRecord* Pinned(uint32_t slot, uint32_t generation) const {
    const BackendRecord* b = Backend(slot, generation);
    return b == nullptr || b->state == BackendState::kDown ? nullptr : b;
  }
  // The backend at `address` and `port` (flows a peer node pinned name it so), and its
  // slot; nullptr when the service has none there. O(log backends).
  const BackendRecord* FindBackend(const IpAddress& address, uint16_t port, uint32_t* slot) const {
    auto it = std::lower_bound(slots_by_address.begin(), slots_by_address.end(), std::pair(address, port),
                               [this](uint16_t s, const std::pair<IpAddress, uint16_t>& k) {
                                 return std::pair(backends[s].address, backends[s].port) < k;
                               });
    if (it == slots_by_address.end() || backends[*it].address != address || backends[*it].port != port) return nullptr;
    *slot = *it;
    return &backends[*it];
  }
  // The backend in `slot` if it still has `generation` (in any state); else nullptr.
  const BackendRecord* Backend(uint32_t slot, uint32_t generation) const {
    if (slot >= backends.size()) return nullptr;
    const BackendRecord& b = backends[slot];
    return b.in_use && b.generation == generation ? &b : nullptr;
  }

  // Whether the service takes packets from `client`: all, unless it has source ranges.
  bool Admits(const IpAddress& client) const { return source_filter_ == nullptr || source_filter_->Admits(client); }
  void set_source_filter(std::shared_ptr<const SourceFilter> filter) { source_filter_ = std::move(filter); }

 private:
  std::shared_ptr<const SourceFilter> source_filter_;  // null: every client
  std::shared_ptr<const std::vector<uint16_t>> maglev_;
  // The hot path's view of maglev_: one load less per packet than through the shared_ptr.
  const uint16_t* maglev_data_ = nullptr;
  uint32_t maglev_size_ = 0;
};

using ServiceRecordPtr = std::shared_ptr<const ServiceRecord>;

class Snapshot {
 public:
  uint64_t generation() const { return generation_; }

  const VipRecord* FindVip(const IpAddress& address) const { return index_->vips.Find(address); }
  // The service for (vip, protocol, port): an exact match first, then the all-ports one.
  const ServiceRecord* FindService(const IpAddress& vip, uint8_t protocol, uint16_t port_be) const {
    const uint32_t* i = index_->services.Find(ServiceKey{vip, port_be, protocol});
    if (i == nullptr && port_be != 0) i = index_->services.Find(ServiceKey{vip, 0, protocol});
    return i == nullptr ? nullptr : records_[*i];
  }
  const std::vector<ServiceRecordPtr>& services() const { return services_; }
  const ServiceRecord& service(uint32_t index) const { return *records_[index]; }

  // Maglev (§3.4): the backend `svc`'s table gives a flow of service hash `hash`, and its
  // slot. nullptr when the service has no active backend.
  static const BackendRecord* Pick(const ServiceRecord& svc, uint32_t hash, uint32_t* slot) {
    return svc.Pick(hash, slot);
  }
  // The backend a flow pinned to (slot, generation) in `svc` may still use.
  static const BackendRecord* Pinned(const ServiceRecord& svc, uint32_t slot, uint32_t generation) {
    return svc.Pinned(slot, generation);
  }

  // NAT: the index of SNAT address `a`, or -1 (at most kMaxSnatAddresses to compare).
  int SnatIndex(const IpAddress& a) const {
    for (size_t i = 0; i < nat_.addresses.size(); ++i) {
      if (nat_.addresses[i] == a) return int(i);
    }
    return -1;
  }
  const NatConfig& nat() const { return nat_; }
  uint16_t mtu() const { return mtu_; }
  const NextHop& next_hop() const { return next_hop_; }
  bool gateway_known() const { return gateway_known_; }
  uint32_t icmp_too_big_per_second() const { return icmp_too_big_per_second_; }
  uint32_t exception_per_second(ExceptionClass c) const { return exception_budgets_[c]; }
  // Whether `a` is inside an announced VIP CIDR (a handful: compared one by one).
  bool InVipCidrs(const IpAddress& a) const {
    for (const IpPrefix& p : vip_cidrs_) {
      if (p.Contains(a)) return true;
    }
    return false;
  }
  // Whether `a` is one of the node's BGP and BFD peers (NodeConfig::control_peers; a
  // handful: compared one by one).
  bool IsControlPeer(const IpAddress& a) const {
    for (const IpAddress& p : control_peers_) {
      if (p == a) return true;
    }
    return false;
  }
  // Whether UDP from `a` to `port` is flow sync from a peer node (NodeConfig).
  bool IsFlowSync(const IpAddress& a, uint16_t port) const {
    return port == flow_sync_port_ && port != 0 && std::ranges::find(flow_sync_peers_, a) != flow_sync_peers_.end();
  }
  // The idle timeout of a flow in state `s` (FlowTimeouts), by table lookup.
  Millis Timeout(FlowState s) const { return timeouts_[uint8_t(s) & 7]; }

 private:
  friend class SnapshotBuilder;

  // What depends only on the services' keys, in order: shared by consecutive snapshots
  // whose services are the same (a backend change does not rebuild it).
  struct Index {
    std::vector<ServiceKey> keys;            // services_[i]'s key
    FlatMap<ServiceKey, uint32_t> services;  // key -> index into records_
    FlatMap<IpAddress, VipRecord> vips;
  };

  uint64_t generation_ = 0;
  std::shared_ptr<const Index> index_;
  std::vector<const ServiceRecord*> records_;  // services_ without the shared_ptr, for the hot path
  std::vector<ServiceRecordPtr> services_;
  NatConfig nat_;
  uint16_t mtu_ = 1500;
  NextHop next_hop_;
  bool gateway_known_ = false;
  uint32_t icmp_too_big_per_second_ = 0;
  ExceptionBudgets exception_budgets_;
  std::vector<IpPrefix> vip_cidrs_;
  std::vector<IpAddress> control_peers_;
  std::vector<IpAddress> flow_sync_peers_;
  uint16_t flow_sync_port_ = 0;
  std::array<Millis, 8> timeouts_{};  // by FlowState
};

// Builds service records and assembles snapshots. Control thread only.
class SnapshotBuilder {
 public:
  // `traffic` (may be null: every record counts into the sink) gives services and
  // backends their traffic counter ids.
  explicit SnapshotBuilder(Limits limits = {}, std::shared_ptr<TrafficTable> traffic = nullptr)
      : limits_(limits), traffic_(std::move(traffic)) {}

  // The record of `config` (validated by the caller) for a node with `node`'s settings.
  // `previous` is the service's record in the snapshot in force, or null for a new
  // service: a backend it had keeps its slot and generation, and its Maglev table is
  // shared when the table's inputs (size, and the address, port and share of each
  // backend taking new flows) are the same. Otherwise a new table is computed.
  absl::StatusOr<ServiceRecordPtr> BuildService(const ServiceConfig& config, const ServiceRecord* previous,
                                                const NodeConfig& node);

  // A snapshot of `services` (distinct keys) with `node`'s settings and the next
  // snapshot generation. Never rebuilds a record; the VIP and service indexes are shared
  // with `previous` (the snapshot in force, or null) when its services have the same keys
  // in the same order, else built anew: O(services) pointer copies for a backend change.
  std::unique_ptr<const Snapshot> Assemble(std::vector<ServiceRecordPtr> services, const NodeConfig& node,
                                           const Snapshot* previous = nullptr);

  // Convenience for tests and benchmarks: validates `config` and builds its whole
  // snapshot, each service's record from the one the last successful Build() made for the
  // same key. On error nothing changes.
  absl::StatusOr<std::unique_ptr<const Snapshot>> Build(const DataplaneConfig& config);

 private:
  // A new traffic id of `kind`, and its value (0: the sink).
  TrafficIdHandle NewTrafficId(TrafficId::Kind kind) const {
    return traffic_ == nullptr ? nullptr : traffic_->Allocate(kind);
  }

  Limits limits_;
  std::shared_ptr<TrafficTable> traffic_;
  uint64_t next_generation_ = 1;
  uint32_t next_backend_generation_ = 1;
  absl::flat_hash_map<ServiceKey, ServiceRecordPtr> last_built_;  // Build() only
};

}  // namespace lb::dataplane
