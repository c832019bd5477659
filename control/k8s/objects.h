// The parts of core/v1 Service and discovery.k8s.io/v1 EndpointSlice that the watcher
// uses, parsed from the API server's JSON. Parsing checks types and required fields and
// says which one is wrong; unknown fields are ignored (the API grows). Pure: any thread.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"

namespace lb::control::k8s {

struct ServicePort {
  std::string name;      // "" for the single unnamed port
  std::string protocol;  // "TCP", "UDP", "SCTP"
  uint32_t port = 0;
  std::string target_port;  // number or name, for messages only: the slices resolve it
};

struct KService {
  std::string ns, name, uid, resource_version, creation_timestamp;
  std::string type;  // ClusterIP, NodePort, LoadBalancer, ExternalName
  std::vector<std::string> external_ips;
  std::optional<std::string> load_balancer_class;
  std::string load_balancer_ip;          // spec.loadBalancerIP: a requested address
  std::vector<std::string> ip_families;  // "IPv4", "IPv6"
  bool client_ip_affinity = false;       // sessionAffinity: ClientIP
  std::vector<ServicePort> ports;
  std::map<std::string, std::string> annotations;
  std::vector<std::string> ingress_ips;  // status.loadBalancer.ingress[].ip
  // spec.loadBalancerSourceRanges, else the annotation
  // service.beta.kubernetes.io/load-balancer-source-ranges (comma-separated).
  std::vector<std::string> source_ranges;
  std::string Key() const { return ns + "/" + name; }
};

struct Endpoint {
  std::vector<std::string> addresses;
  std::optional<bool> ready, serving, terminating;  // unset: the API left it out
  std::string node_name;                            // nodeName: where the endpoint runs ("" when the API left it out)
  // targetRef: what the endpoint is ("Pod"), in which namespace ("" means the slice's).
  std::string target_kind, target_namespace, target_name;
};

struct SlicePort {
  std::string name;
  std::string protocol;
  std::optional<uint32_t> port;  // unset: "all ports" (not usable for a port-specific service)
};

struct KEndpointSlice {
  std::string ns, name;
  std::string service_name;  // label kubernetes.io/service-name
  std::string managed_by;    // label endpointslice.kubernetes.io/managed-by ("" when absent)
  std::string address_type;  // IPv4, IPv6, FQDN
  std::vector<SlicePort> ports;
  std::vector<Endpoint> endpoints;
};

// The parts of a core/v1 Pod that lb-dsr-node uses.
struct KPod {
  std::string ns, name, uid;
  std::string node_name;  // spec.nodeName
  bool host_network = false;
  std::vector<std::string> pod_ips;  // status.podIPs[].ip, else status.podIP
  std::string Key() const { return ns + "/" + name; }
};

// A coordination.k8s.io/v1 Lease: who holds it and until when.
struct KLease {
  std::string ns, name;
  std::string holder;       // spec.holderIdentity
  std::string renew_time;   // spec.renewTime (RFC 3339 with microseconds)
  uint32_t duration_s = 0;  // spec.leaseDurationSeconds
};

// `parent[key]` when `parent` is an object and that member a string; else "". For the
// fields read outside the typed parsers (keys, versions, error bodies): nlohmann's
// value() throws on a member of another type, and an API server's object must never
// cost the process.
std::string StringField(const nlohmann::json& parent, const char* key);

// A tenant's text for a log line or an Event: at most `max` characters (then "..."),
// control characters as '?', so that it can neither forge lines nor flood them.
std::string Printable(const std::string& text, size_t max = 64);

absl::StatusOr<KService> ParseService(const nlohmann::json& object);
absl::StatusOr<KEndpointSlice> ParseEndpointSlice(const nlohmann::json& object);
absl::StatusOr<KPod> ParsePod(const nlohmann::json& object);
absl::StatusOr<KLease> ParseLease(const nlohmann::json& object);

}  // namespace lb::control::k8s
