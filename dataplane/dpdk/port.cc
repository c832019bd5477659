#include "dataplane/dpdk/port.h"

#include <rte_dev.h>
#include <rte_errno.h>
#include <rte_flow.h>

#include "absl/strings/str_format.h"

namespace lb::dataplane::dpdk {
namespace {

absl::Status DpdkError(const std::string& call, int rc) {
  const int err = rc < 0 ? -rc : rte_errno;
  return absl::InternalError(absl::StrFormat("%s: %s (errno %d)", call, rte_strerror(err), err));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Port>> Port::Open(const std::string& name, const Options& options) {
  uint16_t id;
  if (rte_eth_dev_get_port_by_name(name.c_str(), &id) != 0) {
    std::string known;
    uint16_t p;
    RTE_ETH_FOREACH_DEV(p) {
      char n[RTE_ETH_NAME_MAX_LEN];
      if (rte_eth_dev_get_name_by_port(p, n) == 0) known += (known.empty() ? "" : ", ") + std::string(n);
    }
    return absl::NotFoundError(
        absl::StrFormat("no DPDK port named %s (ports EAL found: %s). A NIC must be bound to vfio-pci and "
                        "allowed with -a; a virtual device needs --vdev",
                        name, known.empty() ? "none" : known));
  }
  std::unique_ptr<Port> port(new Port(id, name, /*created=*/false));
  if (absl::Status s = port->Start(options); !s.ok()) return s;
  return port;
}

absl::StatusOr<std::unique_ptr<Port>> Port::Create(const std::string& devargs, const Options& options) {
  if (int rc = rte_dev_probe(devargs.c_str()); rc != 0) {
    return DpdkError(absl::StrFormat("rte_dev_probe(%s)", devargs), rc);
  }
  const std::string name = devargs.substr(0, devargs.find(','));
  uint16_t id;
  if (rte_eth_dev_get_port_by_name(name.c_str(), &id) != 0) {
    return absl::InternalError(absl::StrFormat("%s was probed but has no ethdev port", name));
  }
  std::unique_ptr<Port> port(new Port(id, name, /*created=*/true));
  if (absl::Status s = port->Start(options); !s.ok()) return s;
  return port;
}

absl::Status Port::Start(const Options& o) {
  rte_eth_dev_info info;
  if (int rc = rte_eth_dev_info_get(id_, &info); rc != 0) {
    return DpdkError(absl::StrFormat("rte_eth_dev_info_get(%s)", name_), rc);
  }
  driver_ = info.driver_name != nullptr ? info.driver_name : "?";
  if_index_ = info.if_index;
  if (o.rx_queues > info.max_rx_queues || o.tx_queues > info.max_tx_queues) {
    return absl::InvalidArgumentError(
        absl::StrFormat("port %s (%s) offers %d RX and %d TX queues; %d RX and %d TX are needed (one of each "
                        "per worker lcore). Use fewer worker lcores (-l), or give the device more queues "
                        "(net_af_packet: qpairs=N)",
                        name_, driver_, info.max_rx_queues, info.max_tx_queues, o.rx_queues, o.tx_queues));
  }
  rte_eth_conf conf{};
  if (o.rx_queues > 1 && info.flow_type_rss_offloads != 0) {
    conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
    conf.rx_adv_conf.rss_conf.rss_hf =
        (RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP) & info.flow_type_rss_offloads;
  }
  fast_free_ = o.fast_free && (info.tx_offload_capa & RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE) != 0;
  if (fast_free_) conf.txmode.offloads |= RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE;
  if (int rc = rte_eth_dev_configure(id_, o.rx_queues, o.tx_queues, &conf); rc != 0) {
    return DpdkError(absl::StrFormat("rte_eth_dev_configure(%s)", name_), rc);
  }
  uint16_t rxd = o.rx_descriptors, txd = o.tx_descriptors;
  if (int rc = rte_eth_dev_adjust_nb_rx_tx_desc(id_, &rxd, &txd); rc != 0) {
    return DpdkError(absl::StrFormat("rte_eth_dev_adjust_nb_rx_tx_desc(%s)", name_), rc);
  }
  const int socket = rte_eth_dev_socket_id(id_);
  for (uint16_t q = 0; q < o.rx_queues; ++q) {
    if (int rc = rte_eth_rx_queue_setup(id_, q, rxd, socket, nullptr, o.pool); rc != 0) {
      return DpdkError(absl::StrFormat("rte_eth_rx_queue_setup(%s, %d)", name_, q), rc);
    }
  }
  for (uint16_t q = 0; q < o.tx_queues; ++q) {
    if (int rc = rte_eth_tx_queue_setup(id_, q, txd, socket, nullptr); rc != 0) {
      return DpdkError(absl::StrFormat("rte_eth_tx_queue_setup(%s, %d)", name_, q), rc);
    }
  }
  if (int rc = rte_eth_dev_start(id_); rc != 0) {
    return DpdkError(absl::StrFormat("rte_eth_dev_start(%s)", name_), rc);
  }
  started_ = true;
  if (o.mac) {
    mac_ = *o.mac;  // the PMD may not take it (net_ring does not): only mac() tells it
    (void)rte_eth_dev_default_mac_addr_set(id_, &mac_);
  } else {
    rte_eth_macaddr_get(id_, &mac_);
  }
  return absl::OkStatus();
}

Port::~Port() {
  if (started_) rte_eth_dev_stop(id_);
  rte_eth_dev_close(id_);
  // A device this process created is removed too, so that its name can be reused.
  if (created_) rte_eal_hotplug_remove("vdev", name_.c_str());
}

std::string Port::MacString() const {
  char buf[RTE_ETHER_ADDR_FMT_SIZE];
  rte_ether_format_addr(buf, sizeof(buf), &mac_);
  return buf;
}

bool Port::LinkUp() const {
  rte_eth_link link{};
  return rte_eth_link_get_nowait(id_, &link) == 0 && link.link_status == RTE_ETH_LINK_UP;
}

lb::dataplane::PortCounters Port::ReadCounters() const {
  rte_eth_stats s{};
  if (rte_eth_stats_get(id_, &s) != 0) return {};
  return {.rx_packets = s.ipackets,
          .tx_packets = s.opackets,
          .rx_bytes = s.ibytes,
          .tx_bytes = s.obytes,
          .rx_missed = s.imissed,
          .rx_errors = s.ierrors,
          .tx_errors = s.oerrors,
          .rx_nombuf = s.rx_nombuf};
}

bool Port::SupportsFlowRules() const {
  // Validate (never create) a rule steering ARP to queue 0: a PMD without rte_flow, or
  // without these items and actions, refuses it.
  rte_flow_attr attr{};
  attr.ingress = 1;
  rte_flow_item_eth eth_spec{}, eth_mask{};
  eth_spec.hdr.ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_ARP);
  eth_mask.hdr.ether_type = 0xffff;
  rte_flow_item pattern[] = {
      {RTE_FLOW_ITEM_TYPE_ETH, &eth_spec, nullptr, &eth_mask},
      {RTE_FLOW_ITEM_TYPE_END, nullptr, nullptr, nullptr},
  };
  rte_flow_action_queue queue{0};
  rte_flow_action actions[] = {
      {RTE_FLOW_ACTION_TYPE_QUEUE, &queue},
      {RTE_FLOW_ACTION_TYPE_END, nullptr},
  };
  rte_flow_error error;
  return rte_flow_validate(id_, &attr, pattern, actions, &error) == 0;
}

}  // namespace lb::dataplane::dpdk
