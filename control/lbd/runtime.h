// Runtime: lbd's running dataplane. It owns the mbuf pool, the wire port and its TAP
// (exception path), and one Worker per worker lcore, each polling its own RX queue.
//
// The main lcore runs RunMain(): it hands what the kernel sends on the TAP to worker 0
// (through a single-producer, single-consumer ring), which sends it out of the wire port
// on its own TX queue, so that the port needs one queue pair per worker and no more, and
// samples worker heartbeats for health. Nothing in that loop takes a lock that control
// work holds: BGP, BFD and ARP keep flowing while the largest change is built. A control
// thread (RunControl) follows the kernel's neighbour table for the gateway's and on-link
// backends' MACs, solicits unresolved ones, and reclaims retired snapshots. The runtime
// also serves the control core as its DataplaneProbe.
//
// Thread model: Start/RunMain/StopWorkers on the main lcore; RunControl on the thread
// RunMain starts; the probe methods from any thread.
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "control/control_core.h"
#include "control/dataplane_probe.h"
#include "control/lbd/flow_syncer.h"
#include "control/lbd/host_interface.h"
#include "control/lbd/neighbors.h"
#include "dataplane/dpdk/af_packet_port.h"
#include "dataplane/dpdk/port.h"
#include "dataplane/dpdk/resources.h"
#include "dataplane/worker/worker.h"

namespace lb::control {

struct RuntimeOptions {
  std::string port;                      // the wire port: af_packet:IFACE, or an EAL name
  uint32_t af_packet_frames = 512;       // af_packet port: RX ring frames per queue
  std::string tap_name = "lb0";          // the kernel interface of the exception path
  std::string sysctl_dir = "/proc/sys";  // where the uplink's sysctls are (KernelStackGuard)
  uint32_t flow_capacity = 1u << 20;     // per worker
  uint32_t mbufs = 16383;
  uint16_t rx_descriptors = 1024;
  uint16_t tx_descriptors = 1024;
  uint32_t idle_polls = 0;  // 0: busy-poll
  uint32_t idle_sleep_us = 100;
  std::optional<IpAddress> gateway;       // resolved through the kernel
  std::optional<MacAddress> gateway_mac;  // or given
  uint16_t vlan = 0;
  // NAT: the SNAT pool, partitioned over the workers (the same as NodeSettings::nat).
  uint32_t nat_addresses = 0;
  uint16_t nat_port_min = 1024;
  uint16_t nat_port_max = 65535;
  FlowHasher flow_hasher;                       // the same as NodeSettings::flow_hasher
  std::vector<InterfaceAddress> tap_addresses;  // given to the TAP at start (the node's own)
  FlowSyncer::Options flow_sync;                // no peers: no flow sync
  uint32_t flow_sync_refresh_ms = 5000;
  uint32_t flow_sync_nat_sessions = 0;  // per worker, with flow sync
  // Traffic counter ids alive at once (dataplane/traffic.h), of services and of backends.
  uint32_t traffic_services = 2 * 4096;
  uint32_t traffic_backends = 2u << 20;
};

class Runtime final : public DataplaneProbe {
 public:
  // Sets up pool, ports and workers, and launches the workers on their lcores.
  static absl::StatusOr<std::unique_ptr<Runtime>> Start(const RuntimeOptions& options, dataplane::SnapshotStore* store);
  ~Runtime() override;

  // The node's next hop as far as known now (source MAC = the wire port's).
  NextHop InitialNextHop() const;
  // The workers' traffic counters, for the control core's snapshot builder.
  const std::shared_ptr<dataplane::TrafficTable>& traffic() const { return traffic_; }

  // Main lcore: runs until `stop` is set.
  void RunMain(ControlCore* core, const std::atomic<bool>& stop);
  // Stops the workers and waits for them.
  void StopWorkers();

  // DataplaneProbe
  std::vector<WorkerView> Workers() const override;
  std::vector<std::string> HealthProblems() const override;
  bool LinksUp() const override;
  uint32_t WorkersAlive() const override;
  std::optional<FlowLocation> FindFlow(const FlowKey& key) override;
  std::optional<FlowSyncView> FlowSync() const override;
  std::vector<PortView> Ports() const override;

 private:
  struct WorkerSlot {
    uint32_t lcore;
    std::unique_ptr<dataplane::Worker> worker;
    dataplane::RunOptions run;
    uint64_t last_loops = 0;   // main lcore only
    uint64_t last_change = 0;  // TSC of the last heartbeat change (main lcore)
    std::atomic<bool> alive{true};
    std::unique_ptr<dataplane::dpdk::LcoreTask> task;  // running worker->Run()
  };

  explicit Runtime(const RuntimeOptions& options) : options_(options) {}
  // Opens the wire port and, when it sits on a kernel interface, keeps the kernel's IP
  // stack off that interface.
  absl::Status OpenWire(uint16_t workers);
  // Backends solicited per round (a second) at most.
  static constexpr size_t kSolicitPerRound = 64;

  void ForwardFromKernel();
  void SampleHeartbeats();
  void RunControl(ControlCore* core, const std::atomic<bool>& stop);
  void OnGatewayNeighbor(ControlCore* core, std::optional<MacAddress> mac);
  void SolicitUnresolved(ControlCore* core);

  RuntimeOptions options_;
  std::optional<dataplane::dpdk::MbufPool> pool_;
  // The wire port; with an af_packet port, its ethdev (af_packet_ the sockets behind it).
  std::unique_ptr<dataplane::dpdk::AfPacketPort> af_packet_;
  std::unique_ptr<dataplane::dpdk::Port> wire_;
  std::unique_ptr<KernelStackGuard> kernel_guard_;  // the wire port's kernel interface (af_packet)
  std::unique_ptr<dataplane::dpdk::Port> tap_;
  std::vector<std::unique_ptr<WorkerSlot>> workers_;
  std::shared_ptr<dataplane::TrafficTable> traffic_;
  std::atomic<bool> stop_workers_{false};
  std::optional<dataplane::dpdk::MbufRing> from_kernel_;  // main lcore -> worker 0
  std::vector<dataplane::dpdk::MbufRing> nat_inboxes_;    // NAT replies for worker i, from the others
  // Flow sync: per worker, its announcements and the peers' flows for it; the thread.
  std::vector<dataplane::dpdk::ElemRing> sync_announce_, sync_learn_;
  std::unique_ptr<FlowSyncer> syncer_;
  uint64_t syncer_started_ = 0;  // TSC

  mutable absl::Mutex mu_;
  std::optional<MacAddress> gateway_mac_ ABSL_GUARDED_BY(mu_);
  absl::Mutex query_mu_;          // serialises flow queries (one mailbox per worker)
  mutable absl::Mutex ports_mu_;  // serialises reading the ports' counters (rte_eth_stats_get)
};

}  // namespace lb::control
