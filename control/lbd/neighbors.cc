#include "control/lbd/neighbors.h"

#include <arpa/inet.h>
#include <linux/neighbour.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_format.h"
#include "control/rtnetlink.h"

namespace lb::control {
namespace {

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

absl::Status Errno(const std::string& what) {
  return absl::InternalError(absl::StrFormat("%s: %s", what, std::strerror(errno)));
}

constexpr uint16_t kUsable = NUD_REACHABLE | NUD_STALE | NUD_DELAY | NUD_PROBE | NUD_PERMANENT | NUD_NOARP;

}  // namespace

absl::StatusOr<std::unique_ptr<NeighborMonitor>> NeighborMonitor::Open(const std::string& ifname) {
  const unsigned ifindex = if_nametoindex(ifname.c_str());
  if (ifindex == 0) return Errno("if_nametoindex(" + ifname + ")");
  const int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE);
  if (fd < 0) return Errno("socket(AF_NETLINK)");
  std::unique_ptr<NeighborMonitor> m(new NeighborMonitor(fd, ifindex));
  // Room for a burst of notifications (a whole subnet's entries changing at once);
  // an overrun is survived anyway, by a new dump.
  const int buffer = 4 << 20;
  (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buffer, sizeof(buffer));
  sockaddr_nl local{};
  local.nl_family = AF_NETLINK;
  local.nl_groups = RTMGRP_NEIGH;
  if (bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof(local)) != 0) return Errno("bind(RTMGRP_NEIGH)");
  if (absl::Status s = m->RequestDump(); !s.ok()) return s;
  return m;
}

NeighborMonitor::~NeighborMonitor() { close(fd_); }

absl::Status NeighborMonitor::RequestDump() {
  struct {
    nlmsghdr header;
    ndmsg body;
  } request{};
  request.header.nlmsg_len = sizeof(request);
  request.header.nlmsg_type = RTM_GETNEIGH;
  request.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  request.header.nlmsg_seq = 1;
  request.body.ndm_family = AF_UNSPEC;  // IPv4 and IPv6
  if (send(fd_, &request, sizeof(request), 0) < 0) return Errno("netlink send(RTM_GETNEIGH)");
  dumping_ = true;
  seen_in_dump_.clear();
  return absl::OkStatus();
}

void NeighborMonitor::Set(const IpAddress& a, std::optional<MacAddress> mac, std::vector<Change>& changes) {
  auto it = table_.find(a);
  if (mac) {
    if (dumping_) seen_in_dump_.insert(a);
    if (it != table_.end() && it->second == *mac) return;
    table_[a] = *mac;
  } else {
    if (it == table_.end()) return;
    table_.erase(it);
  }
  changes.emplace_back(a, mac);
}

void NeighborMonitor::Handle(const nlmsghdr& h, std::vector<Change>& changes) {
  if (h.nlmsg_type == NLMSG_DONE && dumping_) {
    // Entries the dump did not list are gone (their removal was among the lost messages).
    std::vector<IpAddress> gone;
    for (const auto& [a, mac] : table_) {
      if (!seen_in_dump_.contains(a)) gone.push_back(a);
    }
    dumping_ = false;
    for (const auto& a : gone) Set(a, std::nullopt, changes);
    return;
  }
  if (h.nlmsg_type != RTM_NEWNEIGH && h.nlmsg_type != RTM_DELNEIGH) return;
  if (h.nlmsg_len < NLMSG_LENGTH(sizeof(ndmsg))) return;
  const auto* nd = static_cast<const ndmsg*>(NLMSG_DATA(&h));
  if (unsigned(nd->ndm_ifindex) != ifindex_) return;
  if (nd->ndm_family != AF_INET && nd->ndm_family != AF_INET6) return;
  // The attributes follow the ndmsg (RTM_RTA and RTM_PAYLOAD are for rtmsg).
  int len = int(h.nlmsg_len) - int(NLMSG_LENGTH(sizeof(ndmsg)));
  const uint8_t* dst = nullptr;
  const uint8_t* lladdr = nullptr;
  size_t dst_len = 0, lladdr_len = 0;
  const auto* first = reinterpret_cast<const rtattr*>(reinterpret_cast<const char*>(nd) + NLMSG_ALIGN(sizeof(ndmsg)));
  for (auto* a = first; RTA_OK(a, len); a = RTA_NEXT(a, len)) {
    if (a->rta_type == NDA_DST) {
      dst = static_cast<const uint8_t*>(RTA_DATA(a));
      dst_len = RTA_PAYLOAD(a);
    } else if (a->rta_type == NDA_LLADDR) {
      lladdr = static_cast<const uint8_t*>(RTA_DATA(a));
      lladdr_len = RTA_PAYLOAD(a);
    }
  }
  IpAddress address;
  if (nd->ndm_family == AF_INET && dst != nullptr && dst_len == 4) {
    address = IpAddress::FromV4Bytes(dst);
  } else if (nd->ndm_family == AF_INET6 && dst != nullptr && dst_len == 16) {
    address = IpAddress::FromV6Bytes(dst);
  } else {
    return;
  }
  std::optional<MacAddress> mac;
  if (h.nlmsg_type == RTM_NEWNEIGH && (nd->ndm_state & kUsable) && lladdr != nullptr && lladdr_len == 6) {
    mac.emplace();
    std::memcpy(mac->data(), lladdr, 6);
  }
  Set(address, mac, changes);
}

