// What lb-dsr-node does to a pod's network: find the pod's network namespace, run code
// inside it, and there make VIPs local (on lo) and let their packets past rp_filter.
//
// Finding a pod's namespace: every network namespace a process on the host is in
// (/proc/PID/ns/net; with hostPID, that includes every pod's, whose pause process holds
// it), then the one with an interface holding the pod's IP. That works with any
// container runtime and CNI, and needs no CRI socket. A namespace is named by its
// (device, inode) id, and a path that opens it is checked against the id before use:
// a PID can be reused, a namespace's id not while it exists.
//
// Addresses the agent adds carry IFA_PROTO = kAddressProto, so that a restarted agent
// tells its own VIPs from the pod's addresses (Linux 6.1+; `ip addr` shows "proto 0xd5").
//
// Functions marked "calling thread's namespace" act where the thread is: call them from
// RunInNetns.
#pragma once

#include <compare>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "common/ip_address.h"
#include "control/dsr_node/decap_program.h"

namespace lb::control::dsr_node {

inline constexpr uint8_t kAddressProto = 0xd5;
// Every network namespace's loopback device has index 1 (the kernel registers it first).
inline constexpr int kLoopbackIfindex = 1;

struct NetnsId {
  uint64_t dev = 0, ino = 0;
  friend auto operator<=>(const NetnsId&, const NetnsId&) = default;
  std::string ToString() const;
};

struct NetnsRef {
  NetnsId id;
  std::string path;  // opens it: /proc/PID/ns/net
};

absl::StatusOr<NetnsId> NetnsIdOf(const std::string& path);

// One reference per network namespace that a process under `proc_dir` is in, except the
// caller's own (the host's, for the agent), by id.
std::vector<NetnsRef> ListNetns(const std::string& proc_dir);

// Runs `fn` on a thread of its own that has joined the namespace `ns` (after checking
// that `ns.path` still opens `ns.id`), and returns what `fn` returned. The caller's
// thread never changes namespace.
absl::Status RunInNetns(const NetnsRef& ns, absl::FunctionRef<absl::Status()> fn);

struct InterfaceAddress {
  int ifindex = 0;
  IpAddress address;
  uint8_t prefix_len = 0;
  uint8_t proto = 0;  // IFA_PROTO; 0 when unset
};

// Every address of every interface (calling thread's namespace).
absl::StatusOr<std::vector<InterfaceAddress>> ListAddresses();
// Adds `vip`/32 or /128 to interface `ifindex` with our IFA_PROTO; present already is no
// error (calling thread's namespace).
absl::Status AddVipAddress(int ifindex, const IpAddress& vip);
// Removes `vip`/32 or /128 from `ifindex`; absent is no error (calling thread's namespace).
absl::Status RemoveVipAddress(int ifindex, const IpAddress& vip);

// Makes lo's addresses of ours exactly `vips`, adding before removing; an address that
// was there without our IFA_PROTO (the pod's own) is left alone (calling thread's
// namespace).
absl::Status SyncLoopbackVips(const std::vector<IpAddress>& vips);

// Decapsulated packets arrive on the pod's interface with the client's source address:
// strict reverse-path filtering (rp_filter 1, the larger of "all" and the interface's)
// would drop them on a pod whose route to that client is not this interface. Sets the
// interface's value to 2 (loose) when the effective value is strict; leaves 0 and 2 as
// they are. `sysctl_dir`: a writable mount of /proc/sys (calling thread's namespace).
absl::Status LoosenReversePathFilter(const std::string& sysctl_dir, const std::string& ifname);

// The whole of a namespace's part in DSR, as the agent and `attach` set it up (calling
// thread's namespace): `program` holds exactly `vips` and is on `ifindex`'s ingress
// (attached, replacing another, unless it is there already), the VIPs are exactly our
// addresses on lo, and the interface's strict rp_filter is loosened.
absl::Status Decapsulate(DecapProgram& program, int ifindex, const std::vector<IpAddress>& vips,
                         const std::string& sysctl_dir);
// Undoes it: our filter off `ifindex` (only if it holds program `only_program`, when that
// is not 0), and our addresses off lo (calling thread's namespace).
absl::Status StopDecapsulating(int ifindex, uint32_t only_program = 0);

}  // namespace lb::control::dsr_node
