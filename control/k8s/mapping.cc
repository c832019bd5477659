#include "control/k8s/mapping.h"

#include <cctype>

#include <netinet/in.h>

#include <algorithm>
#include <set>
#include <tuple>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "control/k8s/vip_pool.h"
#include "common/maglev.h"

namespace lb::control::k8s {
namespace {

// What an endpoint's conditions make of it (EndpointSlice API: an unset `ready` is to be
// read as ready, an unset `serving` as `ready`).
std::optional<BackendState> StateOf(const Endpoint& e) {
  const bool ready = e.ready.value_or(true);
  const bool serving = e.serving.value_or(ready);
  const bool terminating = e.terminating.value_or(false);
  if (ready && !terminating) return BackendState::kActive;
  if (serving && terminating) return BackendState::kDraining;
  return std::nullopt;
}

// The backends of Service port `sp` for a VIP of family v4/v6: every slice of the Service
// with that family, at the slice's number for the port of the same name and protocol.
// `dsr_nodes`: when set, endpoints on other nodes are left out and their nodes added to
// `left_out` ("" for an endpoint that names no node).
std::vector<BackendConfig> BackendsOf(const ServicePort& sp, bool v4, const std::vector<const KEndpointSlice*>& slices,
                                      const std::set<std::string>* dsr_nodes, std::set<std::string>* left_out) {
  std::vector<BackendConfig> out;
  for (const KEndpointSlice* slice : slices) {
    if (slice->address_type != (v4 ? "IPv4" : "IPv6")) continue;
    const auto port = std::find_if(slice->ports.begin(), slice->ports.end(), [&](const SlicePort& p) {
      return p.name == sp.name && p.protocol == sp.protocol && p.port.has_value();
    });
    if (port == slice->ports.end()) continue;
    for (const Endpoint& e : slice->endpoints) {
      const auto state = StateOf(e);
      if (!state) continue;
      // Only the first address: the API says every address of an endpoint is fungible and
      // consumers use the first (as kube-proxy does); the others are not served.
      if (e.addresses.empty()) continue;
      const auto ip = IpAddress::Parse(e.addresses.front());
      if (!ip || ip->IsV4() != v4) continue;
      if (dsr_nodes != nullptr && !dsr_nodes->contains(e.node_name)) {
        left_out->insert(e.node_name);
        continue;
      }
      out.push_back({.address = *ip, .port = uint16_t(*port->port), .weight = 1, .state = *state});
    }
  }
  // An endpoint can sit in two slices while the controller moves it: keep its best state.
  std::sort(out.begin(), out.end(), [](const BackendConfig& a, const BackendConfig& b) {
    return std::tie(a.address, a.port, a.state) < std::tie(b.address, b.port, b.state);
  });
  out.erase(std::unique(out.begin(), out.end(),
                        [](const BackendConfig& a, const BackendConfig& b) {
                          return a.address == b.address && a.port == b.port;
                        }),
            out.end());
  return out;
}

// A source range as Kubernetes reads it (Go's net.ParseCIDR: host bits are dropped).
absl::StatusOr<IpPrefix> SourceRange(const std::string& text) {
  const size_t slash = text.find('/');
  int length = -1;
  const auto address = IpAddress::Parse(text.substr(0, slash));
  if (slash == std::string::npos || !address || !absl::SimpleAtoi(text.substr(slash + 1), &length) || length < 0 ||
      length > (address->IsV4() ? 32 : 128)) {
    return absl::InvalidArgumentError(absl::StrFormat("source range \"%s\" is not a CIDR", text));
  }
  IpPrefix p{*address, uint8_t(length)};
  const int host_from = address->IsV4() ? 96 + length : length;  // in the 16 bytes
  for (int bit = host_from; bit < 128; ++bit) p.address.bytes[bit / 8] &= uint8_t(~(0x80u >> (bit % 8)));
  return p;
}

absl::StatusOr<std::vector<IpPrefix>> SourceRanges(const KService& s) {
  std::vector<IpPrefix> out;
  for (const std::string& text : s.source_ranges) {
    auto p = SourceRange(text);
    if (!p.ok()) return p.status();
    out.push_back(*p);
  }
  if (out.size() > kMaxSourceRanges) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%d source ranges, lbd admits at most %d", out.size(), kMaxSourceRanges));
  }
  return out;
}

bool Older(const KService* a, const KService* b) {
  return std::tie(a->creation_timestamp, a->ns, a->name) < std::tie(b->creation_timestamp, b->ns, b->name);
}

}  // namespace

