// HttpEndpoint: a tiny HTTP server for the operational endpoints of our daemons
// (lbd's /metrics, the watcher's /metrics and /healthz), over libmicrohttpd with its own
// polling thread. Thread model: the handler runs on that thread; Start and the
// destructor on any one thread.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/statusor.h"

struct MHD_Daemon;

namespace lb::control {

struct HttpReply {
  int status = 200;
  std::string content_type = "text/plain; version=0.0.4";  // Prometheus text exposition
  std::string body;
};

// Its bounds: connections in all, from one address, and how long one may sit idle.
inline constexpr int kHttpConnectionLimit = 64;
inline constexpr int kHttpConnectionsPerAddress = 8;
inline constexpr int kHttpIdleTimeoutSeconds = 10;

// Called for every request with its method and path (no query string).
using HttpHandler = std::function<HttpReply(std::string_view method, std::string_view path)>;

// The operational endpoints of a sidecar: GET /metrics (`metrics()`, then lb_build_info
// of `program`), GET /healthz (200 or 503 as `healthz()` says, with its text) and GET
// /livez (200 while the process serves); 404 for anything else.
HttpHandler HealthAndMetricsHandler(std::string program, std::function<std::pair<bool, std::string>()> healthz,
                                    std::function<std::string()> metrics);

class HttpEndpoint {
 public:
  // Listens on `address` ("127.0.0.1:9100", "[::]:9100").
  static absl::StatusOr<std::unique_ptr<HttpEndpoint>> Start(const std::string& address, HttpHandler on_request);
  ~HttpEndpoint();
  HttpEndpoint(const HttpEndpoint&) = delete;
  HttpEndpoint& operator=(const HttpEndpoint&) = delete;

 private:
  explicit HttpEndpoint(HttpHandler on_request) : handler_(std::move(on_request)) {}
  HttpHandler handler_;
  MHD_Daemon* daemon_ = nullptr;
};

}  // namespace lb::control
