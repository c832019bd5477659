// Traffic counters (docs/dataplane.md, Traffic): packets and bytes per service and per
// backend, counted by each worker in cells of its own and summed on read.
//
// A service and each of its backends get a counter id when they first appear
// (TrafficTable::Allocate); their records carry it from snapshot to snapshot, so that a
// worker adds to cells[id] with no lookup and no branch. An id is held by a shared handle
// (TrafficId) in the records that name it. It returns to the free list when the last of
// them is destroyed, which is after every snapshot that held one has been reclaimed (RCU):
// no worker can add to it any more. Its cells are zeroed then, so the next holder starts
// from zero. Id 0 is the sink: packets that belong to no service, and records without an
// id (ids exhausted, or a builder without a table), add there, and it is never reported.
//
// Thread model: TrafficCells: its worker adds (Forwarded, NewFlow, Dropped); any thread
// reads. TrafficTable: any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "dataplane/huge_array.h"

namespace lb::dataplane {

// A service's traffic. `packets` and `bytes` (IP length, as the client sent them) went to
// a backend: DSR encapsulated them, NAT translated them. `new_flows`: flows this node
// picked a backend for. `drops`: its packets dropped, whatever the reason.
struct ServiceTraffic {
  uint64_t packets = 0, bytes = 0, new_flows = 0, drops = 0;
  ServiceTraffic& operator+=(const ServiceTraffic& o) {
    packets += o.packets;
    bytes += o.bytes;
    new_flows += o.new_flows;
    drops += o.drops;
    return *this;
  }
};

// What a backend was sent (as ServiceTraffic's packets and bytes).
struct BackendTraffic {
  uint64_t packets = 0, bytes = 0;
  BackendTraffic& operator+=(const BackendTraffic& o) {
    packets += o.packets;
    bytes += o.bytes;
    return *this;
  }
};

// One worker's cells, as plain pointers into memory a TrafficTable owns (default: the
// sink alone, shared, for tests and benchmarks without a table).
class TrafficCells {
 public:
  TrafficCells();

  // Worker lcore only. One writer per cell: a relaxed load and store, a plain add on x86.
  void Forwarded(uint32_t service, uint32_t backend, uint32_t bytes) {
    ServiceCell& s = services_[service];
    Bump(s.packets, 1);
    Bump(s.bytes, bytes);
    BackendCell& b = backends_[backend];
    Bump(b.packets, 1);
    Bump(b.bytes, bytes);
  }
  void NewFlow(uint32_t service) { Bump(services_[service].new_flows, 1); }
  void Dropped(uint32_t service) { Bump(services_[service].drops, 1); }

  // Any thread.
  ServiceTraffic Service(uint32_t id) const;
  BackendTraffic Backend(uint32_t id) const;

 private:
  friend class TrafficTable;
  struct ServiceCell {
    uint64_t packets, bytes, new_flows, drops;
  };
  struct BackendCell {
    uint64_t packets, bytes;
  };

  static void Bump(uint64_t& c, uint64_t n) {
    std::atomic_ref<uint64_t> a(c);
    a.store(a.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  static uint64_t Load(const uint64_t& c) {
    return std::atomic_ref<uint64_t>(const_cast<uint64_t&>(c)).load(std::memory_order_relaxed);
  }
  // Any thread, when no worker can add to `id` (TrafficTable::Release).
  void ClearService(uint32_t id);
  void ClearBackend(uint32_t id);

  ServiceCell* services_;
  BackendCell* backends_;
};

class TrafficTable;

// A counter id, held by every record that names it; released when the last copy goes.
class TrafficId {
 public:
  enum class Kind : uint8_t { kService, kBackend };
  TrafficId(std::shared_ptr<TrafficTable> table, Kind kind, uint32_t value)
      : table_(std::move(table)), kind_(kind), value_(value) {}
  ~TrafficId();
  TrafficId(const TrafficId&) = delete;
  TrafficId& operator=(const TrafficId&) = delete;
  uint32_t value() const { return value_; }

 private:
  std::shared_ptr<TrafficTable> table_;
  Kind kind_;
  uint32_t value_;
};
using TrafficIdHandle = std::shared_ptr<const TrafficId>;
// The id a handle holds; 0 (the sink) for none.
inline uint32_t TrafficIdValue(const TrafficIdHandle& h) { return h == nullptr ? 0 : h->value(); }

class TrafficTable : public std::enable_shared_from_this<TrafficTable> {
 public:
  // Cells for `workers` workers and up to `services` and `backends` ids of each kind alive
  // at once (the sink aside). Memory is mapped at once and faulted in as ids are first
  // used (ids are handed out lowest first, a freed one first of all), so an unused
  // capacity costs address space only: one page fault per page of cells (2 MiB with
  // transparent huge pages, else 4 KiB) over the table's life.
  static std::shared_ptr<TrafficTable> Create(uint32_t workers, uint32_t services, uint32_t backends);

  // Worker `worker`'s cells, for it to add to.
  TrafficCells cells(uint32_t worker) const { return workers_[worker]; }
  uint32_t workers() const { return uint32_t(workers_.size()); }

  // A new id of `kind`; null (the sink, id 0) when every id is taken, counted in
  // exhausted().
  TrafficIdHandle Allocate(TrafficId::Kind kind);

  // Summed over the workers.
  ServiceTraffic Service(uint32_t id) const;
  BackendTraffic Backend(uint32_t id) const;

  // Ids handed out as the sink because none was free: their traffic is not counted.
  uint64_t exhausted() const { return exhausted_.load(std::memory_order_relaxed); }

 private:
  friend class TrafficId;
  struct Ids {
    uint32_t capacity = 0;  // the sink aside
    uint32_t next_unused = 1;
    std::vector<uint32_t> free;  // released ids, reused last-in first-out
  };

  TrafficTable(uint32_t workers, uint32_t services, uint32_t backends);
  void Release(TrafficId::Kind kind, uint32_t id);

  HugeArray<TrafficCells::ServiceCell> service_cells_;  // [worker][id]
  HugeArray<TrafficCells::BackendCell> backend_cells_;
  const uint32_t service_stride_, backend_stride_;  // ids per worker, the sink included
  std::vector<TrafficCells> workers_;
  absl::Mutex mu_;
  Ids service_ids_ ABSL_GUARDED_BY(mu_);
  Ids backend_ids_ ABSL_GUARDED_BY(mu_);
  std::atomic<uint64_t> exhausted_{0};
};

}  // namespace lb::dataplane
