// KubeClient: HTTP requests to the Kubernetes API server over libcurl, with the API
// server's certificate verified against the configured CA and a bearer token or client
// certificate. Every call uses its own connection, so any thread may call it; a watch is
// one long call on the informer's thread.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "control/k8s/kube_config.h"

namespace lb::control::k8s {

struct HttpResponse {
  long status = 0;
  std::string body;
};

class KubeClient {
 public:
  explicit KubeClient(KubeConfig config);

  // One request; `path` starts at the API root ("/api/v1/services?limit=500"). JSON body.
  // An error only when no response came (connection, TLS, timeout); any HTTP status is a
  // response.
  absl::StatusOr<HttpResponse> Request(std::string_view method, const std::string& path, const std::string& body = "");

  // A streaming GET (a watch): calls `on_line` for every complete line of a 2xx body as it
  // arrives. Returns when the server ends the response (its status, and its body when not
  // 2xx), when `should_stop` says so (Cancelled, checked at least once a second), or when
  // `max_seconds` pass (a dead connection must not hang a watch forever).
  absl::StatusOr<HttpResponse> Stream(const std::string& path, absl::FunctionRef<void(std::string_view line)> on_line,
                                      const std::function<bool()>& should_stop, int max_seconds);

 private:
  KubeConfig config_;
};

}  // namespace lb::control::k8s

namespace lb::control::k8s {

// Percent-encodes a query parameter's value (RFC 3986 unreserved characters stay).
std::string QueryEscape(std::string_view value);

// "HTTP 403 Forbidden: services is forbidden: ..." from a failed response's Status body.
std::string DescribeFailure(const HttpResponse& response);

}  // namespace lb::control::k8s