absl::StatusOr<ServiceSettings> ParseAnnotations(const std::map<std::string, std::string>& annotations,
                                                 uint32_t max_table_size) {
  ServiceSettings out;
  for (const auto& [key, value] : annotations) {
    if (key.rfind(kAnnotationPrefix, 0) != 0) continue;
    if (key == kModeAnnotation) {
      if (value == "dsr-ipip") {
        out.mode = ForwardingMode::kDsrIpip;
      } else if (value == "dsr-gue") {
        out.mode = ForwardingMode::kDsrGue;
      } else if (value == "nat") {
        out.mode = ForwardingMode::kNat;
      } else {
        return absl::InvalidArgumentError(
            absl::StrFormat("%s: \"%s\" is not a forwarding mode (dsr-ipip, dsr-gue or nat)", key, Printable(value)));
      }
    } else if (key == kTableSizeAnnotation) {
      // One of the sizes lbd would choose itself (MaglevTableSizeFor's rungs),
      // up to the watcher's bound: a tenant cannot ask for tables beyond a budget.
      std::vector<std::string> allowed;
      for (uint32_t size : kMaglevTableSizes) {
        if (size <= max_table_size) allowed.push_back(std::to_string(size));
      }
      uint32_t size = 0;
      if (std::find(allowed.begin(), allowed.end(), value) == allowed.end() || !absl::SimpleAtoi(value, &size)) {
        return absl::InvalidArgumentError(
            absl::StrFormat("%s: \"%s\" is not one of %s (the larger sizes are not available to Services here)", key,
                            Printable(value), absl::StrJoin(allowed, ", ")));
      }
      out.table_size = size;
    } else {
      return absl::InvalidArgumentError(absl::StrFormat("unknown annotation %s (known: %s, %s)", Printable(key),
                                                        kModeAnnotation, kTableSizeAnnotation));
    }
  }
  return out;
}

absl::StatusOr<ExternalIpPolicy> ParseExternalIpPolicy(const std::string& text) {
  ExternalIpPolicy p;
  if (text == "none") return p;
  if (text == "all") {
    p.mode = ExternalIpPolicy::Mode::kAll;
    return p;
  }
  constexpr std::string_view kPrefix = "namespaces=";
  if (text.rfind(kPrefix, 0) == 0) {
    p.mode = ExternalIpPolicy::Mode::kNamespaces;
    for (absl::string_view ns : absl::StrSplit(text.substr(kPrefix.size()), ',', absl::SkipWhitespace())) {
      p.namespaces.insert(std::string(ns));
    }
    if (!p.namespaces.empty()) return p;
  }
  return absl::InvalidArgumentError(
      absl::StrFormat("--external_ips: \"%s\" is not none, all or namespaces=NS[,NS...]", text));
}

std::set<std::string> LiveDsrNodes(const std::vector<KLease>& leases, absl::Time now) {
  std::set<std::string> live;
  for (const KLease& l : leases) {
    if (l.name.rfind(kDsrLeasePrefix, 0) != 0 || l.holder.empty() || l.name != kDsrLeasePrefix + l.holder) continue;
    absl::Time renewed;
    std::string error;
    if (!absl::ParseTime(absl::RFC3339_full, l.renew_time, &renewed, &error)) continue;
    if (renewed + absl::Seconds(l.duration_s) > now) live.insert(l.holder);
  }
  return live;
}