absl::StatusOr<std::vector<NeighborMonitor::Change>> NeighborMonitor::Poll(int timeout_ms) {
  std::vector<Change> changes;
  pollfd p{fd_, POLLIN, 0};
  if (poll(&p, 1, timeout_ms) < 0 && errno != EINTR) return Errno("poll(netlink)");
  alignas(nlmsghdr) char buf[65536];
  for (;;) {
    const ssize_t received = recv(fd_, buf, sizeof(buf), MSG_DONTWAIT);
    if (received < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) break;
      if (errno == ENOBUFS) {  // notifications were lost: start over from a dump
        if (absl::Status s = RequestDump(); !s.ok()) return s;
        continue;
      }
      return Errno("netlink recv");
    }
    rtnl::ForEachMessage(buf, size_t(received), [&](const nlmsghdr& h) { Handle(h, changes); });
  }
  return changes;
}

absl::StatusOr<std::vector<IpPrefix>> InterfacePrefixes(const std::string& ifname) {
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return Errno("getifaddrs");
  std::vector<IpPrefix> out;
  for (const ifaddrs* i = list; i != nullptr; i = i->ifa_next) {
    if (i->ifa_addr == nullptr || i->ifa_netmask == nullptr || ifname != i->ifa_name) continue;
    IpAddress address, mask;
    if (i->ifa_addr->sa_family == AF_INET) {
      address = IpAddress::FromV4Bytes(&reinterpret_cast<const sockaddr_in*>(i->ifa_addr)->sin_addr);
      mask = IpAddress::FromV4Bytes(&reinterpret_cast<const sockaddr_in*>(i->ifa_netmask)->sin_addr);
    } else if (i->ifa_addr->sa_family == AF_INET6) {
      address = IpAddress::FromV6Bytes(&reinterpret_cast<const sockaddr_in6*>(i->ifa_addr)->sin6_addr);
      mask = IpAddress::FromV6Bytes(&reinterpret_cast<const sockaddr_in6*>(i->ifa_netmask)->sin6_addr);
    } else {
      continue;
    }
    const size_t first = address.IsV4() ? 12 : 0;
    uint8_t length = 0;
    for (size_t b = first; b < 16; ++b) {
      length += uint8_t(__builtin_popcount(mask.bytes[b]));
      address.bytes[b] &= mask.bytes[b];
    }
    out.push_back({address, length});
  }
  freeifaddrs(list);
  return out;
}

absl::Status SolicitNeighbor(const std::string& ifname, const IpAddress& address) {
  const bool v4 = address.IsV4();
  Fd fd(socket(v4 ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (fd.get() < 0) return Errno("socket(SOCK_DGRAM)");
  if (setsockopt(fd.get(), SOL_SOCKET, SO_BINDTODEVICE, ifname.c_str(), socklen_t(ifname.size())) != 0) {
    return Errno("SO_BINDTODEVICE " + ifname);
  }
  sockaddr_storage ss{};
  socklen_t len;
  if (v4) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(9);
    std::memcpy(&sin->sin_addr, address.V4Bytes(), 4);
    len = sizeof(*sin);
  } else {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(9);
    std::memcpy(&sin6->sin6_addr, address.bytes.data(), 16);
    len = sizeof(*sin6);
  }
  if (sendto(fd.get(), "", 0, 0, reinterpret_cast<sockaddr*>(&ss), len) < 0 && errno != EAGAIN) {
    return Errno("sendto " + address.ToString() + " via " + ifname);
  }
  return absl::OkStatus();
}

std::optional<InterfaceAddress> InterfaceAddress::Parse(std::string_view text) {
  const size_t slash = text.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  const auto address = IpAddress::Parse(text.substr(0, slash));
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
  auto rtnl = rtnl::Socket::Open();
  if (!rtnl.ok()) return rtnl.status();
  absl::Status status;
  for (const InterfaceAddress& a : addresses) status.Update(rtnl::AddAddress(*rtnl, int(index), a.address, a.length));
  status.Update(rtnl::SetLinkUp(*rtnl, int(index)));
  return status;
}

}  // namespace lb::control
