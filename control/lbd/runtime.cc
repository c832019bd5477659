#include "control/lbd/runtime.h"

#include <net/if.h>

#include <thread>

#include <glog/logging.h>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "control/lbd/host_interface.h"
#include "control/lbd/neighbors.h"
#include "dataplane/dpdk/services.h"

namespace lb::control {

absl::StatusOr<std::unique_ptr<Runtime>> Runtime::Start(const RuntimeOptions& options,
                                                        dataplane::SnapshotStore* store) {
  std::unique_ptr<Runtime> rt(new Runtime(options));
  std::vector<uint32_t> lcores;
  unsigned lcore;
  RTE_LCORE_FOREACH_WORKER(lcore) lcores.push_back(lcore);
  if (lcores.empty()) {
    return absl::InvalidArgumentError(
        "no worker lcore: give EAL at least two lcores (e.g. -l 0-1); the main lcore does "
        "control work and each other lcore runs a worker");
  }
  const uint16_t workers = uint16_t(lcores.size());
  auto pool = dataplane::dpdk::MbufPool::Create("lbd_mbufs", options.mbufs, 256, RTE_MBUF_DEFAULT_BUF_SIZE);
  if (!pool.ok()) return pool.status();
  rt->pool_.emplace(*std::move(pool));
  if (absl::Status s = rt->OpenWire(workers); !s.ok()) return s;
  auto from_kernel = dataplane::dpdk::MbufRing::Create("lbd_from_kernel", 1024, RING_F_SP_ENQ | RING_F_SC_DEQ);
  if (!from_kernel.ok()) return from_kernel.status();
  rt->from_kernel_.emplace(*std::move(from_kernel));
  LOG(INFO) << "port " << rt->wire_->name() << " (" << rt->wire_->driver() << "), MAC " << rt->wire_->MacString()
            << ", " << workers << " RX queue(s)" << (rt->wire_->fast_free() ? ", TX mbuf fast free" : "");
  if (rt->af_packet_ != nullptr) {
    LOG(INFO) << "port " << options.port << ": " << workers << " AF_PACKET socket(s) on " << rt->af_packet_->iface()
              << ", " << options.af_packet_frames << " RX frames of "
              << dataplane::dpdk::AfPacketPort::kFrameSize / 1024 << " kB each; GSO frames are segmented, "
              << "partial checksums completed; ethdev " << rt->wire_->name() << " (dpdk-dumpcap -i "
              << rt->wire_->name() << ")";
  } else if (rt->wire_->driver() == "net_af_packet") {
    LOG(WARNING) << "port " << rt->wire_->name() << ": DPDK's net_af_packet cuts the kernel's GSO frames (TCP "
                 << "from senders with offloads on, or merged by GRO) at its frame size: use --port=af_packet:IFACE";
  }
  if (rt->wire_->SupportsFlowRules()) {
    LOG(INFO) << "port " << rt->wire_->name()
              << ": the PMD accepts rte_flow rules, but lbd classifies control traffic in "
                 "software on every port in this version";
  } else {
    LOG(INFO) << "port " << rt->wire_->name() << ": no rte_flow support in " << rt->wire_->driver()
              << ": control traffic is classified in software";
  }
  // The exception path: a TAP with the wire port's MAC, so that the kernel answers ARP
  // and ND for the node's addresses as the port.
  auto tap = dataplane::dpdk::Port::Create(
      absl::StrFormat("net_tap_%s,iface=%s,mac=%s", options.tap_name, options.tap_name, rt->wire_->MacString()),
      // net_tap needs as many RX as TX queues; the kernel spreads its packets over the
      // RX queues, and the main lcore polls them all.
      {.rx_queues = workers,
       .tx_queues = workers,
       .rx_descriptors = 512,
       .tx_descriptors = 512,
       .pool = rt->pool_->get()});
  if (!tap.ok()) return tap.status();
  rt->tap_ = *std::move(tap);
  LOG(INFO) << "exception path: kernel interface " << options.tap_name;
  if (!options.tap_addresses.empty()) {
    if (absl::Status s = ConfigureInterface(options.tap_name, options.tap_addresses); !s.ok()) return s;
    LOG(INFO) << options.tap_name << ": " << options.tap_addresses.size() << " address(es) added, up";
  }

  std::vector<rte_ring*> nat_inboxes;
  if (options.nat_addresses > 0 && workers > 1) {
    for (uint16_t i = 0; i < workers; ++i) {
      auto ring = dataplane::dpdk::MbufRing::Create(absl::StrFormat("lbd_nat_inbox_%d", i), 4096, RING_F_SC_DEQ);
      if (!ring.ok()) return ring.status();
      nat_inboxes.push_back(ring->get());
      rt->nat_inboxes_.push_back(*std::move(ring));
    }
  }
  const bool sync = !options.flow_sync.peers.empty();
  for (uint16_t i = 0; sync && i < workers; ++i) {
    constexpr uint32_t kSyncRing = 16384;  // flows; a ring per worker and direction
    for (auto* rings : {&rt->sync_announce_, &rt->sync_learn_}) {
      auto ring = dataplane::dpdk::ElemRing::Create(
          absl::StrFormat("lbd_sync_%s_%d", rings == &rt->sync_announce_ ? "out" : "in", i),
          sizeof(dataplane::SyncedFlow), kSyncRing, RING_F_SP_ENQ | RING_F_SC_DEQ);
      if (!ring.ok()) return ring.status();
      rings->push_back(*std::move(ring));
    }
  }
  rt->traffic_ = dataplane::TrafficTable::Create(workers, options.traffic_services, options.traffic_backends);
  for (uint16_t i = 0; i < workers; ++i) {
    auto slot = std::make_unique<WorkerSlot>();
    slot->lcore = lcores[i];
    if (absl::Status s = store->RegisterWorker(i); !s.ok()) return s;
    slot->worker = std::make_unique<dataplane::Worker>(
        dataplane::Worker::Options{.id = i,
                                   .flow_capacity = options.flow_capacity,
                                   .workers = workers,
                                   .nat_addresses = options.nat_addresses,
                                   .nat_port_min = options.nat_port_min,
                                   .nat_port_max = options.nat_port_max,
                                   // Random64 is seeded from the CPU's entropy at EAL init.
                                   .nat_port_secret = dataplane::dpdk::Random64() | 1,
                                   .flow_hasher = options.flow_hasher,
                                   // The af_packet port completes them itself, exactly.
                                   .complete_partial_checksums = rt->wire_->driver() == "net_af_packet",
                                   .flow_sync_announce = sync ? rt->sync_announce_[i].get() : nullptr,
                                   .flow_sync_refresh_ms = options.flow_sync_refresh_ms,
                                   .nat_adopted_capacity = sync ? options.flow_sync_nat_sessions : 0,
                                   .traffic = rt->traffic_->cells(i)},
        store);
    slot->run.nat_inboxes = nat_inboxes;
    slot->run.ports = {{{rt->wire_->id(), i}, {rt->tap_->id(), i}, rt->af_packet_ ? rt->af_packet_->pump(i) : nullptr}};
    slot->run.idle_polls = options.idle_polls;
    slot->run.idle_sleep_us = options.idle_sleep_us;
    if (i == 0) slot->run.from_kernel = rt->from_kernel_->get();
    if (sync) slot->run.flow_sync_learn = rt->sync_learn_[i].get();
    rt->workers_.push_back(std::move(slot));
  }
  rt->gateway_mac_ = options.gateway_mac;
  if (sync) {
    std::vector<rte_ring*> announce, learn;
    for (size_t i = 0; i < workers; ++i) {
      announce.push_back(rt->sync_announce_[i].get());
      learn.push_back(rt->sync_learn_[i].get());
    }
    FlowSyncer::Options sync_options = options.flow_sync;
    sync_options.config_generation = [store] { return store->published_generation(); };
    auto syncer = FlowSyncer::Start(sync_options, std::move(announce), std::move(learn));
    if (!syncer.ok()) return syncer.status();
    rt->syncer_ = *std::move(syncer);
    rt->syncer_started_ = dataplane::dpdk::Cycles();
    LOG(INFO) << "flow sync with " << absl::StrJoin(rt->syncer_->View().peers, ", ") << " on UDP port "
              << options.flow_sync.port << "; active flows announced every " << options.flow_sync_refresh_ms << " ms";
  }
  for (auto& slot : rt->workers_) {
    WorkerSlot* w = slot.get();
    auto task =
        dataplane::dpdk::LcoreTask::Launch(w->lcore, [w, stop = &rt->stop_workers_] { w->worker->Run(w->run, *stop); });
    if (!task.ok()) {
      rt->StopWorkers();
      return task.status();
    }
    w->task = *std::move(task);
    LOG(INFO) << "worker " << w->worker->id() << " on lcore " << w->lcore
              << (options.idle_polls ? absl::StrFormat(", idle back-off after %d empty polls", options.idle_polls)
                                     : ", busy-polling");
  }
  return rt;
}

absl::Status Runtime::OpenWire(uint16_t workers) {
  std::string ethdev = options_.port;
  std::optional<rte_ether_addr> mac;
  std::string iface;  // the kernel interface behind the port, if any
  if (options_.port.starts_with(dataplane::dpdk::AfPacketPort::kScheme)) {
    iface = options_.port.substr(dataplane::dpdk::AfPacketPort::kScheme.size());
    auto port = dataplane::dpdk::AfPacketPort::Open(
        iface, {.queues = workers, .rx_frames = options_.af_packet_frames, .pool = pool_->get()});
    if (!port.ok()) return port.status();
    af_packet_ = *std::move(port);
    ethdev = af_packet_->ethdev_name();
    mac = af_packet_->mac();
  }
  // One RX and one TX queue per worker.
  auto wire =
      dataplane::dpdk::Port::Open(ethdev, {.rx_queues = workers,
                                           .tx_queues = workers,
                                           .rx_descriptors = options_.rx_descriptors,
                                           .tx_descriptors = options_.tx_descriptors,
                                           .pool = pool_->get(),
                                           // Everything the wire port sends is from pool_ with a reference count
                                           // of 1: workers rewrite packets in place and never clone them, and
                                           // the kernel's packets come from the TAP's queues, filled from pool_.
                                           .fast_free = true,
                                           .mac = mac});
  if (!wire.ok()) return wire.status();
  wire_ = *std::move(wire);
  if (wire_->driver() == "net_af_packet" && wire_->kernel_if_index() != 0) {
    char name[IF_NAMESIZE];
    if (if_indextoname(wire_->kernel_if_index(), name) == nullptr) {
      return absl::InternalError(
          absl::StrFormat("port %s: no kernel interface %d", wire_->name(), wire_->kernel_if_index()));
    }
    iface = name;
  }
  if (!iface.empty()) {
    auto guard = KernelStackGuard::Take(iface, options_.sysctl_dir);
    if (!guard.ok()) {
      return absl::Status(guard.status().code(),
                          absl::StrFormat("port %s: cannot keep the kernel's IP stack off %s (with "
                                          "net.ipv4.ip_forward=1 it would loop frames back to the wire): %s",
                                          options_.port, iface, guard.status().message()));
    }
    kernel_guard_ = *std::move(guard);
  }
  return absl::OkStatus();
}

Runtime::~Runtime() {
  // Workers first (they use everything below), then what holds mbufs, then the pool.
  StopWorkers();
  syncer_.reset();
  sync_announce_.clear();
  sync_learn_.clear();
  nat_inboxes_.clear();
  from_kernel_.reset();
  tap_.reset();
  wire_.reset();
  af_packet_.reset();
  pool_.reset();
}

void Runtime::StopWorkers() {
  stop_workers_.store(true, std::memory_order_relaxed);
  for (auto& slot : workers_) {
    if (slot->task != nullptr) slot->task->Wait();
  }
}

NextHop Runtime::InitialNextHop() const {
  NextHop hop;
  const rte_ether_addr mac = wire_->mac();
  std::copy(std::begin(mac.addr_bytes), std::end(mac.addr_bytes), hop.source_mac.begin());
  absl::MutexLock lock(&mu_);
  if (gateway_mac_) hop.gateway_mac = *gateway_mac_;
  hop.vlan = options_.vlan;
  return hop;
}

void Runtime::ForwardFromKernel() { dataplane::dpdk::ReceiveInto(*tap_, uint16_t(workers_.size()), *from_kernel_); }

void Runtime::OnGatewayNeighbor(ControlCore* core, std::optional<MacAddress> mac) {
  {
    absl::MutexLock lock(&mu_);
    // A gateway that loses its entry keeps its last MAC: the kernel is re-resolving it,
    // and packets to the last known MAC are the best guess meanwhile.
    if (!mac || gateway_mac_ == *mac) return;
    gateway_mac_ = *mac;
  }
  LOG(INFO) << "gateway " << options_.gateway->ToString() << " is at " << MacToString(*mac);
  if (absl::Status s = core->SetNextHop(InitialNextHop()); !s.ok()) {
    LOG(ERROR) << "cannot publish the new next hop: " << s;
  }
}

// Backends on the TAP's own subnets are reached directly, at their MAC from the kernel's
// neighbour table; the others, and on-link ones not resolved yet, through the gateway.
// Unresolved ones (and the gateway) are solicited a few at a time.
void Runtime::SolicitUnresolved(ControlCore* core) {
  bool gateway_unknown = false;
  if (options_.gateway && !options_.gateway_mac) {
    absl::MutexLock lock(&mu_);
    gateway_unknown = !gateway_mac_.has_value();
  }
  if (gateway_unknown) {
    if (absl::Status s = SolicitNeighbor(options_.tap_name, *options_.gateway); !s.ok()) {
      LOG_EVERY_T(WARNING, 60) << "cannot solicit the gateway: " << s;
    }
  }
  auto prefixes = InterfacePrefixes(options_.tap_name);
  if (!prefixes.ok()) {
    LOG_EVERY_T(WARNING, 60) << prefixes.status();
    return;
  }
  for (const IpAddress& backend : core->UnresolvedOnLinkBackends(*prefixes, kSolicitPerRound)) {
    (void)SolicitNeighbor(options_.tap_name, backend);
  }
}

void Runtime::RunControl(ControlCore* core, const std::atomic<bool>& stop) {
  auto monitor = NeighborMonitor::Open(options_.tap_name);
  if (!monitor.ok()) {
    LOG(ERROR) << "neighbour resolution is off: " << monitor.status();
  }
  uint64_t next_solicit = 0;
  const uint64_t hz = dataplane::dpdk::CyclesPerSecond();
  while (!stop.load(std::memory_order_relaxed)) {
    if (monitor.ok()) {
      auto changes = (*monitor)->Poll(/*timeout_ms=*/100);
      if (!changes.ok()) {
        LOG_EVERY_T(WARNING, 60) << "neighbour notifications: " << changes.status();
      } else if (!changes->empty()) {
        for (const auto& [address, mac] : *changes) {
          if (options_.gateway && address == *options_.gateway && !options_.gateway_mac) {
            OnGatewayNeighbor(core, mac);
          }
          if (mac) VLOG(1) << "neighbour " << address.ToString() << " is at " << MacToString(*mac);
        }
        if (absl::Status s = core->UpdateNeighbors(*changes); !s.ok()) {
          LOG(ERROR) << "cannot publish on-link neighbours: " << s;
        }
      }
    } else {
      dataplane::dpdk::SleepMicros(100'000);
    }
    const uint64_t now = dataplane::dpdk::Cycles();
    if (now >= next_solicit) {
      next_solicit = now + hz;
      SolicitUnresolved(core);
      if (kernel_guard_ != nullptr) kernel_guard_->Enforce();
    }
    core->Reclaim();
  }
}

void Runtime::SampleHeartbeats() {
  const uint64_t now = dataplane::dpdk::Cycles();
  const uint64_t limit = 2 * dataplane::dpdk::CyclesPerSecond();  // two seconds without a poll loop
  for (auto& slot : workers_) {
    const uint64_t loops = slot->worker->loops();
    if (loops != slot->last_loops || slot->last_change == 0) {
      slot->last_loops = loops;
      slot->last_change = now;
    }
    slot->alive.store(now - slot->last_change < limit, std::memory_order_relaxed);
  }
}

void Runtime::RunMain(ControlCore* core, const std::atomic<bool>& stop) {
  // Control work (neighbours, next hop, reclaiming snapshots) waits for changes in
  // progress; it runs on its own thread, so that the exception path below never does.
  std::thread control([&] { RunControl(core, stop); });
  const uint64_t hz = dataplane::dpdk::CyclesPerSecond();
  uint64_t next_sample = 0;
  while (!stop.load(std::memory_order_relaxed)) {
    ForwardFromKernel();
    const uint64_t now = dataplane::dpdk::Cycles();
    if (now >= next_sample) {
      next_sample = now + hz / 4;
      SampleHeartbeats();
    }
    dataplane::dpdk::SleepMicros(200);  // the exception path is control traffic: no need to spin
  }
  control.join();
}

std::vector<WorkerView> Runtime::Workers() const {
  std::vector<WorkerView> out;
  for (const auto& slot : workers_) {
    out.push_back({slot->worker->id(), slot->lcore, &slot->worker->counters(), slot->worker->flows().occupied(),
                   slot->worker->flows().capacity(), &slot->worker->nat()});
  }
  return out;
}

bool Runtime::LinksUp() const { return wire_->LinkUp() && (af_packet_ == nullptr || af_packet_->LinkUp()); }

uint32_t Runtime::WorkersAlive() const {
  uint32_t alive = 0;
  for (const auto& slot : workers_) alive += slot->alive.load(std::memory_order_relaxed);
  return alive;
}

std::vector<std::string> Runtime::HealthProblems() const {
  std::vector<std::string> problems;
  if (!LinksUp()) problems.push_back(absl::StrFormat("port %s: link down", options_.port));
  for (const auto& slot : workers_) {
    if (!slot->alive.load(std::memory_order_relaxed)) {
      problems.push_back(absl::StrFormat("worker %d (lcore %d): not polling", slot->worker->id(), slot->lcore));
    }
  }
  if (syncer_ != nullptr) {
    // A (re)started node learns the peers' active flows within a refresh interval: until
    // then ECMP must not move flows to it (lb-bird-gen announces it once healthy).
    const uint64_t warm =
        syncer_started_ + (options_.flow_sync_refresh_ms + 1000) * (dataplane::dpdk::CyclesPerSecond() / 1000);
    if (const uint64_t now = dataplane::dpdk::Cycles(); now < warm) {
      problems.push_back(absl::StrFormat("flow sync: learning the peers' active flows (%d ms more)",
                                         (warm - now) / (dataplane::dpdk::CyclesPerSecond() / 1000)));
    }
  }
  absl::MutexLock lock(&mu_);
  if (!gateway_mac_) {
    problems.push_back(options_.gateway ? absl::StrFormat("gateway %s: no neighbour entry on %s yet",
                                                          options_.gateway->ToString(), options_.tap_name)
                                        : "no gateway: give --gateway or --gateway_mac");
  }
  return problems;
}

std::vector<PortView> Runtime::Ports() const {
  absl::MutexLock lock(&ports_mu_);
  std::vector<PortView> out;
  auto view = [&](const dataplane::dpdk::Port& port, std::string name, std::string role) {
    out.push_back({.name = std::move(name),
                   .role = std::move(role),
                   .driver = port.driver(),
                   .link_up = port.LinkUp(),
                   .counters = port.ReadCounters()});
  };
  // An af_packet port's ethdev counts what its sockets handed over; the kernel's own RX
  // ring drops are the drop reason rx_ring_full.
  if (wire_ != nullptr) view(*wire_, options_.port, "wire");
  if (af_packet_ != nullptr && !out.empty()) out.back().link_up = af_packet_->LinkUp();
  if (tap_ != nullptr) view(*tap_, options_.tap_name, "exception");
  return out;
}

std::optional<FlowSyncView> Runtime::FlowSync() const {
  if (syncer_ == nullptr) return std::nullopt;
  return syncer_->View();
}

std::optional<FlowLocation> Runtime::FindFlow(const FlowKey& key) {
  absl::MutexLock lock(&query_mu_);
  for (const auto& slot : workers_) {
    auto answer = slot->worker->QueryFlow(key, /*timeout_us=*/50'000);
    if (answer && answer->found) return FlowLocation{slot->worker->id(), *answer};
  }
  return std::nullopt;
}

}  // namespace lb::control
