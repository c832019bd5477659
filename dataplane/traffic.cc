#include "dataplane/traffic.h"

namespace lb::dataplane {
namespace {

// Ids per worker, the sink included, rounded up so that each worker's cells start on a
// page of their own: no two workers ever write one cache line.
template <typename Cell>
uint32_t Stride(uint32_t capacity) {
  constexpr uint32_t kPerPage = 4096 / sizeof(Cell);
  static_assert(4096 % sizeof(Cell) == 0);
  return (capacity + 1 + kPerPage - 1) / kPerPage * kPerPage;
}

}  // namespace

TrafficCells::TrafficCells() {
  // The shared sink of cells made without a table: written by any number of workers and
  // never read, so lost updates do not matter (the accesses are atomic: no data race).
  alignas(64) static ServiceCell service_sink;
  alignas(64) static BackendCell backend_sink;
  services_ = &service_sink;
  backends_ = &backend_sink;
}

ServiceTraffic TrafficCells::Service(uint32_t id) const {
  const ServiceCell& c = services_[id];
  return {Load(c.packets), Load(c.bytes), Load(c.new_flows), Load(c.drops)};
}

BackendTraffic TrafficCells::Backend(uint32_t id) const {
  const BackendCell& c = backends_[id];
  return {Load(c.packets), Load(c.bytes)};
}

void TrafficCells::ClearService(uint32_t id) {
  for (uint64_t* c : {&services_[id].packets, &services_[id].bytes, &services_[id].new_flows, &services_[id].drops}) {
    std::atomic_ref<uint64_t>(*c).store(0, std::memory_order_relaxed);
  }
}

void TrafficCells::ClearBackend(uint32_t id) {
  for (uint64_t* c : {&backends_[id].packets, &backends_[id].bytes}) {
    std::atomic_ref<uint64_t>(*c).store(0, std::memory_order_relaxed);
  }
}

TrafficId::~TrafficId() { table_->Release(kind_, value_); }

std::shared_ptr<TrafficTable> TrafficTable::Create(uint32_t workers, uint32_t services, uint32_t backends) {
  return std::shared_ptr<TrafficTable>(new TrafficTable(workers, services, backends));
}

TrafficTable::TrafficTable(uint32_t workers, uint32_t services, uint32_t backends)
    : service_cells_(size_t(workers) * Stride<TrafficCells::ServiceCell>(services),
                     HugeArray<TrafficCells::ServiceCell>::Commit::kOnFirstTouch),
      backend_cells_(size_t(workers) * Stride<TrafficCells::BackendCell>(backends),
                     HugeArray<TrafficCells::BackendCell>::Commit::kOnFirstTouch),
      service_stride_(Stride<TrafficCells::ServiceCell>(services)),
      backend_stride_(Stride<TrafficCells::BackendCell>(backends)) {
  for (uint32_t w = 0; w < workers; ++w) {
    TrafficCells& c = workers_.emplace_back();
    c.services_ = &service_cells_[size_t(w) * service_stride_];
    c.backends_ = &backend_cells_[size_t(w) * backend_stride_];
  }
  service_ids_.capacity = services;
  backend_ids_.capacity = backends;
}

TrafficIdHandle TrafficTable::Allocate(TrafficId::Kind kind) {
  uint32_t id = 0;
  {
    absl::MutexLock lock(&mu_);
    Ids& ids = kind == TrafficId::Kind::kService ? service_ids_ : backend_ids_;
    if (!ids.free.empty()) {
      id = ids.free.back();
      ids.free.pop_back();
    } else if (ids.next_unused <= ids.capacity) {
      id = ids.next_unused++;
    }
  }
  // The sink is no id to give back: its handle belongs to no table.
  if (id == 0) {
    exhausted_.fetch_add(1, std::memory_order_relaxed);  // a statistic: no ordering
    return nullptr;
  }
  return std::make_shared<const TrafficId>(shared_from_this(), kind, id);
}

void TrafficTable::Release(TrafficId::Kind kind, uint32_t id) {
  // No worker can add to `id` now (see the header): clear its cells for the next holder,
  // before it can be handed out again.
  for (TrafficCells& c : workers_) {
    if (kind == TrafficId::Kind::kService) {
      c.ClearService(id);
    } else {
      c.ClearBackend(id);
    }
  }
  absl::MutexLock lock(&mu_);
  (kind == TrafficId::Kind::kService ? service_ids_ : backend_ids_).free.push_back(id);
}

ServiceTraffic TrafficTable::Service(uint32_t id) const {
  ServiceTraffic sum;
  for (const TrafficCells& c : workers_) sum += c.Service(id);
  return sum;
}

BackendTraffic TrafficTable::Backend(uint32_t id) const {
  BackendTraffic sum;
  for (const TrafficCells& c : workers_) sum += c.Backend(id);
  return sum;
}

}  // namespace lb::dataplane
