// KernelStackGuard: keeps the kernel's IP stack off the frames of an interface that lbd
// reads through af_packet.
//
// af_packet hands lbd a copy of every frame; the kernel still receives the frame too.
// With net.ipv4.ip_forward=1 (every Kubernetes node) it routes each one out of its
// default route, which is lbd's exception interface, and lbd sends it to the wire again:
// a loop until the TTL ends. So, on that interface only, lbd sets
//   net.ipv4.conf.IF.forwarding = 0    nothing received on it is forwarded
//   net.ipv4.conf.IF.arp_ignore = 8    the kernel answers no ARP on it (lbd's TAP does)
//   net.ipv4.conf.IF.rp_filter = 1     local delivery of copies too, where
//                                      conf.all.rp_filter is not 2 (the kernel takes the larger)
//   net.ipv6.conf.IF.disable_ipv6 = 1  no IPv6 on it at all
// and restores the values it found when it stops. Writing net.ipv4.ip_forward resets
// every interface's forwarding, so Enforce() (the control thread, every second) puts the
// values back when other software changed them, and logs it.
//
// Thread model: one thread at a time (lbd's main thread, then its control thread).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/ip_address.h"

namespace lb::control {

class KernelStackGuard {
 public:
  // Reads and saves the settings of `interface`, then writes lbd's. `sysctl_root` is
  // /proc/sys (tests give another directory).
  static absl::StatusOr<std::unique_ptr<KernelStackGuard>> Take(const std::string& interface,
                                                                const std::string& sysctl_root = "/proc/sys");
  ~KernelStackGuard();  // restores what Take() found
  KernelStackGuard(const KernelStackGuard&) = delete;
  KernelStackGuard& operator=(const KernelStackGuard&) = delete;

  // Writes lbd's values again where something changed them; returns how many it wrote.
  int Enforce();

 private:
  struct Setting {
    std::string path;
    std::string wanted;
    std::string original;
  };
  explicit KernelStackGuard(std::string interface) : interface_(std::move(interface)) {}

  std::string interface_;
  std::vector<Setting> settings_;
};

// The addresses of the host's interfaces (getifaddrs), e.g. its management NIC's.
std::vector<IpAddress> HostAddresses();

}  // namespace lb::control
