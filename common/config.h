// DataplaneConfig: the desired state of the dataplane as plain values, and its
// validation.
//
// This is what the control core turns API requests into and what SnapshotBuilder
// compiles into the tables that workers read. ValidateConfig() is pure: any thread.
#pragma once

#include <netinet/in.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "common/flow_key.h"
#include "common/millis.h"
#include "common/ip_address.h"
#include "common/maglev.h"

namespace lb {

enum class ForwardingMode : uint8_t {
  kDsrIpip,  // IPIP / IP6IP6 / 4in6 / 6in4 (RFC 2003, RFC 2473)
  kDsrGue,   // Generic UDP Encapsulation (draft-ietf-intarea-gue §3.1, version 0)
  kNat,      // full NAT: destination -> backend, source -> an SNAT address and port (RFC 3022)
};

enum class BackendState : uint8_t {
  kActive,    // in the Maglev table
  kDraining,  // keeps its flows, takes no new ones (Kubernetes "terminating")
  kDown,      // takes nothing; its flows move to other backends
};

std::string_view ToString(ForwardingMode m);
std::string_view ToString(HashFields h);
std::string_view ToString(BackendState s);

struct BackendConfig {
  IpAddress address;
  uint16_t port = 0;    // part of the backend's identity; DSR delivers to the VIP's port,
                        // NAT to this one (0: the VIP's)
  uint32_t weight = 1;  // relative share of new flows; 0 behaves as draining
  BackendState state = BackendState::kActive;
  friend bool operator==(const BackendConfig&, const BackendConfig&) = default;
};

struct ServiceConfig {
  IpAddress vip;
  uint8_t protocol = IPPROTO_TCP;  // IPPROTO_TCP or IPPROTO_UDP
  uint16_t port = 0;               // 0: all ports
  ForwardingMode mode = ForwardingMode::kDsrIpip;
  HashFields hash_fields = HashFields::kFiveTuple;
  uint32_t table_size = 0;  // prime; 0: by the backend count (MaglevTableSizeFor)
  std::vector<BackendConfig> backends;
  // The clients it admits (Kubernetes' spec.loadBalancerSourceRanges), of either family;
  // others are dropped (source_not_allowed). Empty: every client.
  std::vector<IpPrefix> source_ranges;
  friend bool operator==(const ServiceConfig&, const ServiceConfig&) = default;
};

struct EncapConfig {
  // Outer source addresses. The host bits of each prefix are filled from the flow hash,
  // so that a backend's NIC (whose RSS sees only the outer header of an IPIP packet)
  // spreads flows over its queues; a /32 or /128 gives a fixed source. For IPv6 at most
  // the low 32 bits vary. An unset prefix (length 0, address ::) means "no source for
  // this family": services with backends of that family are refused.
  IpPrefix source_v4;
  IpPrefix source_v6;
  uint16_t gue_port = 6080;  // GUE destination port (the backends' FOU/GUE listener)
  uint8_t outer_ttl = 64;
};

// Source addresses and ports of NAT mode. Each (address, port) is one connection to a
// backend; the ports are partitioned over the workers (port p belongs to worker
// (p - port_min) % workers), so that a reply's owner follows from its destination port.
inline constexpr size_t kMaxSnatAddresses = 16;
struct NatConfig {
  std::vector<IpAddress> addresses;  // IPv4 and/or IPv6, at most kMaxSnatAddresses
  uint16_t port_min = 1024;
  uint16_t port_max = 65535;
  friend bool operator==(const NatConfig&, const NatConfig&) = default;
};

struct FlowTimeouts {
  Millis tcp_syn_sent = 10'000;
  Millis tcp_established = 300'000;
  Millis tcp_closing = 10'000;
  Millis udp = 30'000;
  Millis other = 30'000;
};

using MacAddress = std::array<uint8_t, 6>;
std::string MacToString(const MacAddress& mac);               // "02:00:00:00:00:01"
std::optional<MacAddress> ParseMac(const std::string& text);  // nullopt unless 6 hex bytes with ':'

// Where encapsulated packets go on the wire: the gateway toward the backends.
struct NextHop {
  MacAddress source_mac{};
  MacAddress gateway_mac{};  // all zero: not known yet (packets are dropped: no_next_hop)
  uint16_t vlan = 0;         // 802.1Q VLAN ID of the egress; 0: untagged
};

// The budgets of what a worker hands to the kernel (the exception path), one per class,
// so that a flood of one class cannot crowd out another (docs/security.md).
enum class ExceptionClass : uint8_t {
  kOther,     // everything else for the node: ICMP, SSH, BGP from others, ...
  kNeighbor,  // ARP, and IPv6 neighbour discovery with hop limit 255 (RFC 4861)
  kRouting,   // BGP and BFD from control_peers with TTL 255 (GTSM, RFC 5082 and 5881)
  kFlowSync,  // flow sync from flow_sync_peers
};
inline constexpr size_t kExceptionClasses = 4;
struct ExceptionBudgets {
  // Packets a second, per worker; 0: no limit.
  std::array<uint32_t, kExceptionClasses> per_second = {10'000, 10'000, 10'000, 50'000};
  uint32_t& operator[](ExceptionClass c) { return per_second[size_t(c)]; }
  uint32_t operator[](ExceptionClass c) const { return per_second[size_t(c)]; }
};

// What every service of a node shares: fixed by lbd's flags, except the next hop and the
// neighbours, which neighbour resolution follows.
struct NodeConfig {
  EncapConfig encap;
  NatConfig nat;
  NextHop next_hop;
  // MACs the kernel knows on the exception interface: backends among them are on the
  // node's own segment, and their packets skip the gateway.
  absl::flat_hash_map<IpAddress, MacAddress> neighbors;
  uint16_t mtu = 1500;                     // IP MTU of the egress link
  uint32_t icmp_too_big_per_second = 100;  // per worker; 0 disables the ICMP errors
  FlowTimeouts timeouts;
  // The CIDRs this node announces. A packet to one of them that matches no VIP is not the
  // kernel's (the node's own addresses are outside them): it is dropped (no_vip), so a
  // flood to unused VIP addresses never reaches the exception path.
  std::vector<IpPrefix> vip_cidrs;
  ExceptionBudgets exception_budgets;
  // The node's BGP and BFD peers (its ToRs): only BGP and BFD from them, with TTL 255,
  // is routing traffic; the same ports from anyone else are kOther. Empty: none.
  std::vector<IpAddress> control_peers;
  // Flow sync (dataplane/flow_sync_wire.h): the peer LB nodes and the UDP port. Their datagrams to
  // that port are control traffic too, so that a flood to the node cannot crowd out what
  // keeps connections alive across a failover. No peers: no flow sync.
  std::vector<IpAddress> flow_sync_peers;
  uint16_t flow_sync_port = 0;
};

struct DataplaneConfig : NodeConfig {
  std::vector<ServiceConfig> services;
};

struct Limits {
  uint32_t max_services = 4096;
  uint32_t max_backends_per_service = kMaxMaglevBackends;
  uint32_t max_backends_total = 1u << 20;
  // Bound on the tables of all services together (ServiceMemory), in bytes.
  uint64_t max_table_memory = uint64_t{1} << 30;
  // When not empty, the only prefixes backends may be in (e.g. the cluster's pod CIDRs).
  std::vector<IpPrefix> backend_cidrs;
  // The LB nodes' own addresses (this node's interfaces and --tap_addresses, the flow-sync
  // peers): never a backend, whatever a tenant's EndpointSlice says.
  std::vector<IpAddress> node_addresses;
};

// The Maglev table size a service uses: its own, or the one its backend count gives.
inline uint32_t EffectiveTableSize(const ServiceConfig& s) {
  return s.table_size != 0 ? s.table_size : MaglevTableSizeFor(s.backends.size());
}

// What a service costs in lbd's tables, as counted against Limits::max_table_memory: its
// Maglev table (2 bytes an entry) and its backends' records (kBackendRecordBytes each).
// A function of the configuration alone, so that every node counts the same.
inline constexpr uint64_t kBackendRecordBytes = 128;
inline constexpr size_t kMaxSourceRanges = 4096;
inline constexpr uint64_t kSourceRangeBytes = 32;  // a SourceFilter's range
inline uint64_t ServiceMemory(const ServiceConfig& s) {
  return uint64_t{EffectiveTableSize(s)} * sizeof(uint16_t) + s.backends.size() * kBackendRecordBytes +
         s.source_ranges.size() * kSourceRangeBytes;
}

// Validates one service on its own, naming fields under `field` (e.g. "service" or
// "services[3]"). ValidateConfig() runs it for each service and adds the checks across
// services (duplicates, totals).
// With vip_cidrs set, a VIP must lie in them: the node's own addresses are outside them,
// so no service can capture the node's BGP, BFD or SSH.
absl::Status ValidateService(const ServiceConfig& service, const std::string& field, const NodeConfig& node,
                             const Limits& limits);
absl::Status ValidateNat(const NatConfig& nat);
// The node-wide settings: encapsulation, NAT, timeouts, MTU.
absl::Status ValidateNode(const NodeConfig& node);

// OK, or INVALID_ARGUMENT / RESOURCE_EXHAUSTED naming the first offending field, as in
// "services[2].backends[0].address: 10.0.0.1 is IPv4 but no encap.source_v4 is set".
absl::Status ValidateConfig(const DataplaneConfig& config, const Limits& limits);

}  // namespace lb
