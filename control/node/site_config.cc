#include "control/node/site_config.h"

#include <algorithm>
#include <cstdlib>
#include <set>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "control/bird/node_config.h"
#include "common/ip_address.h"

namespace lb::control::node {
namespace {

absl::Status Invalid(const std::string& field, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrFormat("%s: %s", field, why));
}

#define LB_TRY(var, expr) \
  auto var = (expr);      \
  if (!var.ok()) return var.status()

absl::StatusOr<std::string> AsString(const YAML::Node& n, const std::string& field) {
  if (!n) return Invalid(field, "required");
  if (!n.IsScalar()) return Invalid(field, "must be a string");
  return n.Scalar();
}

absl::StatusOr<IpAddress> AsAddress(const YAML::Node& n, const std::string& field) {
  LB_TRY(s, AsString(n, field));
  auto a = IpAddress::Parse(*s);
  if (!a) return Invalid(field, "\"" + *s + "\" is not an IP address");
  return *a;
}

absl::Status OnlyKeys(const YAML::Node& map, const std::string& field, const std::set<std::string>& keys) {
  if (!map.IsMap()) return Invalid(field, "must be a mapping");
  for (const auto& kv : map) {
    if (!keys.contains(kv.first.Scalar())) {
      return Invalid(field.empty() ? kv.first.Scalar() : field + "." + kv.first.Scalar(), "unknown setting");
    }
  }
  return absl::OkStatus();
}

// The uplink's address: ADDRESS/LENGTH, the host's address on its rack's subnet.
struct Uplink {
  IpAddress address;
  int length = 0;
};

absl::StatusOr<Uplink> AsUplink(const YAML::Node& n, const std::string& field) {
  LB_TRY(s, AsString(n, field));
  const size_t slash = s->find('/');
  const auto a = IpAddress::Parse(s->substr(0, slash));
  int length = -1;
  if (slash != std::string::npos) length = std::atoi(s->c_str() + slash + 1);
  if (!a || slash == std::string::npos || length < 1 || length > (a->IsV4() ? 32 : 128)) {
    return Invalid(field, "\"" + *s + "\" is not ADDRESS/LENGTH (the uplink's address on its subnet: 10.90.1.2/24)");
  }
  return Uplink{*a, length};
}

struct Node {
  std::string name, rack, port;
  Uplink uplink;
  std::optional<IpAddress> snat, management;
};

std::string Host(const IpAddress& a) { return a.ToString() + (a.IsV4() ? "/32" : "/128"); }

// The list of CIDR prefixes `root[name]`; `what` says what it must be when it is not one
// (required: absent or empty is an error too).
absl::StatusOr<std::vector<std::string>> CidrList(const YAML::Node& root, const std::string& name, bool required,
                                                  const std::string& what) {
  std::vector<std::string> out;
  const YAML::Node list = root[name];
  if (!list && !required) return out;
  if (!list || !list.IsSequence() || (required && list.size() == 0)) return Invalid(name, what);
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string field = absl::StrFormat("%s[%d]", name, i);
    LB_TRY(s, AsString(list[i], field));
    if (!IpPrefix::Parse(*s)) return Invalid(field, "\"" + *s + "\" is not a CIDR prefix (host bits must be zero)");
    out.push_back(*s);
  }
  return out;
}

