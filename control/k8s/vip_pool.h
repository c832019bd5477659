// The VIP pool: addresses for LoadBalancer Services of our class, from the CIDRs this
// node announces. The allocation is a function of the cluster's state alone: addresses
// already in a Service's status.loadBalancer.ingress stay with it, so a restarted watcher
// (or the watcher of another LB node, given the same pool) arrives at the same answer.
// Services are taken oldest first; a new address is the lowest free one of the pool (not an
// IPv4 network or broadcast address, nor an IPv6 subnet-router anycast address).
// Pure: any thread.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "control/k8s/objects.h"
#include "control/k8s/problem.h"
#include "common/ip_address.h"

namespace lb::control::k8s {

struct VipAllocation {
  std::map<std::string, std::vector<IpAddress>> addresses;  // by Service key
  std::vector<Problem> problems;
};

// `services`: the LoadBalancer Services of our class, oldest first. `taken`: addresses
// other Services ask for (externalIPs): never handed out anew, but an address already
// recorded in a Service's status stays with it even when an externalIP names it.
VipAllocation AllocateVips(const std::vector<const KService*>& services, const std::vector<IpPrefix>& pool,
                           const std::vector<IpAddress>& taken);

// The `index`th address of `prefix` (index below its size; at most 2^32 for IPv6).
IpAddress NthAddress(const IpPrefix& prefix, uint64_t index);

}  // namespace lb::control::k8s
