#include "control/rtnetlink.h"

#include <linux/if_addr.h>
#include <net/if.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_format.h"

namespace lb::control::rtnl {
namespace {

absl::Status Errno(const std::string& what) {
  return absl::InternalError(absl::StrFormat("%s: %s", what, std::strerror(errno)));
}

absl::Status ChangeAddress(Socket& socket, uint16_t type, uint16_t flags, int ifindex, const IpAddress& address,
                           uint8_t length, uint8_t proto, int tolerated) {
  Message m;
  auto* body = m.Start<ifaddrmsg>(type, flags);
  const bool v4 = address.IsV4();
  body->ifa_family = v4 ? AF_INET : AF_INET6;
  body->ifa_prefixlen = length;
  body->ifa_scope = RT_SCOPE_UNIVERSE;
  body->ifa_index = uint32_t(ifindex);
  const void* bytes = v4 ? static_cast<const void*>(address.V4Bytes()) : address.bytes.data();
  const size_t len = v4 ? 4 : 16;
  m.Add(IFA_LOCAL, bytes, len);
  m.Add(IFA_ADDRESS, bytes, len);
  if (proto != 0) m.Add(IFA_PROTO, &proto, 1);
  char name[IF_NAMESIZE] = "?";
  if_indextoname(unsigned(ifindex), name);
  return socket.Request(m.header(), tolerated,
                        absl::StrFormat("%s %s/%d %s %s", type == RTM_NEWADDR ? "adding" : "removing",
                                        address.ToString(), length, type == RTM_NEWADDR ? "to" : "from", name));
}

}  // namespace

void Message::Add(uint16_t type, const void* data, size_t len) {
  nlmsghdr* h = header();
  const size_t at = NLMSG_ALIGN(h->nlmsg_len), total = RTA_LENGTH(len);
  if (at + RTA_ALIGN(total) > sizeof(bytes_)) return;
  const rtattr attribute{uint16_t(total), type};
  std::memcpy(bytes_ + at, &attribute, sizeof(attribute));
  std::memcpy(bytes_ + at + RTA_LENGTH(0), data, len);
  h->nlmsg_len = uint32_t(at + RTA_ALIGN(total));
}

absl::StatusOr<Socket> Socket::Open() {
  const int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) return Errno("socket(NETLINK_ROUTE)");
  return Socket(fd);
}

Socket::~Socket() {
  if (fd_ >= 0) close(fd_);
}

absl::Status Socket::Request(nlmsghdr* request, int tolerated, const std::string& what) {
  request->nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
  request->nlmsg_seq = ++seq_;
  if (send(fd_, request, request->nlmsg_len, 0) < 0) return Errno(what + ": netlink send");
  absl::Status result = absl::InternalError(what + ": no netlink acknowledgement");
  ForEachReply([&](const nlmsghdr& h) {
    if (h.nlmsg_type != NLMSG_ERROR || h.nlmsg_len < NLMSG_LENGTH(sizeof(nlmsgerr))) return;
    const int error = -static_cast<const nlmsgerr*>(NLMSG_DATA(&h))->error;
    result = error == 0 || error == tolerated
                 ? absl::OkStatus()
                 : absl::InternalError(absl::StrFormat("%s: %s", what, std::strerror(error)));
  });
  return result;
}

absl::Status Socket::Dump(uint16_t type, uint8_t family, const std::function<void(const nlmsghdr&)>& on_message) {
  Message m;
  m.Start<ifaddrmsg>(type, NLM_F_REQUEST | NLM_F_DUMP)->ifa_family = family;  // family first, as in rtgenmsg
  m.header()->nlmsg_seq = ++seq_;
  if (send(fd_, m.header(), m.header()->nlmsg_len, 0) < 0) return Errno("netlink dump send");
  absl::Status result;
  ForEachReply([&](const nlmsghdr& h) {
    if (h.nlmsg_type != NLMSG_ERROR) {
      on_message(h);
    } else if (h.nlmsg_len >= NLMSG_LENGTH(sizeof(nlmsgerr))) {
      result = absl::InternalError(
          absl::StrFormat("netlink dump: %s", std::strerror(-static_cast<const nlmsgerr*>(NLMSG_DATA(&h))->error)));
    }
  });
  return result;
}

void Socket::ForEachReply(const std::function<void(const nlmsghdr&)>& on_message) {
  alignas(nlmsghdr) char buffer[32768];
  for (bool done = false; !done;) {
    const ssize_t n = recv(fd_, buffer, sizeof(buffer), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    ForEachMessage(buffer, size_t(n), [&](const nlmsghdr& h) {
      if (done || h.nlmsg_seq != seq_) return;
      if (h.nlmsg_type == NLMSG_DONE) {
        done = true;
        return;
      }
      on_message(h);
      if (h.nlmsg_type == NLMSG_ERROR) done = true;
    });
  }
}

absl::Status AddAddress(Socket& socket, int ifindex, const IpAddress& address, uint8_t length, uint8_t proto) {
  return ChangeAddress(socket, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, ifindex, address, length, proto, EEXIST);
}

absl::Status RemoveAddress(Socket& socket, int ifindex, const IpAddress& address, uint8_t length) {
  return ChangeAddress(socket, RTM_DELADDR, 0, ifindex, address, length, 0, EADDRNOTAVAIL);
}

absl::Status SetLinkUp(Socket& socket, int ifindex) {
  Message m;
  auto* link = m.Start<ifinfomsg>(RTM_NEWLINK, 0);
  link->ifi_index = ifindex;
  link->ifi_flags = IFF_UP;
  link->ifi_change = IFF_UP;
  char name[IF_NAMESIZE] = "?";
  if_indextoname(unsigned(ifindex), name);
  return socket.Request(m.header(), 0, absl::StrFormat("setting %s up", name));
}

}  // namespace lb::control::rtnl
