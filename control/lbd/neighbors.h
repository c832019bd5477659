// The kernel's neighbour table (ARP / NDP), read over netlink.
//
// lbd does not run ARP or ND itself: the kernel does, over the exception path (the TAP
// interface carries the node's addresses and the port's MAC), and BIRD's BGP session to
// the gateway keeps its entry fresh. lbd reads the gateway's MAC from there. Thread
// model: any thread; each call opens its own socket.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "dataplane/config.h"
#include "dataplane/ip_address.h"

namespace lb::control {

// The MAC of `address` on interface `ifname`, if the kernel has a usable entry
// (reachable, stale, delay, probe, permanent or noarp). nullopt when it has none.
absl::StatusOr<std::optional<dataplane::MacAddress>> LookupNeighbor(const std::string& ifname,
                                                                    const dataplane::IpAddress& address);

// The prefixes of the addresses on interface `ifname` (its connected subnets).
absl::StatusOr<std::vector<dataplane::IpPrefix>> InterfacePrefixes(const std::string& ifname);

// Makes the kernel resolve `address` on `ifname`: sends one empty UDP datagram to its
// discard port (9) from a socket bound to the interface, which needs the neighbour first.
absl::Status SolicitNeighbor(const std::string& ifname, const dataplane::IpAddress& address);

using dataplane::MacToString;
using dataplane::ParseMac;

}  // namespace lb::control
