#include "control/metrics.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"

namespace lb::control {
namespace {

std::string Label(std::string_view value) {
  return absl::StrReplaceAll(absl::string_view(value.data(), value.size()),
                             {{"\\", "\\\\"}, {"\"", "\\\""}, {"\n", "\\n"}});
}

// A counter kept in a plain struct of counters: its metric name, its help, its field.
template <typename Counters>
struct FieldCounter {
  const char* name;
  const char* help;
  uint64_t Counters::*field;
};

// Each of `counters`, one series a row: the row's Counters (`counters_of(row)`), labelled
// `labels(row)` (`key="value",...`).
template <typename Counters, size_t N, typename Rows, typename CountersOf, typename Labels>
void AppendFieldCounters(std::string& out, const FieldCounter<Counters> (&counters)[N], const Rows& rows,
                         CountersOf counters_of, Labels labels) {
  for (const FieldCounter<Counters>& c : counters) {
    AppendMetricHeader(out, c.name, "counter", c.help);
    for (const auto& row : rows) {
      absl::StrAppendFormat(&out, "%s{%s} %d\n", c.name, labels(row), counters_of(row).*c.field);
    }
  }
}

// Flow sync, per peer: what came from it, when it was last heard, and how late.
void AppendFlowSyncPeers(std::string& out, const std::vector<FlowSyncView::Peer>& peers) {
  static constexpr FieldCounter<FlowSyncView::Peer> kPeerCounters[] = {
      {"lb_flow_sync_peer_datagrams_total", "Flow sync: authentic, fresh datagrams taken from the peer.",
       &FlowSyncView::Peer::datagrams},
      {"lb_flow_sync_peer_flows_learned_total", "Flow sync: the peer's flows handed to the workers.",
       &FlowSyncView::Peer::flows_learned},
      {"lb_flow_sync_peer_datagrams_rejected_total",
       "Flow sync: datagrams from the peer's address refused (tag, malformed, replayed, stale).",
       &FlowSyncView::Peer::datagrams_rejected},
      {"lb_flow_sync_peer_flows_refused_total",
       "Flow sync: the peer's flows refused (over its budget, or sessions on another's SNAT address).",
       &FlowSyncView::Peer::flows_refused},
  };
  AppendFieldCounters(
      out, kPeerCounters, peers, [](const FlowSyncView::Peer& p) -> const FlowSyncView::Peer& { return p; },
      [](const FlowSyncView::Peer& p) { return absl::StrFormat("peer=\"%s\"", Label(p.address)); });
  AppendMetricHeader(out, "lb_flow_sync_peer_last_heard_timestamp_seconds", "gauge",
                     "Flow sync: when the peer's last datagram was taken (Unix time); 0: never.");
  for (const FlowSyncView::Peer& p : peers) {
    absl::StrAppendFormat(&out, "lb_flow_sync_peer_last_heard_timestamp_seconds{peer=\"%s\"} %.3f\n", Label(p.address),
                          double(p.last_heard_unix_ms) / 1000);
  }
  AppendMetricHeader(out, "lb_flow_sync_peer_delay_seconds", "gauge",
                     "Flow sync: the peer's last datagram, this node's clock minus the peer's stamp (network, "
                     "its flush wait, and the clocks' difference).");
  for (const FlowSyncView::Peer& p : peers) {
    absl::StrAppendFormat(&out, "lb_flow_sync_peer_delay_seconds{peer=\"%s\"} %.6f\n", Label(p.address),
                          double(p.delay_us) / 1e6);
  }
}

// Per service, always (7 series each: 28,672 at 4096 services); per backend, only those
// GetStats reported one by one (lbd's --metrics_top_backends).
void AppendServiceMetrics(std::string& out, const Stats& stats) {
  std::vector<std::string> names;
  names.reserve(stats.services.size());
  for (const Stats::ServiceStats& s : stats.services) names.push_back(Label(IdOf(s.service.config).ToString()));
  static constexpr FieldCounter<dataplane::ServiceTraffic> kServiceCounters[] = {
      {"lb_service_packets_total",
       "Client packets sent to a backend of the service (DSR: encapsulated, NAT: translated).",
       &dataplane::ServiceTraffic::packets},
      {"lb_service_bytes_total", "Their bytes, IP header and payload as the clients sent them.",
       &dataplane::ServiceTraffic::bytes},
      {"lb_service_new_flows_total", "Flows this node picked a backend of the service for.",
       &dataplane::ServiceTraffic::new_flows},
      {"lb_service_drops_total", "Packets to the service dropped, for any reason (lb_drops_total says which).",
       &dataplane::ServiceTraffic::drops},
  };
  AppendFieldCounters(
      out, kServiceCounters, stats.services,
      [](const Stats::ServiceStats& s) -> const dataplane::ServiceTraffic& { return s.traffic; },
      [&](const Stats::ServiceStats& s) {
        return absl::StrCat("service=\"", names[&s - stats.services.data()], "\"");
      });
  AppendMetricHeader(out, "lb_service_backends", "gauge", "Backends of the service, by state.");
  constexpr BackendState kStates[] = {BackendState::kActive, BackendState::kDraining, BackendState::kDown};
  for (size_t i = 0; i < stats.services.size(); ++i) {
    uint32_t by_state[std::size(kStates)] = {};
    for (const BackendConfig& b : stats.services[i].service.config.backends) ++by_state[size_t(b.state)];
    for (BackendState state : kStates) {
      absl::StrAppendFormat(&out, "lb_service_backends{service=\"%s\",state=\"%s\"} %d\n", names[i], ToString(state),
                            by_state[size_t(state)]);
    }
  }
  const auto append_backends = [&](const char* name, const char* type, const char* help, auto value) {
    AppendMetricHeader(out, name, type, help);
    for (size_t i = 0; i < stats.services.size(); ++i) {
      const ServiceConfig& config = stats.services[i].service.config;
      for (const Stats::BackendStats& b : stats.services[i].backends) {
        const BackendConfig& c = config.backends[b.index];
        absl::StrAppendFormat(&out, "%s{service=\"%s\",backend=\"%s\",port=\"%d\"} %d\n", name, names[i],
                              Label(c.address.ToString()), c.port, value(b));
      }
    }
  };
  append_backends("lb_backend_packets_total", "counter",
                  "Packets sent to the backend (lbd --metrics_top_backends chooses which backends).",
                  [](const Stats::BackendStats& b) { return b.traffic.packets; });
  append_backends("lb_backend_bytes_total", "counter", "Their bytes, as the clients sent them.",
                  [](const Stats::BackendStats& b) { return b.traffic.bytes; });
  append_backends("lb_backend_maglev_entries", "gauge",
                  "Maglev table entries held by the backend (its share of new flows).",
                  [](const Stats::BackendStats& b) { return uint64_t{b.maglev_entries}; });
  AppendMetricHeader(out, "lb_traffic_uncounted", "gauge",
                     "Services and backends given no traffic counter since lbd started (counter ids exhausted).");
  absl::StrAppendFormat(&out, "lb_traffic_uncounted %d\n", stats.traffic_uncounted);
}

}  // namespace

std::string RenderPrometheus(const Stats& stats, const Health& health) {
  std::string out;
  AppendMetricHeader(out, "lb_events_total", "counter", "Worker events by name (see docs/dataplane.md, Counters).");
  for (const WorkerView& w : stats.workers) {
    for (size_t i = 0; i < dataplane::kNumEvents; ++i) {
      absl::StrAppendFormat(&out, "lb_events_total{worker=\"%d\",event=\"%s\"} %d\n", w.id,
                            dataplane::kEventInfo[i].name, w.counters->Get(dataplane::Event(i)));
    }
  }
  AppendMetricHeader(out, "lb_drops_total", "counter",
                     "Packets dropped by the workers, by reason (see docs/dataplane.md, Counters).");
  for (const WorkerView& w : stats.workers) {
    for (size_t i = 0; i < dataplane::kNumDropReasons; ++i) {
      absl::StrAppendFormat(&out, "lb_drops_total{worker=\"%d\",reason=\"%s\"} %d\n", w.id,
                            dataplane::kDropReasonInfo[i].name, w.counters->Get(dataplane::DropReason(i)));
    }
  }
  AppendMetricHeader(out, "lb_flows", "gauge", "Flow-table slots in use, per worker.");
  for (const WorkerView& w : stats.workers) {
    absl::StrAppendFormat(&out, "lb_flows{worker=\"%d\"} %d\n", w.id, w.flows);
  }
  AppendMetricHeader(out, "lb_flow_capacity", "gauge", "Flow-table capacity, per worker.");
  for (const WorkerView& w : stats.workers) {
    absl::StrAppendFormat(&out, "lb_flow_capacity{worker=\"%d\"} %d\n", w.id, w.flow_capacity);
  }
  AppendMetricHeader(out, "lb_services", "gauge", "Services configured.");
  absl::StrAppendFormat(&out, "lb_services %d\n", stats.services.size());
  AppendMetricHeader(out, "lb_backends", "gauge", "Backends of all services.");
  absl::StrAppendFormat(&out, "lb_backends %d\n", stats.backends);
  AppendMetricHeader(out, "lb_table_memory_bytes", "gauge",
                     "Maglev tables and backend records of all services, as counted against --max_table_memory.");
  absl::StrAppendFormat(&out, "lb_table_memory_bytes %d\n", stats.table_memory);
  AppendMetricHeader(out, "lb_table_memory_limit_bytes", "gauge", "lbd's --max_table_memory.");
  absl::StrAppendFormat(&out, "lb_table_memory_limit_bytes %d\n", stats.table_memory_limit);
  if (const auto& s = stats.flow_sync) {
    const std::pair<const char*, const char*> help[] = {
        {"datagrams_sent", "Flow sync: datagrams sent, to all peers."},
        {"flows_sent", "Flow sync: flows sent, to each peer."},
        {"bytes_sent", "Flow sync: UDP payload bytes sent, to all peers."},
        {"send_errors", "Flow sync: datagrams the kernel did not take."},
        {"datagrams_received", "Flow sync: datagrams received."},
        {"flows_received", "Flow sync: flows received from the peers."},
        {"datagrams_rejected", "Flow sync: datagrams not from a peer, without the cluster's tag, or malformed."},
        {"flows_undelivered", "Flow sync: received flows a worker's learn ring did not take."},
        {"dumps_sent", "Flow sync: dumps of the journal sent to (re)started peers that asked."},
        {"journal_full", "Flow sync: flows not kept in the journal, which was full."},
        {"datagrams_replayed", "Flow sync: authentic datagrams not newer than the sender's last (replayed)."},
        {"datagrams_stale", "Flow sync: authentic datagrams dated beyond --flow_sync_max_skew_ms of this clock."},
        {"dump_requests_refused", "Flow sync: dump requests within 500 ms of the peer's last."},
        {"flows_over_budget", "Flow sync: flows beyond a peer's --flow_sync_learn_pps."},
        {"sessions_refused", "Flow sync: NAT sessions on an SNAT address not the announcing peer's."}};
    const uint64_t values[] = {s->datagrams_sent,        s->flows_sent,         s->bytes_sent,
                               s->send_errors,           s->datagrams_received, s->flows_received,
                               s->datagrams_rejected,    s->flows_undelivered,  s->dumps_sent,
                               s->journal_full,          s->datagrams_replayed, s->datagrams_stale,
                               s->dump_requests_refused, s->flows_over_budget,  s->sessions_refused};
    for (size_t i = 0; i < std::size(values); ++i) {
      const std::string name = absl::StrCat("lb_flow_sync_", help[i].first, "_total");
      AppendMetricHeader(out, name, "counter", help[i].second);
      absl::StrAppendFormat(&out, "%s %d\n", name, values[i]);
    }
    AppendFlowSyncPeers(out, s->peer_stats);
    AppendMetricHeader(out, "lb_flow_sync_journal_flows", "gauge",
                       "Flow sync: live flows of the group this node remembers, for peers that restart.");
    absl::StrAppendFormat(&out, "lb_flow_sync_journal_flows %d\n", s->journal_flows);
  }
  AppendServiceMetrics(out, stats);
  if (!stats.ports.empty()) {
    AppendMetricHeader(out, "lb_port_up", "gauge", "1 while the port's link is up.");
    for (const PortView& p : stats.ports) {
      absl::StrAppendFormat(&out, "lb_port_up{port=\"%s\",role=\"%s\"} %d\n", Label(p.name), p.role, int(p.link_up));
    }
    static constexpr FieldCounter<dataplane::PortCounters> kPortCounters[] = {
        {"lb_port_rx_packets_total", "Packets the port received (its own count).",
         &dataplane::PortCounters::rx_packets},
        {"lb_port_tx_packets_total", "Packets the port sent.", &dataplane::PortCounters::tx_packets},
        {"lb_port_rx_bytes_total", "Bytes the port received.", &dataplane::PortCounters::rx_bytes},
        {"lb_port_tx_bytes_total", "Bytes the port sent.", &dataplane::PortCounters::tx_bytes},
        {"lb_port_rx_missed_total", "Packets the NIC dropped, its RX queues full (imissed).",
         &dataplane::PortCounters::rx_missed},
        {"lb_port_rx_errors_total", "Erroneous packets received (ierrors).", &dataplane::PortCounters::rx_errors},
        {"lb_port_tx_errors_total", "Packets the port failed to send (oerrors).", &dataplane::PortCounters::tx_errors},
        {"lb_port_rx_nombuf_total", "RX mbuf allocation failures.", &dataplane::PortCounters::rx_nombuf},
    };
    AppendFieldCounters(
        out, kPortCounters, stats.ports, [](const PortView& p) -> const dataplane::PortCounters& { return p.counters; },
        [](const PortView& p) { return absl::StrFormat("port=\"%s\",role=\"%s\"", Label(p.name), p.role); });
  }
  if (!stats.snat.empty()) {
    AppendMetricHeader(out, "lb_snat_ports_in_use", "gauge",
                       "NAT sessions (TCP and UDP ports) in use, per SNAT address.");
    for (const auto& s : stats.snat) {
      absl::StrAppendFormat(&out, "lb_snat_ports_in_use{address=\"%s\"} %d\n", s.address.ToString(), s.ports_in_use);
    }
    AppendMetricHeader(out, "lb_snat_ports", "gauge", "NAT ports (TCP and UDP) of the pool, per SNAT address.");
    for (const auto& s : stats.snat) {
      absl::StrAppendFormat(&out, "lb_snat_ports{address=\"%s\"} %d\n", s.address.ToString(), s.ports_total);
    }
  }
  AppendMetricHeader(out, "lb_config_generation", "gauge", "Generation of the last Apply.");
  absl::StrAppendFormat(&out, "lb_config_generation %d\n", stats.generation);
  AppendMetricHeader(out, "lb_healthy", "gauge", "1 while the dataplane forwards (what lb-bird-gen announces on).");
  absl::StrAppendFormat(&out, "lb_healthy %d\n", health.healthy ? 1 : 0);
  AppendMetricHeader(out, "lb_workers_alive", "gauge", "Workers whose poll loop runs.");
  absl::StrAppendFormat(&out, "lb_workers_alive %d\n", health.workers_alive);
  AppendMetricHeader(out, "lb_flow_hash_info", "gauge",
                     "1, labelled with the flow hash; equal on every node of a cluster, or flows that ECMP "
                     "moves between nodes change backend.");
  absl::StrAppendFormat(&out, "lb_flow_hash_info{hash=\"%s\"} 1\n", Label(health.flow_hash));
  return out;
}

}  // namespace lb::control