DesiredState MapClusterState(const std::vector<KService>& services, const std::vector<KEndpointSlice>& slices,
                             const MappingOptions& options, LastGoodSettings* last_good) {
  DesiredState out;
  std::vector<const KService*> ordered;
  for (const KService& s : services) ordered.push_back(&s);
  std::sort(ordered.begin(), ordered.end(), Older);

  std::map<std::pair<std::string, std::string>, std::vector<const KEndpointSlice*>> slices_of;
  for (const KEndpointSlice& e : slices) {
    if (e.service_name.empty()) continue;
    if (e.managed_by != kEndpointSliceController && !options.accept_unmanaged_slices) {
      out.notes.push_back(
          absl::StrFormat("EndpointSlice %s/%s skipped: managed by \"%s\", not the EndpointSlice "
                          "controller (--accept_unmanaged_endpointslices)",
                          e.ns, e.name, e.managed_by));
      continue;
    }
    slices_of[{e.ns, e.service_name}].push_back(&e);
  }

  auto announced = [&](const IpAddress& a) {
    return std::any_of(options.vip_cidrs.begin(), options.vip_cidrs.end(),
                       [&](const IpPrefix& p) { return p.Contains(a); });
  };
  auto node_address = [&](const IpAddress& a) {
    return std::find(options.node_addresses.begin(), options.node_addresses.end(), a) != options.node_addresses.end();
  };

  // Addresses: the pool for our LoadBalancers, never handing out an externalIP that is
  // served, nor a node's address.
  std::vector<const KService*> ours;
  std::vector<IpAddress> external(options.node_addresses);
  for (const KService* s : ordered) {
    if (s->type == "LoadBalancer" && s->load_balancer_class == options.load_balancer_class) ours.push_back(s);
    if (!options.external_ips.Allows(s->ns)) continue;
    for (const std::string& text : s->external_ips) {
      if (auto ip = IpAddress::Parse(text)) external.push_back(*ip);
    }
  }
  VipAllocation vips = AllocateVips(ours, options.vip_cidrs, external);
  out.problems = std::move(vips.problems);
  absl::flat_hash_set<IpAddress> allocated;  // every LoadBalancer address: no externalIP takes one
  for (const auto& [key, addresses] : vips.addresses) allocated.insert(addresses.begin(), addresses.end());

  std::map<std::tuple<IpAddress, uint8_t, uint16_t>, std::string> claimed;  // frontend -> owner
  std::vector<std::pair<ServiceConfig, std::string>> mapped;                // with its owner
  for (const KService* s : ordered) {
    std::vector<IpAddress> frontends;
    if (!s->external_ips.empty() && !options.external_ips.Allows(s->ns)) {
      out.problems.push_back({s->Key(), "ExternalIPNotAllowed",
                              "spec.externalIPs are not served for this namespace (the watcher's --external_ips)"});
    }
    for (const std::string& text : options.external_ips.Allows(s->ns) ? s->external_ips : std::vector<std::string>{}) {
      const auto ip = IpAddress::Parse(text);
      if (!ip) {
        out.problems.push_back({s->Key(), "InvalidExternalIP", absl::StrFormat("\"%s\" is not an IP address", text)});
      } else if (allocated.contains(*ip)) {
        out.problems.push_back(
            {s->Key(), "AddressConflict",
             absl::StrFormat("externalIP %s is the load-balancer address of another Service: not served",
                             ip->ToString())});
      } else if (node_address(*ip) || !ip->SpecialPurpose().empty()) {
        out.problems.push_back(
            {s->Key(), "InvalidExternalIP",
             absl::StrFormat("externalIP %s is a node's own or a special-purpose address: not served",
                             ip->ToString())});
      } else if (!announced(*ip)) {
        out.notes.push_back(
            absl::StrFormat("%s: externalIP %s is outside the announced VIP CIDRs: not served", s->Key(), text));
      } else {
        frontends.push_back(*ip);
      }
    }
    if (auto it = vips.addresses.find(s->Key()); it != vips.addresses.end()) {
      out.pool_addresses_used += it->second.size();
      std::vector<std::string> have = s->ingress_ips, want;
      for (const IpAddress& a : it->second) want.push_back(a.ToString());
      std::sort(have.begin(), have.end());
      std::sort(want.begin(), want.end());
      if (have != want && !it->second.empty()) out.status_updates.push_back({s->Key(), it->second});
      frontends.insert(frontends.end(), it->second.begin(), it->second.end());
    }
    if (frontends.empty()) continue;
    // The LoadBalancer addresses admit only the Service's source ranges (kube-proxy and
    // Cilium do the same); an externalIP admits every client.
    std::vector<IpPrefix> source_ranges;
    if (auto ranges = SourceRanges(*s); ranges.ok()) {
      source_ranges = *std::move(ranges);
    } else {
      out.problems.push_back({s->Key(), "InvalidSourceRange",
                              absl::StrFormat("%s; the Service is not served until it is fixed (never to every "
                                              "client instead)",
                                              ranges.status().message())});
      continue;
    }
    const auto lb_addresses = vips.addresses.find(s->Key());
    auto is_lb_address = [&](const IpAddress& a) {
      return lb_addresses != vips.addresses.end() &&
             std::find(lb_addresses->second.begin(), lb_addresses->second.end(), a) != lb_addresses->second.end();
    };

    ServiceSettings settings;
    if (auto parsed = ParseAnnotations(s->annotations, options.max_table_size); parsed.ok()) {
      settings = *parsed;
      (*last_good)[s->Key()] = settings;
    } else if (auto it = last_good->find(s->Key()); it != last_good->end()) {
      settings = it->second;
      out.problems.push_back({s->Key(), "InvalidAnnotation",
                              absl::StrFormat("%s; keeping the last good settings", parsed.status().message())});
    } else {
      out.problems.push_back(
          {s->Key(), "InvalidAnnotation",
           absl::StrFormat("%s; the Service is not served until it is fixed", parsed.status().message())});
      continue;
    }

    const auto& my_slices = slices_of[{s->ns, s->name}];
    const bool dsr = settings.mode != ForwardingMode::kNat;
    const std::set<std::string>* dsr_nodes = dsr && options.dsr_nodes ? &*options.dsr_nodes : nullptr;
    std::set<std::string> left_out;
    if (s->ports.size() > options.max_ports_per_service) {
      out.problems.push_back(
          {s->Key(), "TooManyPorts",
           absl::StrFormat("%d ports; the first %d are served (the watcher's --max_ports_per_service)", s->ports.size(),
                           options.max_ports_per_service)});
    }
    for (size_t port_index = 0; port_index < std::min<size_t>(s->ports.size(), options.max_ports_per_service);
         ++port_index) {
      const ServicePort& sp = s->ports[port_index];
      uint8_t protocol = 0;
      if (sp.protocol == "TCP") {
        protocol = IPPROTO_TCP;
      } else if (sp.protocol == "UDP") {
        protocol = IPPROTO_UDP;
      } else {
        out.notes.push_back(
            absl::StrFormat("%s: port %d/%s skipped: lbd balances TCP and UDP only", s->Key(), sp.port, sp.protocol));
        continue;
      }
      for (const IpAddress& vip : frontends) {
        const auto key = std::make_tuple(vip, protocol, uint16_t(sp.port));
        if (auto [it, fresh] = claimed.emplace(key, s->Key()); !fresh) {
          // Another namespace's Service is not named: its existence is not this tenant's to learn.
          const bool same_namespace = it->second.rfind(s->ns + "/", 0) == 0;
          out.problems.push_back(
              {s->Key(), "AddressConflict",
               absl::StrFormat("%s port %d/%s is already served for %s", vip.ToString(), sp.port, sp.protocol,
                               same_namespace ? "the older Service " + it->second : std::string("an older Service"))});
          continue;
        }
        ServiceConfig c;
        c.vip = vip;
        c.protocol = protocol;
        c.port = uint16_t(sp.port);
        c.mode = settings.mode;
        c.hash_fields = s->client_ip_affinity ? HashFields::kSourceIp : HashFields::kFiveTuple;
        c.table_size = settings.table_size;
        c.backends = BackendsOf(sp, vip.IsV4(), my_slices, dsr_nodes, &left_out);
        if (is_lb_address(vip)) c.source_ranges = source_ranges;
        if (c.mode != ForwardingMode::kNat && std::any_of(c.backends.begin(), c.backends.end(),
                                                          [&](const BackendConfig& b) { return b.port != c.port; })) {
          out.problems.push_back(
              {s->Key(), "PortTranslationIgnored",
               absl::StrFormat("port %d/%s targets %s: DSR delivers packets to the service port %d, so the "
                               "backends must accept %d on the VIP (or use lbd.io/forwarding-mode: nat)",
                               sp.port, sp.protocol, sp.target_port, sp.port, sp.port)});
        }
        mapped.emplace_back(std::move(c), s->Key());
      }
    }
    if (!left_out.empty()) {
      std::vector<std::string> names;
      for (const std::string& n : left_out) names.push_back(n.empty() ? "(no nodeName)" : Printable(n));
      out.problems.push_back(
          {s->Key(), "DSRNodeNotReady",
           absl::StrFormat("endpoints on node(s) %s are left out: no lb-dsr-node runs there to decapsulate DSR "
                           "(deploy it, or use lbd.io/forwarding-mode: nat)",
                           absl::StrJoin(names, ", "))});
    }
  }
  // Oldest Service first (the order of `ordered`), each Service's frontends in key order:
  // lbd counts its limits in request order, so when a limit is reached the newest
  // Services are the ones refused.
  std::map<std::string, size_t> age_rank;
  for (const KService* s : ordered) age_rank.emplace(s->Key(), age_rank.size());
  std::stable_sort(mapped.begin(), mapped.end(), [&](const auto& x, const auto& y) {
    return std::tie(age_rank[x.second], x.first.vip, x.first.protocol, x.first.port) <
           std::tie(age_rank[y.second], y.first.vip, y.first.protocol, y.first.port);
  });
  for (auto& [config, owner] : mapped) {
    out.services.push_back(std::move(config));
    out.owners.push_back(std::move(owner));
  }
  std::sort(out.problems.begin(), out.problems.end());
  out.problems.erase(std::unique(out.problems.begin(), out.problems.end()), out.problems.end());
  // Services no longer present lose their remembered settings.
  std::set<std::string> present;
  for (const KService& s : services) present.insert(s.Key());
  std::erase_if(*last_good, [&](const auto& entry) { return !present.contains(entry.first); });
  return out;
}

}  // namespace lb::control::k8s