absl::StatusOr<std::string> ParseAndRender(const YAML::Node& root, const std::string& node_name, NodeFiles& files) {
  if (absl::Status s = OnlyKeys(root, "", {"vip_cidrs", "backend_cidrs", "port", "bgp", "racks", "nodes"}); !s.ok()) {
    return s;
  }

  LB_TRY(vip_list, CidrList(root, "vip_cidrs", /*required=*/true, "required: a list of CIDRs"));
  const std::vector<std::string> vip_cidrs = *std::move(vip_list);
  // The cluster's pod (and node) CIDRs: the only backends lbd takes. Optional, advised.
  LB_TRY(backend_list,
         CidrList(root, "backend_cidrs", /*required=*/false, "a list of CIDRs (the cluster's pod CIDRs)"));
  const std::vector<std::string> backend_cidrs = *std::move(backend_list);
  const YAML::Node bgp = root["bgp"];
  if (!bgp || !bgp.IsMap())
    return Invalid("bgp", "required: lb-bird-gen's settings every node shares (local_as, bfd, ...)");
  for (const char* derived : {"router_id", "vip_prefixes", "peers"}) {
    if (bgp[derived]) return Invalid(std::string("bgp.") + derived, "comes from the node and its rack; not set here");
  }

  const YAML::Node racks = root["racks"];
  if (!racks || !racks.IsMap() || racks.size() == 0) return Invalid("racks", "required: a mapping of rack names");
  for (const auto& kv : racks) {
    const std::string field = "racks." + kv.first.Scalar();
    if (absl::Status s = OnlyKeys(kv.second, field, {"gateway", "peers"}); !s.ok()) return s;
    LB_TRY(gw, AsAddress(kv.second["gateway"], field + ".gateway"));
    const YAML::Node peers = kv.second["peers"];
    if (!peers || !peers.IsSequence() || peers.size() == 0) {
      return Invalid(field + ".peers", "required: the rack's ToR(s), as lb-bird-gen's peers");
    }
  }

  const YAML::Node nodes = root["nodes"];
  if (!nodes || !nodes.IsMap() || nodes.size() == 0) return Invalid("nodes", "required: a mapping of node names");
  std::vector<Node> all;
  std::set<IpAddress> used;
  for (const auto& kv : nodes) {
    Node n{.name = kv.first.Scalar()};
    const std::string field = "nodes." + n.name;
    if (absl::Status s = OnlyKeys(kv.second, field, {"rack", "address", "snat_address", "management", "port"});
        !s.ok()) {
      return s;
    }
    LB_TRY(rack, AsString(kv.second["rack"], field + ".rack"));
    if (!racks[*rack]) return Invalid(field + ".rack", "no rack \"" + *rack + "\" under racks");
    n.rack = *rack;
    LB_TRY(uplink, AsUplink(kv.second["address"], field + ".address"));
    if (!uplink->address.IsV4()) return Invalid(field + ".address", "must be IPv4 (it is the node's BGP router id)");
    n.uplink = *uplink;
    if (kv.second["snat_address"]) {
      LB_TRY(a, AsAddress(kv.second["snat_address"], field + ".snat_address"));
      n.snat = *a;
    }
    if (kv.second["management"]) {
      LB_TRY(a, AsAddress(kv.second["management"], field + ".management"));
      n.management = *a;
    }
    const YAML::Node port = kv.second["port"] ? kv.second["port"] : root["port"];
    LB_TRY(p, AsString(port, field + ".port (or port, for every node)"));
    n.port = *p;
    for (const std::optional<IpAddress>& a : {std::optional<IpAddress>(n.uplink.address), n.snat, n.management}) {
      if (a && !used.insert(*a).second) return Invalid(field, a->ToString() + " is another node's address too");
    }
    all.push_back(std::move(n));
  }
  const auto self = std::find_if(all.begin(), all.end(), [&](const Node& n) { return n.name == node_name; });
  if (self == all.end()) {
    return absl::NotFoundError(absl::StrFormat(
        "node \"%s\" is not under nodes (the site configuration names %d node(s))", node_name, all.size()));
  }
  const YAML::Node rack = racks[self->rack];

  // Flow sync runs over the nodes' management addresses: it needs no route that exists
  // only while lbd runs, and a node whose uplink is cut still hands its flows over.
  std::vector<std::string> sync_peers, snat_prefixes, node_addresses;
  for (const Node& n : all) {
    // ADDRESS=SNAT: a peer's NAT sessions are adopted only on its own SNAT address.
    if (n.management) sync_peers.push_back(n.management->ToString() + (n.snat ? "=" + n.snat->ToString() : ""));
    if (n.snat) snat_prefixes.push_back(Host(*n.snat));
    for (const auto& a : {std::optional<IpAddress>(n.uplink.address), n.snat, n.management}) {
      if (a) node_addresses.push_back(a->ToString());
    }
  }
  if (!sync_peers.empty() && sync_peers.size() != all.size()) {
    return Invalid("nodes", "give every node a management address, or none (flow sync runs between them all)");
  }
  if (!snat_prefixes.empty() && snat_prefixes.size() != all.size()) {
    return Invalid("nodes", "give every node an snat_address, or none (each backs up the others' NAT sessions)");
  }
  std::vector<std::string> peer_addresses;
  for (const YAML::Node& p : rack["peers"]) {
    if (p.IsMap() && p["address"] && p["address"].IsScalar()) peer_addresses.push_back(p["address"].Scalar());
  }

  const bool pci = self->port.find(':') != std::string::npos && !self->port.starts_with("af_packet:");
  // An af_packet port needs no PCI device: EAL then probes none (and takes no NIC that
  // another program bound to vfio-pci).
  files["lbd.eal"] = pci ? "-a " + self->port + "\n" : "--no-pci\n";
  std::string lbd = absl::StrFormat("--port=%s\n--tap_addresses=%s/%d\n--gateway=%s\n--control_peers=%s\n", self->port,
                                    self->uplink.address.ToString(), self->uplink.length, rack["gateway"].Scalar(),
                                    absl::StrJoin(peer_addresses, ","));
  absl::StrAppend(&lbd, "--encap_source_v4=", Host(self->uplink.address), "\n");
  // Every node's SNAT address is in every node's --vip_cidrs: a packet to a peer's is for
  // a session adopted from it, or dropped (never routed back to the ToR).
  std::vector<std::string> lbd_cidrs = vip_cidrs;
  lbd_cidrs.insert(lbd_cidrs.end(), snat_prefixes.begin(), snat_prefixes.end());
  absl::StrAppend(&lbd, "--vip_cidrs=", absl::StrJoin(lbd_cidrs, ","), "\n");
  if (!backend_cidrs.empty()) absl::StrAppend(&lbd, "--backend_cidrs=", absl::StrJoin(backend_cidrs, ","), "\n");
  if (self->snat) absl::StrAppend(&lbd, "--snat_addresses=", self->snat->ToString(), "\n");
  if (!sync_peers.empty()) absl::StrAppend(&lbd, "--flow_sync_peers=", absl::StrJoin(sync_peers, ","), "\n");
  files["lbd.flags"] = lbd;
  files["watcher.flags"] = absl::StrFormat("--vip_cidrs=%s\n--node_addresses=%s\n", absl::StrJoin(vip_cidrs, ","),
                                           absl::StrJoin(node_addresses, ","));

  // lb-bird-gen: the shared settings, this node's router id, the VIP CIDRs and its own
  // SNAT address, every other node's as a backup (a longer path), the rack's peers.
  YAML::Node gen = YAML::Clone(bgp);
  gen["router_id"] = self->uplink.address.ToString();
  YAML::Node prefixes(YAML::NodeType::Sequence);
  for (const std::string& c : vip_cidrs) prefixes.push_back(c);
  for (const Node& n : all) {
    if (!n.snat) continue;
    if (n.name == self->name) {
      prefixes.push_back(Host(*n.snat));
    } else {
      YAML::Node backup;
      backup["prefix"] = Host(*n.snat);
      backup["prepend"] = 2;
      prefixes.push_back(backup);
    }
  }
  gen["vip_prefixes"] = prefixes;
  gen["peers"] = YAML::Clone(rack["peers"]);
  YAML::Emitter out;
  out << gen;
  return std::string(out.c_str()) + "\n";
}

}  // namespace

absl::StatusOr<NodeFiles> RenderNodeFiles(const std::string& site_yaml, const std::string& node_name) {
  YAML::Node root;
  try {
    root = YAML::Load(site_yaml);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrFormat("not YAML: %s", e.what()));
  }
  if (!root.IsMap()) return absl::InvalidArgumentError("the site configuration must be a YAML mapping");
  NodeFiles files;
  try {
    LB_TRY(gen, ParseAndRender(root, node_name, files));
    // lb-bird-gen's own validation, so that a mistake shows here, before any container
    // runs (password files are read by lb-bird-gen, where they are mounted).
    auto checked = bird::ParseNodeConfig(*gen, [](const std::string&) { return std::string("x"); });
    if (!checked.ok()) return Invalid("bgp (or the rack's peers)", std::string(checked.status().message()));
    files["bird-gen.yaml"] = *gen;
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrFormat("unexpected YAML structure: %s", e.what()));
  }
  return files;
}

}  // namespace lb::control::node
