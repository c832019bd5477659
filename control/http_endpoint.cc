#include "control/http_endpoint.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>

#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "control/prometheus.h"
#include "common/ip_address.h"

namespace lb::control {
namespace {

MHD_Result Dispatch(void* cls, MHD_Connection* connection, const char* url, const char* method, const char*,
                    const char*, size_t*, void**) {
  auto* on_request = static_cast<HttpHandler*>(cls);
  const HttpReply reply = (*on_request)(method, url);
  MHD_Response* response =
      MHD_create_response_from_buffer(reply.body.size(), const_cast<char*>(reply.body.data()), MHD_RESPMEM_MUST_COPY);
  MHD_add_response_header(response, "Content-Type", reply.content_type.c_str());
  const MHD_Result r = MHD_queue_response(connection, unsigned(reply.status), response);
  MHD_destroy_response(response);
  return r;
}

}  // namespace

absl::StatusOr<std::unique_ptr<HttpEndpoint>> HttpEndpoint::Start(const std::string& address, HttpHandler on_request) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrFormat("want host:port, got \"%s\"", address));
  }
  std::string host = address.substr(0, colon);
  if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  uint32_t port = 0;
  const auto ip = IpAddress::Parse(host);
  if (!ip || !absl::SimpleAtoi(address.substr(colon + 1), &port) || port == 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrFormat("bad address \"%s\"", address));
  }
  sockaddr_storage ss{};
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD;
  if (ip->IsV4()) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(uint16_t(port));
    std::memcpy(&sin->sin_addr, ip->V4Bytes(), 4);
  } else {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(uint16_t(port));
    std::memcpy(&sin6->sin6_addr, ip->bytes.data(), 16);
    flags |= MHD_USE_IPv6;
  }
  std::unique_ptr<HttpEndpoint> endpoint(new HttpEndpoint(std::move(on_request)));
  // Bounded, as anything on the node network must be: a few scrapers and probes, not a
  // thousand idle connections from one address.
  endpoint->daemon_ = MHD_start_daemon(
      flags, uint16_t(port), nullptr, nullptr, &Dispatch, &endpoint->handler_, MHD_OPTION_SOCK_ADDR, &ss,
      MHD_OPTION_CONNECTION_LIMIT, unsigned(kHttpConnectionLimit), MHD_OPTION_PER_IP_CONNECTION_LIMIT,
      unsigned(kHttpConnectionsPerAddress), MHD_OPTION_CONNECTION_TIMEOUT, unsigned(kHttpIdleTimeoutSeconds),
      MHD_OPTION_CONNECTION_MEMORY_LIMIT, size_t(64 * 1024), MHD_OPTION_END);
  if (endpoint->daemon_ == nullptr) {
    return absl::UnavailableError(absl::StrFormat("cannot listen on %s: %s", address, std::strerror(errno)));
  }
  return endpoint;
}

HttpEndpoint::~HttpEndpoint() {
  if (daemon_ != nullptr) MHD_stop_daemon(daemon_);
}

HttpHandler HealthAndMetricsHandler(std::string program, std::function<std::pair<bool, std::string>()> healthz,
                                    std::function<std::string()> metrics) {
  return [program = std::move(program), healthz = std::move(healthz), metrics = std::move(metrics)](
             std::string_view method, std::string_view path) {
    if (method == "GET" && path == "/metrics") {
      std::string body = metrics();
      AppendBuildInfo(body, program);
      return HttpReply{.body = std::move(body)};
    }
    if (method == "GET" && path == "/livez") return HttpReply{.content_type = "text/plain", .body = "ok\n"};
    if (method == "GET" && path == "/healthz") {
      auto [ok, text] = healthz();
      return HttpReply{.status = ok ? 200 : 503, .content_type = "text/plain", .body = std::move(text)};
    }
    return HttpReply{.status = 404, .content_type = "text/plain", .body = "GET /healthz, /livez or /metrics\n"};
  };
}

}  // namespace lb::control
