// rtnetlink, the little that lbd and lb-dsr-node need: a socket that sends a request and
// waits for its acknowledgement or dumps a table, a message builder, and address and link
// changes. Everything acts in the network namespace of the calling thread (the socket is
// made there). Not thread-safe: one socket per caller.
#pragma once

#include <linux/netlink.h>
#include <linux/rtnetlink.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "common/ip_address.h"

namespace lb::control::rtnl {

// A request being built: header, body, attributes.
class Message {
 public:
  template <typename Body>
  Body* Start(uint16_t type, uint16_t flags) {
    std::memset(bytes_, 0, sizeof(bytes_));
    nlmsghdr* h = header();
    h->nlmsg_len = NLMSG_LENGTH(sizeof(Body));
    h->nlmsg_type = type;
    h->nlmsg_flags = flags;
    return static_cast<Body*>(NLMSG_DATA(h));
  }
  // Appends an attribute; one that would not fit is left out (the requests here are far
  // smaller than the buffer).
  void Add(uint16_t type, const void* data, size_t len);
  nlmsghdr* header() { return reinterpret_cast<nlmsghdr*>(bytes_); }

 private:
  alignas(nlmsghdr) char bytes_[256] = {};
};

class Socket {
 public:
  static absl::StatusOr<Socket> Open();
  Socket(Socket&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  Socket& operator=(Socket&&) = delete;
  ~Socket();

  // Sends `request` (NLM_F_REQUEST | NLM_F_ACK added) and waits for its acknowledgement;
  // `tolerated` is an errno that counts as success. `what` names the change in errors.
  absl::Status Request(nlmsghdr* request, int tolerated, const std::string& what);
  // Dumps table `type` (RTM_GETADDR, ...) of `family`, calling `on_message` for each reply.
  absl::Status Dump(uint16_t type, uint8_t family, const std::function<void(const nlmsghdr&)>& on_message);

 private:
  explicit Socket(int fd) : fd_(fd) {}
  // Reads the replies to the last request until NLMSG_DONE or an error or acknowledgement.
  void ForEachReply(const std::function<void(const nlmsghdr&)>& on_message);

  int fd_;
  uint32_t seq_ = 0;
};

// Calls `on_message` for each whole message of a datagram, as NLMSG_OK would (without
// its signed length).
template <typename F>
void ForEachMessage(const char* buffer, size_t len, F&& on_message) {
  for (size_t off = 0; off + sizeof(nlmsghdr) <= len;) {
    const auto* h = reinterpret_cast<const nlmsghdr*>(buffer + off);
    if (h->nlmsg_len < sizeof(nlmsghdr) || off + h->nlmsg_len > len) break;
    off += NLMSG_ALIGN(h->nlmsg_len);
    on_message(*h);
  }
}

// RTM_NEWADDR (with NLM_F_CREATE | NLM_F_EXCL; EEXIST tolerated) or RTM_DELADDR
// (EADDRNOTAVAIL tolerated) of address/length on `ifindex`. `proto`: the address's
// IFA_PROTO, 0 for none.
absl::Status AddAddress(Socket& socket, int ifindex, const IpAddress& address, uint8_t length, uint8_t proto = 0);
absl::Status RemoveAddress(Socket& socket, int ifindex, const IpAddress& address, uint8_t length);
// Sets the link up.
absl::Status SetLinkUp(Socket& socket, int ifindex);

}  // namespace lb::control::rtnl
