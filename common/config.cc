#include "common/config.h"

#include <algorithm>

#include <cstdio>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace lb {
namespace {

constexpr uint16_t kMinMtu = 1280;  // IPv6 minimum link MTU (RFC 8200 §5)
constexpr uint16_t kMaxMtu = 9216;
constexpr uint32_t kMaxWeight = 65535;
constexpr Millis kMaxTimeout = Millis{1} << 30;  // well inside the wrapping clock's range

absl::Status Invalid(const absl::FormatSpec<std::string, std::string>& format, const std::string& field,
                     const std::string& detail) {
  return absl::InvalidArgumentError(absl::StrFormat(format, field, detail));
}

absl::Status ValidateEncap(const EncapConfig& e) {
  if (e.source_v4.IsSet() && !e.source_v4.address.IsV4()) {
    return Invalid("%s: %s is not an IPv4 prefix", "encap.source_v4", e.source_v4.ToString());
  }
  if (e.source_v6.IsSet() && e.source_v6.address.IsV4()) {
    return Invalid("%s: %s is not an IPv6 prefix", "encap.source_v6", e.source_v6.ToString());
  }
  if (e.gue_port == 0) return Invalid("%s: %s", "encap.gue_port", "must not be 0");
  if (e.outer_ttl == 0) return Invalid("%s: %s", "encap.outer_ttl", "must not be 0");
  return absl::OkStatus();
}

bool IsSnatAddress(const NatConfig& nat, const IpAddress& a) {
  return std::find(nat.addresses.begin(), nat.addresses.end(), a) != nat.addresses.end();
}

absl::Status ValidateTimeouts(const FlowTimeouts& t) {
  const std::pair<const char*, Millis> all[] = {{"timeouts.tcp_syn_sent", t.tcp_syn_sent},
                                                {"timeouts.tcp_established", t.tcp_established},
                                                {"timeouts.tcp_closing", t.tcp_closing},
                                                {"timeouts.udp", t.udp},
                                                {"timeouts.other", t.other}};
  for (const auto& [name, value] : all) {
    if (value == 0 || value > kMaxTimeout) {
      return Invalid("%s: %s", name, absl::StrFormat("%d ms is outside 1..%d ms", value, kMaxTimeout));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateNat(const NatConfig& nat) {
  if (nat.addresses.size() > kMaxSnatAddresses) {
    return Invalid("%s: %s", "nat.addresses",
                   absl::StrFormat("%d addresses, at most %d", nat.addresses.size(), kMaxSnatAddresses));
  }
  for (size_t i = 0; i < nat.addresses.size(); ++i) {
    const std::string field = absl::StrFormat("nat.addresses[%d]", i);
    if (nat.addresses[i].IsZero()) return Invalid("%s: %s", field, "must be set");
    for (size_t j = 0; j < i; ++j) {
      if (nat.addresses[j] == nat.addresses[i]) return Invalid("%s: %s", field, "listed twice");
    }
  }
  if (nat.port_min == 0 || nat.port_min > nat.port_max) {
    return Invalid("%s: %s", "nat.ports", absl::StrFormat("%d-%d is not a range of ports", nat.port_min, nat.port_max));
  }
  return absl::OkStatus();
}

absl::Status ValidateService(const ServiceConfig& s, const std::string& field, const NodeConfig& node,
                             const Limits& limits) {
  const EncapConfig& encap = node.encap;
  const NatConfig& nat = node.nat;
  if (s.vip.IsZero()) return Invalid("%s.vip: %s", field, "must be set");
  if (const std::string_view special = s.vip.SpecialPurpose(); !special.empty()) {
    return Invalid("%s.vip: %s", field, absl::StrFormat("%s is a %s address, never a VIP", s.vip.ToString(), special));
  }
  if (!node.vip_cidrs.empty() && std::none_of(node.vip_cidrs.begin(), node.vip_cidrs.end(),
                                              [&](const IpPrefix& p) { return p.Contains(s.vip); })) {
    return Invalid(
        "%s.vip: %s", field,
        absl::StrFormat("%s is outside the prefixes this node announces (lbd --vip_cidrs: %s)", s.vip.ToString(),
                        absl::StrJoin(node.vip_cidrs, ",",
                                      [](std::string* out, const IpPrefix& p) { out->append(p.ToString()); })));
  }
  if (IsSnatAddress(nat, s.vip)) {
    return Invalid("%s.vip: %s", field,
                   absl::StrFormat("%s is an SNAT address of this node (nat.addresses)", s.vip.ToString()));
  }
  for (const IpPrefix* own : {&encap.source_v4, &encap.source_v6}) {
    if (own->IsSet() && own->Contains(s.vip)) {
      return Invalid("%s.vip: %s", field,
                     absl::StrFormat("%s is among this node's encapsulation source addresses (%s)", s.vip.ToString(),
                                     own->ToString()));
    }
  }
  if (s.protocol != IPPROTO_TCP && s.protocol != IPPROTO_UDP) {
    return Invalid("%s.protocol: %s", field, absl::StrFormat("must be TCP (6) or UDP (17), not %d", s.protocol));
  }
  if (s.mode != ForwardingMode::kDsrIpip && s.mode != ForwardingMode::kDsrGue && s.mode != ForwardingMode::kNat) {
    return Invalid("%s.mode: %s", field, absl::StrFormat("unknown mode %d", int(s.mode)));
  }
  const bool nat_mode = s.mode == ForwardingMode::kNat;
  if (nat_mode && std::none_of(nat.addresses.begin(), nat.addresses.end(),
                               [&](const IpAddress& a) { return a.IsV4() == s.vip.IsV4(); })) {
    return Invalid("%s.mode: %s", field,
                   absl::StrFormat("nat needs an SNAT address of the VIP's family (%s); none is configured",
                                   s.vip.IsV4() ? "IPv4" : "IPv6"));
  }
  if (s.hash_fields > HashFields::kSourceIpDestPort) {
    return Invalid("%s.hash_fields: %s", field, absl::StrFormat("unknown value %d", int(s.hash_fields)));
  }
  if (s.table_size != 0 && (!IsPrime(s.table_size) || s.table_size > kMaxMaglevTableSize)) {
    return Invalid("%s.table_size: %s", field,
                   absl::StrFormat("%d must be 0 (by the backend count) or a prime no larger than %d "
                                   "(for example 65537)",
                                   s.table_size, kMaxMaglevTableSize));
  }
  if (s.source_ranges.size() > kMaxSourceRanges) {
    return Invalid("%s.source_ranges: %s", field,
                   absl::StrFormat("%d prefixes, at most %d", s.source_ranges.size(), kMaxSourceRanges));
  }
  if (s.backends.size() > limits.max_backends_per_service) {
    return absl::ResourceExhaustedError(absl::StrFormat("%s.backends: %d backends, the limit is %d per service", field,
                                                        s.backends.size(), limits.max_backends_per_service));
  }
  absl::flat_hash_map<std::pair<IpAddress, uint16_t>, size_t> seen;
  size_t weighted = 0;
  for (size_t j = 0; j < s.backends.size(); ++j) {
    const BackendConfig& b = s.backends[j];
    const std::string bfield = absl::StrFormat("%s.backends[%d]", field, j);
    if (b.address.IsZero()) return Invalid("%s.address: %s", bfield, "must be set");
    if (const std::string_view special = b.address.SpecialPurpose(); !special.empty()) {
      return Invalid("%s.address: %s", bfield,
                     absl::StrFormat("%s is a %s address, never a backend", b.address.ToString(), special));
    }
    if (b.address == s.vip) {
      return Invalid("%s.address: %s", bfield,
                     absl::StrFormat("%s is the service's own VIP (a loop)", b.address.ToString()));
    }
    if (std::find(limits.node_addresses.begin(), limits.node_addresses.end(), b.address) !=
        limits.node_addresses.end()) {
      return Invalid("%s.address: %s", bfield,
                     absl::StrFormat("%s is an LB node's own address (its interfaces, its TAP, a flow-sync peer)",
                                     b.address.ToString()));
    }
    if (IsSnatAddress(nat, b.address)) {
      return Invalid("%s.address: %s", bfield,
                     absl::StrFormat("%s is an SNAT address of this node (nat.addresses)", b.address.ToString()));
    }
    if (!limits.backend_cidrs.empty() && std::none_of(limits.backend_cidrs.begin(), limits.backend_cidrs.end(),
                                                      [&](const IpPrefix& p) { return p.Contains(b.address); })) {
      return Invalid(
          "%s.address: %s", bfield,
          absl::StrFormat("%s is outside the backend prefixes this node allows (backend_cidrs)", b.address.ToString()));
    }
    if (b.weight > kMaxWeight) {
      return Invalid("%s.weight: %s", bfield, absl::StrFormat("%d is above the maximum %d", b.weight, kMaxWeight));
    }
    if (b.state > BackendState::kDown) {
      return Invalid("%s.state: %s", bfield, absl::StrFormat("unknown state %d", int(b.state)));
    }
    const IpPrefix& source = b.address.IsV4() ? encap.source_v4 : encap.source_v6;
    if (nat_mode && b.address.IsV4() != s.vip.IsV4()) {
      return Invalid("%s.address: %s", bfield,
                     absl::StrFormat("%s: NAT does not translate between IPv4 and IPv6", b.address.ToString()));
    }
    if (!nat_mode && !source.IsSet()) {
      return Invalid("%s.address: %s", bfield,
                     absl::StrFormat("%s is %s but encap.%s is not set", b.address.ToString(),
                                     b.address.IsV4() ? "IPv4" : "IPv6", b.address.IsV4() ? "source_v4" : "source_v6"));
    }
    auto [it, inserted] = seen.try_emplace(std::make_pair(b.address, b.port), j);
    if (!inserted) {
      return Invalid("%s: %s", bfield,
                     absl::StrFormat("same address and port as %s.backends[%d] (%s port %d)", field, it->second,
                                     b.address.ToString(), b.port));
    }
    if (b.state == BackendState::kActive && b.weight > 0) ++weighted;
  }
  if (weighted > EffectiveTableSize(s)) {
    return Invalid("%s.table_size: %s", field,
                   absl::StrFormat("%d entries cannot hold %d active backends", EffectiveTableSize(s), weighted));
  }
  if (ServiceMemory(s) > limits.max_table_memory) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("%s.table_size: the service needs %d bytes of tables, the limit for all services is %d "
                        "(max_table_memory)",
                        field, ServiceMemory(s), limits.max_table_memory));
  }
  return absl::OkStatus();
}

std::string_view ToString(ForwardingMode m) {
  switch (m) {
    case ForwardingMode::kDsrIpip:
      return "dsr-ipip";
    case ForwardingMode::kDsrGue:
      return "dsr-gue";
    case ForwardingMode::kNat:
      return "nat";
  }
  return "unknown";
}

std::string_view ToString(HashFields h) {
  switch (h) {
    case HashFields::kFiveTuple:
      return "5-tuple";
    case HashFields::kSourceIp:
      return "source-ip";
    case HashFields::kSourceIpDestPort:
      return "source-ip+dest-port";
  }
  return "unknown";
}

std::string_view ToString(BackendState s) {
  switch (s) {
    case BackendState::kActive:
      return "active";
    case BackendState::kDraining:
      return "draining";
    case BackendState::kDown:
      return "down";
  }
  return "unknown";
}

std::string MacToString(const MacAddress& m) {
  return absl::StrFormat("%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
}

std::optional<MacAddress> ParseMac(const std::string& text) {
  MacAddress m;
  unsigned v[6];
  char extra;
  if (std::sscanf(text.c_str(), "%x:%x:%x:%x:%x:%x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &extra) != 6) {
    return std::nullopt;
  }
  for (int i = 0; i < 6; ++i) {
    if (v[i] > 255) return std::nullopt;
    m[i] = uint8_t(v[i]);
  }
  return m;
}

absl::Status ValidateNode(const NodeConfig& node) {
  if (absl::Status s = ValidateEncap(node.encap); !s.ok()) return s;
  if (absl::Status s = ValidateNat(node.nat); !s.ok()) return s;
  if (absl::Status s = ValidateTimeouts(node.timeouts); !s.ok()) return s;
  if (node.mtu < kMinMtu || node.mtu > kMaxMtu) {
    return Invalid("%s: %s", "mtu", absl::StrFormat("%d is outside %d..%d", node.mtu, kMinMtu, kMaxMtu));
  }
  return absl::OkStatus();
}

absl::Status ValidateConfig(const DataplaneConfig& config, const Limits& limits) {
  if (config.services.size() > limits.max_services) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("services: %d services, the limit is %d", config.services.size(), limits.max_services));
  }
  if (absl::Status s = ValidateNode(config); !s.ok()) return s;
  using ServiceId = std::tuple<IpAddress, uint8_t, uint16_t>;
  absl::flat_hash_map<ServiceId, size_t> seen;
  size_t total_backends = 0;
  uint64_t memory = 0;
  for (size_t i = 0; i < config.services.size(); ++i) {
    const ServiceConfig& s = config.services[i];
    const std::string field = absl::StrFormat("services[%d]", i);
    if (absl::Status st = ValidateService(s, field, config, limits); !st.ok()) return st;
    auto [it, inserted] = seen.try_emplace(ServiceId{s.vip, s.protocol, s.port}, i);
    if (!inserted) {
      return Invalid("%s: %s", field, absl::StrFormat("same VIP, protocol and port as services[%d]", it->second));
    }
    total_backends += s.backends.size();
    memory += ServiceMemory(s);
  }
  if (memory > limits.max_table_memory) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "services: %d bytes of tables in all, the limit is %d (max_table_memory)", memory, limits.max_table_memory));
  }
  if (total_backends > limits.max_backends_total) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("services: %d backends in all, the limit is %d", total_backends, limits.max_backends_total));
  }
  return absl::OkStatus();
}

}  // namespace lb
