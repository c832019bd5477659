#include "control/bird/node_config.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <sstream>

#include <yaml-cpp/yaml.h>

#include <set>

#include "absl/strings/str_format.h"

namespace lb::control::bird {
namespace {

absl::Status Invalid(const std::string& field, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrFormat("%s: %s", field, why));
}

template <typename T>
absl::StatusOr<T> Scalar(const YAML::Node& n, const std::string& field) {
  try {
    return n.as<T>();
  } catch (const YAML::Exception&) {
    return Invalid(field, "\"" + (n.IsScalar() ? n.Scalar() : std::string("(not a scalar)")) + "\" is not " +
                              (std::is_same_v<T, std::string> ? "a string" : "a number"));
  }
}

absl::StatusOr<uint32_t> AsNumber(const YAML::Node& n, const std::string& field) {
  auto v = Scalar<int64_t>(n, field);
  if (!v.ok()) return v.status();
  if (*v < 0 || *v > 4294967295LL) return Invalid(field, "out of range");
  return uint32_t(*v);
}

absl::StatusOr<bool> AsBool(const YAML::Node& n, const std::string& field) {
  try {
    return n.as<bool>();
  } catch (const YAML::Exception&) {
    return Invalid(field, "must be true or false");
  }
}

absl::StatusOr<IpAddress> AsAddress(const YAML::Node& n, const std::string& field) {
  auto s = Scalar<std::string>(n, field);
  if (!s.ok()) return s.status();
  auto a = IpAddress::Parse(*s);
  if (!a) return Invalid(field, "\"" + *s + "\" is not an IP address");
  return *a;
}

bool ValidAs(uint32_t as) { return as != 0 && as != 23456 && as != 4294967295u; }

bool ValidName(const std::string& n) {
  if (n.empty() || n.size() > 32 || !std::islower(static_cast<unsigned char>(n[0]))) return false;
  for (char c : n) {
    if (!std::islower(static_cast<unsigned char>(c)) && !std::isdigit(static_cast<unsigned char>(c)) && c != '_')
      return false;
  }
  return true;
}

}  // namespace

#define LB_TRY(var, expr) \
  auto var = (expr);      \
  if (!var.ok()) return var.status()

