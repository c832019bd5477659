#include "tools/stats_view.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <vector>

namespace lb::tools {
namespace {

std::string Format(const char* format, auto... args) {
  char line[512];
  std::snprintf(line, sizeof(line), format, args...);
  return line;
}

// How much a counter grew; one that went back (re-created, restarted) counts from zero.
uint64_t Delta(uint64_t after, uint64_t before) { return after >= before ? after - before : after; }

uint64_t Counter(const google::protobuf::RepeatedPtrField<lb::v1::Counter>& counters, const std::string& name) {
  for (const auto& c : counters) {
    if (c.name() == name) return c.value();
  }
  return 0;
}

std::string BackendName(const lb::v1::BackendStats& b) {
  const bool v6 = b.address().find(':') != std::string::npos;
  if (b.port() == 0) return b.address();
  return (v6 ? "[" + b.address() + "]" : b.address()) + ":" + std::to_string(b.port());
}

// The busiest first (ties: by name, so that the order is stable), at most `rows`.
template <typename Row>
void Busiest(std::vector<Row>& rows, uint32_t limit) {
  std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
    return a.packets != b.packets ? a.packets > b.packets : a.name < b.name;
  });
  if (rows.size() > limit) rows.resize(limit);
}

struct ServiceRow {
  std::string name;
  double packets, bytes, new_flows, drops;
  uint32_t backends;
};

struct BackendRow {
  std::string name;  // the backend, then its service: the sort's tie-break
  std::string backend, service, state;
  double packets, bytes;
  uint32_t maglev_entries;
};

std::string More(size_t shown, size_t total, const char* what) {
  return shown < total ? Format("  ... and %zu more %s\n", total - shown, what) : "";
}

// The services and backends of an answer, each counter as it grew since `before` (a
// service or backend not in `before`, or a counter that went back, from zero), per
// `seconds`; the busiest `limit` of each, and how many there were.
struct Rows {
  std::vector<ServiceRow> services;
  std::vector<BackendRow> backends;
  size_t total_services = 0, total_backends = 0;
  double new_flows = 0;  // of every service
};
Rows CollectRows(const lb::v1::Stats& after, const lb::v1::Stats& before, double seconds, uint32_t limit) {
  const auto rate = [seconds](uint64_t a, uint64_t b) { return double(Delta(a, b)) / seconds; };
  std::map<std::string, const lb::v1::ServiceStats*> earlier;
  std::map<std::string, const lb::v1::BackendStats*> earlier_backends;
  for (const auto& svc : before.services()) {
    const std::string name = ServiceName(svc.key());
    earlier[name] = &svc;
    for (const auto& b : svc.backends()) earlier_backends[BackendName(b) + " " + name] = &b;
  }
  static const lb::v1::ServiceStats kNoService;
  static const lb::v1::BackendStats kNoBackend;
  Rows rows;
  for (const auto& svc : after.services()) {
    const std::string name = ServiceName(svc.key());
    const auto it = earlier.find(name);
    const lb::v1::ServiceStats& old = it == earlier.end() ? kNoService : *it->second;
    const ServiceRow& row = rows.services.emplace_back(
        ServiceRow{name, rate(svc.packets(), old.packets()), rate(svc.bytes(), old.bytes()),
                   rate(svc.new_flows(), old.new_flows()), rate(svc.drops(), old.drops()), svc.backends_total()});
    rows.new_flows += row.new_flows;
    for (const auto& be : svc.backends()) {
      const std::string key = BackendName(be) + " " + name;
      const auto e = earlier_backends.find(key);
      const lb::v1::BackendStats& was = e == earlier_backends.end() ? kNoBackend : *e->second;
      rows.backends.push_back({key, BackendName(be), name, StateName(be.state()), rate(be.packets(), was.packets()),
                               rate(be.bytes(), was.bytes()), be.maglev_entries()});
    }
  }
  rows.total_services = rows.services.size();
  rows.total_backends = rows.backends.size();
  Busiest(rows.services, limit);
  Busiest(rows.backends, limit);
  return rows;
}

}  // namespace

std::string ServiceName(const lb::v1::ServiceKey& k) {
  const bool v6 = k.vip().find(':') != std::string::npos;
  return (v6 ? "[" + k.vip() + "]" : k.vip()) + ":" + (k.port() == 0 ? "*" : std::to_string(k.port())) + "/" +
         (k.protocol() == lb::v1::TCP   ? "tcp"
          : k.protocol() == lb::v1::UDP ? "udp"
                                        : "?");
}

std::string StateName(lb::v1::BackendState s) {
  return s == lb::v1::DRAINING ? "draining" : s == lb::v1::DOWN ? "down" : "active";
}

std::string Human(double v) {
  static constexpr const char* kUnits[] = {"", "k", "M", "G", "T"};
  size_t unit = 0;
  while (std::fabs(v) >= 1000 && unit + 1 < std::size(kUnits)) {
    v /= 1000;
    ++unit;
  }
  if (unit == 0) return v == std::floor(v) ? Format("%.0f", v) : Format("%.1f", v);
  return Format("%.2f%s", v, kUnits[unit]);
}

