// Snapshot: one immutable, complete version of the dataplane's tables (VIPs, services,
// backends, Maglev tables, encapsulation and next-hop parameters).
//
// SnapshotBuilder compiles a DataplaneConfig into a Snapshot on the control thread; the
// SnapshotStore publishes it to workers, which only read it. Nothing in a published
// Snapshot changes, so no update is ever seen half-applied.
//
// Flows outlive snapshots, so a flow entry names its backend by *slot* and the slot's
// *generation*. The builder gives a backend (identified by its service's VIP, protocol
// and port and its own address and port) the same slot in every snapshot while it
// exists; when it is removed its slot's generation changes, so flows pinned to it are
// recognised as orphaned even after the slot is reused.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "dataplane/config.h"
#include "dataplane/encap.h"
#include "dataplane/flat_map.h"
#include "dataplane/hash.h"

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

// Per VIP address: which service takes its non-first fragments, per protocol (they
// carry no port). kNoServiceIndex when the VIP has no service of that protocol,
// kAmbiguousServiceIndex when it has several and none for all ports.
struct VipRecord {
  uint32_t fragment_service_tcp = kNoServiceIndex;
  uint32_t fragment_service_udp = kNoServiceIndex;
};

struct ServiceRecord {
  ServiceKey key;
  ForwardingMode mode;
  HashFields hash_fields;
  uint32_t table_size;
  std::vector<uint16_t> maglev;         // index into backend_slots; empty: no active backend
  std::vector<uint32_t> backend_slots;  // in configuration order
};

struct BackendRecord {
  IpAddress address;
  uint16_t port = 0;
  BackendState state = BackendState::kDown;
  bool in_use = false;
  uint32_t weight = 0;
  uint32_t generation = 0;     // 24 bits, as stored in FlowEntry
  uint32_t service_index = 0;  // index of its service in this snapshot
  bool on_link = false;        // on the node's segment: sent to neighbor_mac, not the gateway
  MacAddress neighbor_mac{};
  EncapHeader encap;           // DSR services: the headers its packets get
};

class Snapshot {
 public:
  uint64_t generation() const { return generation_; }

  const VipRecord* FindVip(const IpAddress& address) const { return vips_.Find(address); }
  // The service for (vip, protocol, port): an exact match first, then the all-ports one.
  const ServiceRecord* FindService(const IpAddress& vip, uint8_t protocol,
                                   uint16_t port_be) const {
    const uint32_t* i = service_index_.Find(ServiceKey{vip, port_be, protocol});
    if (i == nullptr && port_be != 0) i = service_index_.Find(ServiceKey{vip, 0, protocol});
    return i == nullptr ? nullptr : &services_[*i];
  }
  const std::vector<ServiceRecord>& services() const { return services_; }
  // nullptr for a slot that holds no backend in this snapshot.
  const BackendRecord* backend(uint32_t slot) const {
    return slot < backends_.size() && backends_[slot].in_use ? &backends_[slot] : nullptr;
  }
  const std::vector<BackendRecord>& backends() const { return backends_; }

  // Maglev (§3.4): the backend `svc`'s table gives a flow of service hash `hash`, and its
  // slot. nullptr when the service has no active backend.
  const BackendRecord* Pick(const ServiceRecord& svc, uint32_t hash, uint32_t* slot) const {
    if (svc.maglev.empty()) return nullptr;
    *slot = svc.backend_slots[svc.maglev[ReduceToRange(hash, uint32_t(svc.maglev.size()))]];
    return backend(*slot);
  }
  // The backend a flow pinned to (slot, generation) in `svc` (a service of this snapshot)
  // may still use: nullptr when it was removed (its slot's generation moved on), belongs
  // to another service, or is down.
  const BackendRecord* Pinned(const ServiceRecord& svc, uint32_t slot, uint32_t generation) const {
    const BackendRecord* b = backend(slot);
    if (b == nullptr || b->generation != generation || &services_[b->service_index] != &svc ||
        b->state == BackendState::kDown) {
      return nullptr;
    }
    return b;
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
  // The idle timeout of a flow in state `s` (FlowTimeouts), by table lookup.
  Millis Timeout(FlowState s) const { return timeouts_[uint8_t(s) & 7]; }

 private:
  friend class SnapshotBuilder;

  uint64_t generation_ = 0;
  FlatMap<IpAddress, VipRecord> vips_;
  FlatMap<ServiceKey, uint32_t> service_index_;
  std::vector<ServiceRecord> services_;
  std::vector<BackendRecord> backends_;  // by slot
  NatConfig nat_;
  uint16_t mtu_ = 1500;
  NextHop next_hop_;
  bool gateway_known_ = false;
  uint32_t icmp_too_big_per_second_ = 0;
  std::array<Millis, 8> timeouts_{};  // by FlowState
};

// Compiles configurations into snapshots. Control thread only.
class SnapshotBuilder {
 public:
  explicit SnapshotBuilder(Limits limits = {}) : limits_(limits) {}

  // Validates `config` and builds its snapshot with the next generation number. On error
  // nothing changes (slot assignments included).
  absl::StatusOr<std::unique_ptr<const Snapshot>> Build(const DataplaneConfig& config);

 private:
  struct BackendIdentity {
    ServiceKey service;
    IpAddress address;
    uint16_t port;
    friend bool operator==(const BackendIdentity&, const BackendIdentity&) = default;
    template <typename H>
    friend H AbslHashValue(H h, const BackendIdentity& b) {
      return H::combine(std::move(h), b.service, b.address, b.port);
    }
  };

  uint32_t TakeSlot();

  Limits limits_;
  uint64_t next_generation_ = 1;
  absl::flat_hash_map<BackendIdentity, uint32_t> slots_;
  std::vector<uint32_t> slot_generations_;
  // Freed slots, reused oldest first so that a slot's generation changes as rarely as
  // possible.
  std::deque<uint32_t> free_slots_;
};

}  // namespace lb::dataplane
