#include "control/lbd/host_interface.h"

#include <arpa/inet.h>
#include <ifaddrs.h>

#include <fstream>
#include <sstream>

#include <glog/logging.h>

#include "absl/strings/ascii.h"
#include "absl/strings/str_format.h"

namespace lb::control {
namespace {

absl::StatusOr<std::string> ReadValue(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrFormat("cannot read %s", path));
  std::stringstream s;
  s << in.rdbuf();
  return std::string(absl::StripAsciiWhitespace(s.str()));
}

absl::Status WriteValue(const std::string& path, const std::string& value) {
  std::ofstream out(path);
  out << value << '\n';
  out.close();
  if (!out) return absl::PermissionDeniedError(absl::StrFormat("cannot write %s to %s", value, path));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<KernelStackGuard>> KernelStackGuard::Take(const std::string& interface,
                                                                         const std::string& sysctl_root) {
  if (interface.empty() || interface.find('/') != std::string::npos || interface == "." || interface == "..") {
    return absl::InvalidArgumentError(absl::StrFormat("\"%s\" is not an interface name", interface));
  }
  std::unique_ptr<KernelStackGuard> guard(new KernelStackGuard(interface));
  const std::string v4 = absl::StrFormat("%s/net/ipv4/conf/%s/", sysctl_root, interface);
  const std::string v6 = absl::StrFormat("%s/net/ipv6/conf/%s/", sysctl_root, interface);
  for (auto [path, wanted] : {std::pair{v4 + "forwarding", "0"}, std::pair{v4 + "arp_ignore", "8"},
                              std::pair{v4 + "rp_filter", "1"}, std::pair{v6 + "disable_ipv6", "1"}}) {
    auto original = ReadValue(path);
    if (!original.ok()) {
      if (std::string(path).starts_with(v6)) continue;  // a kernel without IPv6
      return original.status();
    }
    guard->settings_.push_back({path, wanted, *original});
  }
  // Written only once all were read: a failure leaves the host as it was, but for the
  // settings written before it, which the destructor restores.
  for (const Setting& s : guard->settings_) {
    if (absl::Status st = WriteValue(s.path, s.wanted); !st.ok()) return st;
  }
  LOG(INFO) << "kernel IP stack kept off "
            << interface << ": forwarding=0, arp_ignore=8, rp_filter=1, disable_ipv6=1 (restored at exit)";
  return guard;
}

KernelStackGuard::~KernelStackGuard() {
  for (const Setting& s : settings_) {
    if (absl::Status st = WriteValue(s.path, s.original); !st.ok()) LOG(WARNING) << "restoring: " << st;
  }
}

int KernelStackGuard::Enforce() {
  int written = 0;
  for (const Setting& s : settings_) {
    auto now = ReadValue(s.path);
    if (!now.ok() || *now == s.wanted) continue;
    LOG(WARNING) << s.path << " was changed to " << *now << " (by other software; net.ipv4.ip_forward resets "
                 << "every interface's forwarding): setting " << s.wanted << " again";
    if (absl::Status st = WriteValue(s.path, s.wanted); !st.ok()) {
      LOG(ERROR) << st;
      continue;
    }
    ++written;
  }
  return written;
}

std::vector<IpAddress> HostAddresses() {
  std::vector<IpAddress> out;
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return out;
  for (const ifaddrs* i = list; i != nullptr; i = i->ifa_next) {
    if (i->ifa_addr == nullptr) continue;
    char text[INET6_ADDRSTRLEN] = {};
    if (i->ifa_addr->sa_family == AF_INET) {
      inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(i->ifa_addr)->sin_addr, text, sizeof(text));
    } else if (i->ifa_addr->sa_family == AF_INET6) {
      inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(i->ifa_addr)->sin6_addr, text, sizeof(text));
    } else {
      continue;
    }
    if (auto a = IpAddress::Parse(text)) out.push_back(*a);
  }
  freeifaddrs(list);
  return out;
}

}  // namespace lb::control
