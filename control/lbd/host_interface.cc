#include "control/lbd/host_interface.h"

#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
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

// One rtnetlink request and its acknowledgement. `ignore` is an errno that counts as
// success (EEXIST: the address is there already).
absl::Status Request(int fd, nlmsghdr* request, int ignore, const std::string& what) {
  if (send(fd, request, request->nlmsg_len, 0) < 0) {
    return absl::InternalError(absl::StrFormat("%s: netlink send: %s", what, std::strerror(errno)));
  }
  alignas(nlmsghdr) char reply[1024];
  const ssize_t n = recv(fd, reply, sizeof(reply), 0);
  if (n < ssize_t(NLMSG_HDRLEN + sizeof(nlmsgerr))) {
    return absl::InternalError(absl::StrFormat("%s: no netlink acknowledgement", what));
  }
  const auto* header = reinterpret_cast<const nlmsghdr*>(reply);
  if (header->nlmsg_type != NLMSG_ERROR) return absl::OkStatus();
  const int error = -static_cast<const nlmsgerr*>(NLMSG_DATA(header))->error;
  if (error == 0 || error == ignore) return absl::OkStatus();
  return absl::InternalError(absl::StrFormat("%s: %s", what, std::strerror(error)));
}

struct NetlinkRequest {
  nlmsghdr header;
  union {
    ifaddrmsg address;
    ifinfomsg link;
  };
  char attributes[64];

  void Add(uint16_t type, const void* data, size_t len) {
    auto* rta = reinterpret_cast<rtattr*>(reinterpret_cast<char*>(this) + NLMSG_ALIGN(header.nlmsg_len));
    rta->rta_type = type;
    rta->rta_len = uint16_t(RTA_LENGTH(len));
    std::memcpy(RTA_DATA(rta), data, len);
    header.nlmsg_len = NLMSG_ALIGN(header.nlmsg_len) + RTA_ALIGN(rta->rta_len);
  }
};

}  // namespace

std::optional<InterfaceAddress> InterfaceAddress::Parse(std::string_view text) {
  const size_t slash = text.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  const auto address = dataplane::IpAddress::Parse(text.substr(0, slash));
  if (!address) return std::nullopt;
  const std::string length_text(text.substr(slash + 1));
  char* end = nullptr;
  const long length = std::strtol(length_text.c_str(), &end, 10);
  if (length_text.empty() || *end != '\0' || length < 0 || length > (address->IsV4() ? 32 : 128)) return std::nullopt;
  return InterfaceAddress{*address, uint8_t(length)};
}

absl::Status ConfigureInterface(const std::string& ifname, const std::vector<InterfaceAddress>& addresses) {
  const unsigned index = if_nametoindex(ifname.c_str());
  if (index == 0) return absl::NotFoundError(absl::StrFormat("no interface %s", ifname));
  const int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) return absl::InternalError(absl::StrFormat("netlink socket: %s", std::strerror(errno)));
  absl::Status status;
  for (const InterfaceAddress& a : addresses) {
    NetlinkRequest r{};
    r.header.nlmsg_len = NLMSG_LENGTH(sizeof(ifaddrmsg));
    r.header.nlmsg_type = RTM_NEWADDR;
    r.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
    r.address.ifa_family = a.address.IsV4() ? AF_INET : AF_INET6;
    r.address.ifa_prefixlen = a.length;
    r.address.ifa_index = index;
    const void* bytes = a.address.IsV4() ? static_cast<const void*>(a.address.V4Bytes()) : a.address.bytes.data();
    const size_t len = a.address.IsV4() ? 4 : 16;
    r.Add(IFA_LOCAL, bytes, len);
    r.Add(IFA_ADDRESS, bytes, len);
    status.Update(Request(fd, &r.header, EEXIST,
                          absl::StrFormat("adding %s/%d to %s", a.address.ToString(), a.length, ifname)));
  }
  NetlinkRequest up{};
  up.header.nlmsg_len = NLMSG_LENGTH(sizeof(ifinfomsg));
  up.header.nlmsg_type = RTM_NEWLINK;
  up.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
  up.link.ifi_index = int(index);
  up.link.ifi_flags = IFF_UP;
  up.link.ifi_change = IFF_UP;
  status.Update(Request(fd, &up.header, 0, absl::StrFormat("setting %s up", ifname)));
  close(fd);
  return status;
}

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
  LOG(INFO) << "kernel IP stack kept off " << interface
            << ": forwarding=0, arp_ignore=8, rp_filter=1, disable_ipv6=1 (restored at exit)";
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

}  // namespace lb::control
