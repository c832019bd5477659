// Privileges: what lbd keeps once it has started. It needs root's powers to start (EAL's
// hugepages and VFIO, the TAP device, the af_packet sockets, the addresses of lb0), and
// then parses packets and datagrams from the network for as long as it runs: so, once
// every device and socket is open, it gives up every capability but the few it still
// uses, in all its threads, and can never regain them.
//
// Thread model: call once, from the main thread, after start-up. Linux keeps capability
// sets per thread, and capset(2) changes only the caller's; so DropCapabilities does what
// libc does for setuid(2) in a threaded process: it signals every thread of the process
// (/proc/self/task) and each drops its own in the signal handler (raw syscalls only), then
// it checks every thread's sets and fails, naming the thread, if one kept more. Threads
// started later inherit the reduced sets.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace lb::control {

// The capabilities lbd keeps at run time, and why:
//   CAP_NET_ADMIN: neighbour solicitations on lb0 and netlink neighbour dumps;
//   CAP_NET_RAW:   SO_BINDTODEVICE for those solicitations (kernels before 5.7);
//   CAP_IPC_LOCK:  DPDK's memory for packet capture, DMA-mapped through VFIO at run time.
std::vector<int> RuntimeCapabilities();

// Capability names as in capabilities(7) without "CAP_", comma-separated: "NET_ADMIN,...".
std::string CapabilityNames(uint64_t set);

// Reduces the permitted, effective and inheritable sets of every thread of the process to
// `keep` (those of them it has), clears the ambient set, drops the rest from the bounding
// set (as far as CAP_SETPCAP allows: in a container it is the runtime's already) and sets
// no_new_privs. Returns the effective set it kept.
absl::StatusOr<uint64_t> DropCapabilities(const std::vector<int>& keep);

}  // namespace lb::control