namespace {

absl::StatusOr<NodeConfig> ParseChecked(const std::string& text, const PasswordReader& read_password) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrFormat("not YAML: %s", e.what()));
  }
  if (!root.IsMap()) return absl::InvalidArgumentError("the node config must be a YAML mapping");
  static const std::set<std::string> kKeys = {"router_id",        "local_as",    "interface",
                                              "vip_prefixes",     "communities", "local_pref",
                                              "graceful_restart", "bfd",         "peers"};
  for (const auto& kv : root) {
    if (!kKeys.contains(kv.first.Scalar())) return Invalid(kv.first.Scalar(), "unknown setting");
  }
  NodeConfig c;
  if (!root["router_id"]) return Invalid("router_id", "required");
  LB_TRY(rid, AsAddress(root["router_id"], "router_id"));
  if (!rid->IsV4()) return Invalid("router_id", "must be an IPv4 address (BGP identifier)");
  c.router_id = *rid;
  if (!root["local_as"]) return Invalid("local_as", "required");
  LB_TRY(as, AsNumber(root["local_as"], "local_as"));
  if (!ValidAs(*as)) return Invalid("local_as", absl::StrFormat("%d is not a usable AS number", *as));
  c.local_as = *as;
  if (root["interface"]) {
    LB_TRY(i, Scalar<std::string>(root["interface"], "interface"));
    if (i->empty() || i->find('"') != std::string::npos) return Invalid("interface", "invalid name");
    c.interface = *i;
  }

  const YAML::Node prefixes = root["vip_prefixes"];
  if (!prefixes || !prefixes.IsSequence() || prefixes.size() == 0) {
    return Invalid("vip_prefixes", "required: a list of the VIP CIDRs this node announces");
  }
  for (size_t i = 0; i < prefixes.size(); ++i) {
    const std::string field = absl::StrFormat("vip_prefixes[%d]", i);
    const YAML::Node p = prefixes[i];
    if (!p.IsMap() && !p.IsScalar()) return Invalid(field, "must be a prefix or a mapping with `prefix`");
    AnnouncedPrefix ap;
    const YAML::Node prefix_node = p.IsMap() ? p["prefix"] : p;
    LB_TRY(s, Scalar<std::string>(prefix_node, p.IsMap() ? field + ".prefix" : field));
    auto prefix = IpPrefix::Parse(*s);
    if (!prefix) return Invalid(field, "\"" + *s + "\" is not a CIDR prefix (host bits must be zero)");
    ap.prefix = *prefix;
    if (p.IsMap() && p["prepend"]) {
      LB_TRY(n, AsNumber(p["prepend"], field + ".prepend"));
      if (*n > 8) return Invalid(field + ".prepend", "at most 8");
      ap.prepend = *n;
    }
    c.prefixes.push_back(ap);
  }

  if (const YAML::Node comms = root["communities"]) {
    if (!comms.IsSequence()) return Invalid("communities", "must be a list of \"A:B\" communities");
    for (size_t i = 0; i < comms.size(); ++i) {
      const std::string field = absl::StrFormat("communities[%d]", i);
      LB_TRY(s, Scalar<std::string>(comms[i], field));
      unsigned a, b;
      char extra;
      if (std::sscanf(s->c_str(), "%u:%u%c", &a, &b, &extra) != 2 || a > 65535 || b > 65535) {
        return Invalid(field, "\"" + *s + "\" is not a standard community (0..65535:0..65535)");
      }
      c.communities.emplace_back(uint16_t(a), uint16_t(b));
    }
  }
  if (root["local_pref"]) {
    LB_TRY(lp, AsNumber(root["local_pref"], "local_pref"));
    c.local_pref = *lp;
  }
  if (root["graceful_restart"]) {
    LB_TRY(gr, AsBool(root["graceful_restart"], "graceful_restart"));
    c.graceful_restart = *gr;
  }
  if (const YAML::Node bfd = root["bfd"]) {
    if (!bfd.IsMap()) return Invalid("bfd", "must be a mapping (min_rx_ms, min_tx_ms, multiplier)");
    BfdSettings b;
    const std::pair<const char*, uint32_t*> fields[] = {
        {"min_rx_ms", &b.min_rx_ms}, {"min_tx_ms", &b.min_tx_ms}, {"multiplier", &b.multiplier}};
    for (const auto& [name, out] : fields) {
      if (!bfd[name]) continue;
      LB_TRY(v, AsNumber(bfd[name], std::string("bfd.") + name));
      *out = *v;
    }
    if (b.min_rx_ms < 10 || b.min_tx_ms < 10) return Invalid("bfd", "intervals of at least 10 ms");
    if (b.multiplier < 1 || b.multiplier > 255) return Invalid("bfd.multiplier", "1..255");
    c.bfd = b;
  }

  const YAML::Node peers = root["peers"];
  if (!peers || !peers.IsSequence() || peers.size() == 0) return Invalid("peers", "required: at least one BGP peer");
  std::set<std::string> names;
  for (size_t i = 0; i < peers.size(); ++i) {
    const std::string field = absl::StrFormat("peers[%d]", i);
    const YAML::Node p = peers[i];
    if (!p.IsMap()) return Invalid(field, "must be a mapping (name, address, as, ...)");
    Peer peer;
    if (!p["name"]) return Invalid(field + ".name", "required");
    LB_TRY(name, Scalar<std::string>(p["name"], field + ".name"));
    if (!ValidName(*name)) return Invalid(field + ".name", "\"" + *name + "\" must match [a-z][a-z0-9_]*");
    if (!names.insert(*name).second) return Invalid(field + ".name", "\"" + *name + "\" is used twice");
    peer.name = *name;
    if (!p["address"]) return Invalid(field + ".address", "required");
    LB_TRY(address, AsAddress(p["address"], field + ".address"));
    peer.address = *address;
    if (!p["as"]) return Invalid(field + ".as", "required");
    LB_TRY(peer_as, AsNumber(p["as"], field + ".as"));
    if (!ValidAs(*peer_as)) return Invalid(field + ".as", "not a usable AS number");
    peer.as = *peer_as;
    if (p["password"] && p["password_file"]) {
      return Invalid(field + ".password_file", "give password or password_file, not both");
    }
    if (p["password_file"]) {
      LB_TRY(path, Scalar<std::string>(p["password_file"], field + ".password_file"));
      auto pw = read_password(*path);
      if (!pw.ok()) return Invalid(field + ".password_file", std::string(pw.status().message()));
      peer.password = *pw;
    }
    if (p["password"]) {
      LB_TRY(pw, Scalar<std::string>(p["password"], field + ".password"));
      peer.password = *pw;
    }
    if (std::any_of(peer.password.begin(), peer.password.end(),
                    [](char ch) { return ch == '"' || ch == '\\' || std::iscntrl(static_cast<unsigned char>(ch)); })) {
      return Invalid(field + (p["password"] ? ".password" : ".password_file"),
                     "must not contain \", \\ or control characters");
    }
    if (p["multihop"]) {
      LB_TRY(mh, AsNumber(p["multihop"], field + ".multihop"));
      if (*mh > 255) return Invalid(field + ".multihop", "0..255");
      peer.multihop = *mh;
    }
    if (p["bfd"]) {
      LB_TRY(bfd, AsBool(p["bfd"], field + ".bfd"));
      peer.bfd = *bfd;
    }
    if (p["local_address"]) {
      LB_TRY(local, AsAddress(p["local_address"], field + ".local_address"));
      if (local->IsV4() != peer.address.IsV4()) {
        return Invalid(field + ".local_address", "must be of the peer's address family");
      }
      peer.local_address = *local;
    }
    if (peer.multihop > 0 && peer.bfd && root["bfd"] && !peer.local_address) {
      return Invalid(field + ".local_address", "required for a multihop peer with BFD (the session's source)");
    }
    c.peers.push_back(peer);
  }
  bool v4 = false, v6 = false;
  for (const auto& p : c.prefixes) (p.prefix.address.IsV4() ? v4 : v6) = true;
  for (size_t i = 0; i < c.peers.size(); ++i) {
    const bool peer_v4 = c.peers[i].address.IsV4();
    if ((peer_v4 && !v4) || (!peer_v4 && !v6)) {
      return Invalid(absl::StrFormat("peers[%d].address", i),
                     absl::StrFormat("an IPv%d peer, but no IPv%d VIP prefix to announce to it", peer_v4 ? 4 : 6,
                                     peer_v4 ? 4 : 6));
    }
  }
  return c;
}

}  // namespace

absl::StatusOr<std::string> ReadPasswordFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrFormat("cannot read %s", path));
  std::stringstream s;
  s << in.rdbuf();
  std::string text = s.str();
  if (!text.empty() && text.back() == '\n') text.pop_back();
  if (!text.empty() && text.back() == '\r') text.pop_back();
  if (text.empty()) return absl::InvalidArgumentError(absl::StrFormat("%s is empty", path));
  return text;
}

absl::StatusOr<NodeConfig> ParseNodeConfig(const std::string& text, const PasswordReader& read_password) {
  // Every node is checked for its shape before it is read; this is the net for any case
  // that slipped through: a wrong shape is an error naming the config, never an abort.
  try {
    return ParseChecked(text, read_password);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrFormat("a setting has the wrong shape: %s", e.what()));
  }
}

#undef LB_TRY

}  // namespace lb::control::bird