std::string RenderTraffic(const lb::v1::Stats& stats, uint32_t limit) {
  const Rows rows = CollectRows(stats, lb::v1::Stats{}, 1, limit);
  const std::vector<ServiceRow>& services = rows.services;
  const std::vector<BackendRow>& backends = rows.backends;
  const size_t total_services = rows.total_services, total_backends = rows.total_backends;
  std::string out = Format("services, the busiest first (since each was created):\n  %-32s %9s %9s %9s %9s %8s\n",
                           "SERVICE", "PACKETS", "BYTES", "NEW FLOWS", "DROPS", "BACKENDS");
  for (const ServiceRow& r : services) {
    out += Format("  %-32s %9s %9s %9s %9s %8u\n", r.name.c_str(), Human(r.packets).c_str(), Human(r.bytes).c_str(),
                  Human(r.new_flows).c_str(), Human(r.drops).c_str(), r.backends);
  }
  out += More(services.size(), total_services, "services");
  if (total_backends == 0) return out;
  out += Format("backends, the busiest first:\n  %-32s %-28s %-9s %9s %9s %7s\n", "SERVICE", "BACKEND", "STATE",
                "PACKETS", "BYTES", "MAGLEV");
  for (const BackendRow& r : backends) {
    out += Format("  %-32s %-28s %-9s %9s %9s %7u\n", r.service.c_str(), r.backend.c_str(), r.state.c_str(),
                  Human(r.packets).c_str(), Human(r.bytes).c_str(), r.maglev_entries);
  }
  out += More(backends.size(), total_backends, "backends");
  if (stats.traffic_uncounted() > 0) {
    out += Format("  (%lu services and backends have no traffic counter: ids exhausted)\n",
                  (unsigned long)stats.traffic_uncounted());
  }
  return out;
}

std::string RenderFlowSyncPeers(const lb::v1::FlowSyncStats& sync, int64_t now_unix_ms) {
  std::string out;
  for (const auto& p : sync.peer_stats()) {
    const std::string heard = p.last_heard_unix_ms() == 0
                                  ? "never heard"
                                  : "heard " + Human(double(now_unix_ms - p.last_heard_unix_ms()) / 1000) +
                                        Format(" s ago, delay %.1f ms", double(p.delay_us()) / 1000);
    out += Format("  peer %-24s %s; %lu datagrams, %lu flows learned; refused %lu datagrams, %lu flows\n",
                  p.address().c_str(), heard.c_str(), (unsigned long)p.datagrams(), (unsigned long)p.flows_learned(),
                  (unsigned long)p.datagrams_rejected(), (unsigned long)p.flows_refused());
  }
  return out;
}

std::string RenderWatch(const lb::v1::Stats& before, const lb::v1::Stats& after, const WatchFrame& frame) {
  const double s = frame.seconds > 0 ? frame.seconds : 1;
  const auto rate = [s](uint64_t a, uint64_t b) { return double(Delta(a, b)) / s; };
  const auto event = [&](const char* name) {
    return rate(Counter(after.events(), name), Counter(before.events(), name));
  };

  const Rows rows = CollectRows(after, before, s, frame.rows);
  const std::vector<ServiceRow>& services = rows.services;
  const std::vector<BackendRow>& backends = rows.backends;
  const size_t total_services = rows.total_services, total_backends = rows.total_backends;
  const double new_flows = rows.new_flows;

  double drops = 0;
  std::string reasons;
  for (const auto& d : after.drops()) {
    const double r = rate(d.value(), Counter(before.drops(), d.name()));
    drops += r;
    if (r > 0) reasons += Format("  %-32s %9s/s\n", d.name().c_str(), Human(r).c_str());
  }
  double missed = 0;
  for (const auto& p : after.ports()) {
    for (const auto& q : before.ports()) {
      if (q.name() == p.name()) missed += rate(p.rx_missed(), q.rx_missed()) + rate(p.rx_nombuf(), q.rx_nombuf());
    }
  }

  std::string out = frame.title + "\n";
  out += Format("packets/s: received %s, to backends %s, sent %s, dropped %s, NIC missed %s\n",
                Human(event("rx_packets")).c_str(), Human(event("forwarded") + event("nat_forwarded")).c_str(),
                Human(event("tx_packets")).c_str(), Human(drops).c_str(), Human(missed).c_str());
  out += Format("new flows/s %s; flows %lu of %lu; configuration generation %lu\n\n", Human(new_flows).c_str(),
                (unsigned long)after.flows(), (unsigned long)after.flow_capacity(), (unsigned long)after.generation());
  out += Format("%-32s %9s %9s %11s %9s %8s\n", "SERVICE", "PKTS/S", "BITS/S", "NEW FLOWS/S", "DROPS/S", "BACKENDS");
  for (const ServiceRow& r : services) {
    out += Format("%-32s %9s %9s %11s %9s %8u\n", r.name.c_str(), Human(r.packets).c_str(), Human(r.bytes * 8).c_str(),
                  Human(r.new_flows).c_str(), Human(r.drops).c_str(), r.backends);
  }
  out += More(services.size(), total_services, "services");
  if (!backends.empty()) {
    out += Format("\n%-28s %-32s %-9s %9s %9s\n", "BACKEND", "SERVICE", "STATE", "PKTS/S", "BITS/S");
    for (const BackendRow& r : backends) {
      out += Format("%-28s %-32s %-9s %9s %9s\n", r.backend.c_str(), r.service.c_str(), r.state.c_str(),
                    Human(r.packets).c_str(), Human(r.bytes * 8).c_str());
    }
    out += More(backends.size(), total_backends, "backends");
  }
  out += "\nDROPS BY REASON\n" + (reasons.empty() ? std::string("  none\n") : reasons);
  if (after.has_flow_sync()) out += "\nFLOW SYNC\n" + RenderFlowSyncPeers(after.flow_sync(), frame.now_unix_ms);
  return out;
}

}  // namespace lb::tools
