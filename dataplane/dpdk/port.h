// Port: a thin RAII wrapper over one DPDK ethdev port, configured and started.
//
// Errors name the DPDK call and rte_errno, and for the common mistakes (no such port,
// more queues than the PMD offers) what to do about them. Thread model: control thread
// only; the queues it sets up are then polled by their worker lcores.
#pragma once

#include <rte_ethdev.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "dataplane/counters.h"

namespace lb::dataplane::dpdk {

class Port {
 public:
  struct Options {
    uint16_t rx_queues = 1;
    uint16_t tx_queues = 1;
    uint16_t rx_descriptors = 1024;
    uint16_t tx_descriptors = 1024;
    rte_mempool* pool = nullptr;
    // The caller promises that every mbuf it sends on this port comes from one pool and
    // has a reference count of 1 (no clones). The PMD may then return sent mbufs to the
    // pool in bulk, without per-mbuf checks (RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE); it is
    // requested only where the PMD offers it.
    bool fast_free = false;
    // The port's MAC address, when the PMD's is made up (net_ring under AfPacketPort).
    std::optional<rte_ether_addr> mac;
  };

  // Opens the port named `name` (as EAL knows it: a PCI address such as 0000:3b:00.0, or
  // a virtual device name such as net_af_packet0), configures and starts it. With more
  // than one RX queue, RSS spreads flows over them by IP addresses and ports.
  static absl::StatusOr<std::unique_ptr<Port>> Open(const std::string& name, const Options& options);
  // Creates a virtual device from `devargs` (e.g. "net_tap0,iface=lb0") and opens it.
  static absl::StatusOr<std::unique_ptr<Port>> Create(const std::string& devargs, const Options& options);
  ~Port();
  Port(const Port&) = delete;
  Port& operator=(const Port&) = delete;

  uint16_t id() const { return id_; }
  const std::string& name() const { return name_; }
  const std::string& driver() const { return driver_; }
  // The kernel interface behind the port (net_af_packet, net_tap), or 0.
  uint32_t kernel_if_index() const { return if_index_; }
  rte_ether_addr mac() const { return mac_; }
  std::string MacString() const;
  bool LinkUp() const;
  // The port's own counters (rte_eth_stats_get): what the NIC or the PMD counted, before
  // and beside lbd's. Not thread-safe for most PMDs: one caller at a time.
  lb::dataplane::PortCounters ReadCounters() const;
  // Whether sent mbufs are freed the fast way (Options::fast_free, and the PMD offers it).
  bool fast_free() const { return fast_free_; }
  // Whether the PMD accepts rte_flow rules at all (validated with a probe rule).
  bool SupportsFlowRules() const;

 private:
  Port(uint16_t id, std::string name, bool created) : id_(id), name_(std::move(name)), created_(created) {}
  absl::Status Start(const Options& options);

  uint16_t id_;
  std::string name_;
  std::string driver_;
  bool created_;  // a device this process created: removed on close
  bool started_ = false;
  bool fast_free_ = false;
  rte_ether_addr mac_{};
  uint32_t if_index_ = 0;
};

}  // namespace lb::dataplane::dpdk
