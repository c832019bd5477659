// The kernel's neighbour table (ARP / NDP), followed over netlink.
//
// lbd does not run ARP or ND itself: the kernel does, over the exception path (the TAP
// interface carries the node's addresses and the port's MAC), and BIRD's BGP session to
// the gateway keeps its entry fresh. lbd follows that table through netlink
// notifications (RTM_NEWNEIGH / RTM_DELNEIGH): one dump when it starts, then only what
// changes, so the cost does not grow with the number of backends. The free functions
// below read and set up the exception interface itself (its prefixes, a neighbour
// solicitation, its addresses). Thread model: NeighborMonitor is used by one thread; the
// free functions from any thread.
#pragma once

#include <linux/netlink.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "common/config.h"
#include "common/ip_address.h"

namespace lb::control {

// Follows the neighbour entries of one interface. An entry counts when it is usable
// (reachable, stale, delay, probe, permanent or noarp) and has a link-layer address.
class NeighborMonitor {
 public:
  using Change = std::pair<IpAddress, std::optional<MacAddress>>;

  // Subscribes to the notifications, then asks for a dump of the table.
  static absl::StatusOr<std::unique_ptr<NeighborMonitor>> Open(const std::string& ifname);
  ~NeighborMonitor();
  NeighborMonitor(const NeighborMonitor&) = delete;
  NeighborMonitor& operator=(const NeighborMonitor&) = delete;

  // Waits up to `timeout_ms` for notifications and returns the entries that changed (the
  // address with its MAC, or nullopt when it has none any more), in order. After an
  // overrun of the socket (ENOBUFS: notifications were lost) it dumps the table again and
  // reports the difference.
  absl::StatusOr<std::vector<Change>> Poll(int timeout_ms);

  // The usable entries as last polled.
  const absl::flat_hash_map<IpAddress, MacAddress>& table() const { return table_; }

 private:
  NeighborMonitor(int fd, unsigned ifindex) : fd_(fd), ifindex_(ifindex) {}
  absl::Status RequestDump();
  void Handle(const nlmsghdr& h, std::vector<Change>& changes);
  void Set(const IpAddress& a, std::optional<MacAddress> mac, std::vector<Change>& changes);

  int fd_;
  unsigned ifindex_;
  absl::flat_hash_map<IpAddress, MacAddress> table_;
  bool dumping_ = false;
  absl::flat_hash_set<IpAddress> seen_in_dump_;
};

// The prefixes of the addresses on interface `ifname` (its connected subnets).
absl::StatusOr<std::vector<IpPrefix>> InterfacePrefixes(const std::string& ifname);

// Makes the kernel resolve `address` on `ifname`: sends one empty UDP datagram to its
// discard port (9) from a socket bound to the interface, which needs the neighbour first.
absl::Status SolicitNeighbor(const std::string& ifname, const IpAddress& address);

// An address of an interface with its prefix length (10.90.0.2/24: the host bits kept).
struct InterfaceAddress {
  IpAddress address;
  uint8_t length = 0;
  static std::optional<InterfaceAddress> Parse(std::string_view text);
};

// Adds `addresses` to the kernel interface `ifname` (one already there is fine) and sets
// it up, through rtnetlink. lbd gives its exception interface the node's addresses this
// way, so that a restarted lbd (whose TAP is new) needs no one else to do it.
absl::Status ConfigureInterface(const std::string& ifname, const std::vector<InterfaceAddress>& addresses);

}  // namespace lb::control
