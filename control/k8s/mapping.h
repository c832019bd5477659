// Kubernetes state -> lbd state: which Services become lbd services, with which
// backends and settings. This is the watcher's whole policy, as a pure function of the
// Services and EndpointSlices (plus the last good annotation settings it remembers), so
// it is unit-tested without an API server. See docs/k8s.md for the rules.
// Pure: any thread.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "control/k8s/objects.h"
#include "control/k8s/problem.h"
#include "absl/time/time.h"
#include "common/config.h"

namespace lb::control::k8s {

inline constexpr char kAnnotationPrefix[] = "lbd.io/";
inline constexpr char kModeAnnotation[] = "lbd.io/forwarding-mode";
inline constexpr char kTableSizeAnnotation[] = "lbd.io/maglev-table-size";

// Which Services' spec.externalIPs are served. externalIPs let any tenant claim any
// address (CVE-2020-8554), so by default none are, as kube-proxy's advice and Cilium and
// MetalLB do; an address recorded in a LoadBalancer Service's status is never given to
// an externalIP, whatever the policy.
struct ExternalIpPolicy {
  enum class Mode { kNone, kAll, kNamespaces };
  Mode mode = Mode::kNone;
  std::set<std::string> namespaces;  // kNamespaces: the namespaces allowed
  bool Allows(const std::string& ns) const {
    return mode == Mode::kAll || (mode == Mode::kNamespaces && namespaces.contains(ns));
  }
};
// "none", "all" or "namespaces=a,b"; an error names the flag.
absl::StatusOr<ExternalIpPolicy> ParseExternalIpPolicy(const std::string& text);

struct MappingOptions {
  std::string load_balancer_class = "lbd.io/dpdk-l4";
  // The CIDRs this node announces: the pool of LoadBalancer addresses; externalIPs
  // outside them cannot reach this node and are not served. Empty: nothing is served.
  std::vector<IpPrefix> vip_cidrs;
  ExternalIpPolicy external_ips;
  // The LB nodes' own addresses: never a VIP, whatever a Service asks.
  std::vector<IpAddress> node_addresses;
  // EndpointSlices are followed only when the EndpointSlice controller manages them
  // (label endpointslice.kubernetes.io/managed-by), unless this is set: a tenant who
  // writes a slice by hand could otherwise point any Service at any address.
  bool accept_unmanaged_slices = false;
  // The largest Maglev table a Service may ask for (lbd.io/maglev-table-size).
  uint32_t max_table_size = 262139;
  // Ports served per Service, in spec order; the rest get a TooManyPorts Event. Each
  // (address, port) is an lbd service, counted against lbd's node-wide limits.
  uint32_t max_ports_per_service = 64;
  // The nodes whose lb-dsr-node holds a live Lease (LiveDsrNodes). When set, a DSR
  // Service's endpoints on other nodes are left out, with an Event: their pods cannot
  // decapsulate. nullopt: not checked (the watcher's --dsr_lease_namespace=none).
  std::optional<std::set<std::string>> dsr_nodes;
};

// The nodes named by live lb-dsr-node Leases ("lb-dsr-node-NODE", holder NODE): renewed
// within their duration of `now`. The nodes' clocks must agree to a few seconds, as
// Kubernetes' own node Leases require.
std::set<std::string> LiveDsrNodes(const std::vector<KLease>& leases, absl::Time now);

inline constexpr char kEndpointSliceController[] = "endpointslice-controller.k8s.io";
// lb-dsr-node's Lease on node N is "lb-dsr-node-N", held by N.
inline constexpr char kDsrLeasePrefix[] = "lb-dsr-node-";

// A Service's settings from its annotations.
struct ServiceSettings {
  // The seed's default (SNAT): works with any CNI and any pod. DSR needs the worker
  // nodes to decapsulate, so a Service asks for it.
  ForwardingMode mode = ForwardingMode::kNat;
  uint32_t table_size = 0;  // 0: lbd sizes the table by the backend count
  friend bool operator==(const ServiceSettings&, const ServiceSettings&) = default;
};

// `max_table_size`: the largest lbd.io/maglev-table-size accepted (of kMaglevTableSizes).
inline constexpr uint32_t kDefaultMaxTableSize = 262139;
absl::StatusOr<ServiceSettings> ParseAnnotations(const std::map<std::string, std::string>& annotations,
                                                 uint32_t max_table_size = kDefaultMaxTableSize);

// Last good settings by Service key: a Service whose annotations turn invalid keeps these.
using LastGoodSettings = std::map<std::string, ServiceSettings>;

struct StatusUpdate {
  std::string service;             // "namespace/name"
  std::vector<IpAddress> ingress;  // what status.loadBalancer.ingress must say
};

struct DesiredState {
  std::vector<ServiceConfig> services;  // lbd's services, frontend order
  std::vector<std::string> owners;      // the Kubernetes Service of each
  std::vector<Problem> problems;        // to report as Events
  std::vector<std::string> notes;       // to log only (not a fault of the Service)
  std::vector<StatusUpdate> status_updates;
  size_t pool_addresses_used = 0;
};

DesiredState MapClusterState(const std::vector<KService>& services, const std::vector<KEndpointSlice>& slices,
                             const MappingOptions& options, LastGoodSettings* last_good);

}  // namespace lb::control::k8s
