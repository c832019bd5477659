// The daemons' HTTP endpoints (control/http_endpoint.h) on the node network: one address
// holding many idle connections gets a few, and a scrape from elsewhere is still answered.
#include "control/http_endpoint.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace lb::control {
namespace {

// A TCP connection from `source` to 127.0.0.1:port; -1 if it fails.
int Connect(const char* source, uint16_t port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in from{}, to{};
  from.sin_family = to.sin_family = AF_INET;
  inet_pton(AF_INET, source, &from.sin_addr);
  to.sin_port = htons(port);
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, reinterpret_cast<sockaddr*>(&from), sizeof(from)) != 0 ||
      connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof(to)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Whether the server closed `fd` within `ms`.
bool ClosedWithin(int fd, int ms) {
  pollfd p{fd, POLLIN, 0};
  if (poll(&p, 1, ms) <= 0) return false;
  char c;
  return recv(fd, &c, 1, MSG_DONTWAIT) == 0;
}

TEST(HttpEndpointTest, ManyIdleConnectionsFromOneAddressStarveNobody) {
  const uint16_t port = uint16_t(40000 + getpid() % 20000);
  auto endpoint = HttpEndpoint::Start("127.0.0.1:" + std::to_string(port),
                                      [](std::string_view, std::string_view) { return HttpReply{.body = "ok\n"}; });
  ASSERT_TRUE(endpoint.ok()) << endpoint.status();
  std::vector<int> idle;
  for (int i = 0; i < 3 * kHttpConnectionsPerAddress; ++i) idle.push_back(Connect("127.0.0.2", port));
  int open = 0;
  for (int fd : idle) open += fd >= 0 && !ClosedWithin(fd, 200);
  EXPECT_EQ(open, kHttpConnectionsPerAddress) << "the rest are closed at once";

  const int scrape = Connect("127.0.0.3", port);
  ASSERT_GE(scrape, 0);
  const std::string request = "GET /metrics HTTP/1.0\r\n\r\n";
  ASSERT_EQ(send(scrape, request.data(), request.size(), 0), ssize_t(request.size()));
  std::string reply;
  char buf[512];
  pollfd p{scrape, POLLIN, 0};
  while (poll(&p, 1, 2000) > 0) {
    const ssize_t n = recv(scrape, buf, sizeof(buf), 0);
    if (n <= 0) break;
    reply.append(buf, size_t(n));
  }
  EXPECT_EQ(reply.substr(8, 7), " 200 OK") << reply;
  close(scrape);
  for (int fd : idle) {
    if (fd >= 0) close(fd);
  }
}

}  // namespace
}  // namespace lb::control
