// lbd's gRPC API server: on a Unix socket (mode 0660 from the moment it exists, an
// optional group) and on TCP with TLS, where clients must present a certificate unless
// that is explicitly waived (docs/security.md). Start-up only: the server then runs on
// gRPC's own threads.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "common/config.h"
#include "control/grpc_service.h"

namespace lb::control {

struct ApiServerOptions {
  std::string socket;                            // the Unix socket's path; empty: none
  std::string socket_group;                      // its group; empty: lbd's
  std::string address;                           // host:port of TCP with TLS; empty: none
  std::string tls_cert, tls_key, tls_client_ca;  // PEM files
  bool insecure_no_client_auth = false;          // TCP without client certificates
};

// Whether `options` are allowed and possible, checked before anything starts: the
// socket's directory (made 0750 when missing; one every user may write to is made 0750
// when lbd's user owns it, else refused), the group, TLS with client authentication.
absl::Status ValidateApiServer(const ApiServerOptions& options);

// Starts the API serving `service`, with room for the largest request `limits` allow.
// Exits (LOG(FATAL)) when it cannot: after ValidateApiServer, only on a system error.
std::unique_ptr<grpc::Server> StartApiServer(const ApiServerOptions& options, LoadBalancerService* service,
                                             const Limits& limits);

}  // namespace lb::control
