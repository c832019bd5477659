// Which pods on this node must decapsulate which VIPs: lb-dsr-node's whole policy, as a
// pure function of the Services, EndpointSlices and this node's Pods, unit-tested
// without an API server.
//
// A pod gets a Service's VIPs when all of these hold:
//   - the Service is a LoadBalancer of our class asking for DSR (lbd.io/forwarding-mode
//     dsr-ipip or dsr-gue; an invalid annotation keeps the last good settings, as the
//     watcher does);
//   - an EndpointSlice of the Service, managed by the EndpointSlice controller, has an
//     endpoint on this node (nodeName) whose targetRef is a Pod in the Service's own
//     namespace; the endpoint may be not ready yet, so that a starting pod decapsulates
//     before it receives traffic;
//   - that Pod is on this node, is not on the host's network, and has the endpoint's
//     address.
// So a tenant can make the agent touch only pods that the EndpointSlice controller
// selected for the tenant's own Service. The VIPs are the Service's
// status.loadBalancer.ingress addresses (written by lb-k8s-watcher, which tenants
// cannot write) and, where --external_ips allows the namespace, its spec.externalIPs.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "common/ip_address.h"
#include "control/k8s/mapping.h"
#include "control/k8s/objects.h"

namespace lb::control::dsr_node {

struct LocalPolicy {
  std::string node_name;
  std::string load_balancer_class = "lbd.io/dpdk-l4";
  k8s::ExternalIpPolicy external_ips;
  bool accept_unmanaged_slices = false;
};

struct PodVips {
  std::string pod;                   // "namespace/name"
  std::vector<IpAddress> addresses;  // the pod's addresses that its endpoints name, sorted
  std::vector<IpAddress> vips;       // sorted, unique
  friend bool operator==(const PodVips&, const PodVips&) = default;
};

struct LocalPods {
  std::map<std::string, PodVips> pods;  // by pod key
  std::vector<std::string> notes;       // what was skipped and why, for the log
};

LocalPods LocalDsrPods(const std::vector<k8s::KService>& services, const std::vector<k8s::KEndpointSlice>& slices,
                       const std::vector<k8s::KPod>& pods, const LocalPolicy& policy, k8s::LastGoodSettings* last_good);

}  // namespace lb::control::dsr_node
