// Where the Kubernetes API server is and how to authenticate to it: in-cluster (the
// pod's service account) or from a kubeconfig file. Pure apart from reading the files it
// names; any thread.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace lb::control::k8s {

struct KubeConfig {
  std::string server;           // "https://10.96.0.1:443"
  std::string ca_pem;           // the API server's CA; empty: the system's trust store
  std::string client_cert_pem;  // client certificate authentication, with the key
  std::string client_key_pem;
  std::string token;       // bearer token, or
  std::string token_file;  // a file holding it, read again for every request (tokens rotate)
  std::string source;      // where this came from, for logs
};

// The in-cluster configuration: KUBERNETES_SERVICE_HOST/PORT and the service account's
// token and CA under `secrets_dir` (normally /var/run/secrets/kubernetes.io/serviceaccount).
absl::StatusOr<KubeConfig> InClusterConfig(
    const std::string& secrets_dir = "/var/run/secrets/kubernetes.io/serviceaccount");

// A kubeconfig file's `context` (empty: its current-context). Supports certificate-authority
// (-data), client-certificate/-key (-data), token and tokenFile; relative paths are relative
// to the file. insecure-skip-tls-verify is refused: the API server's identity is always checked.
absl::StatusOr<KubeConfig> LoadKubeconfig(const std::string& path, const std::string& context = "");

// Refuses a plain http:// API server unless `allow_http`: the bearer token would travel in
// clear. https:// always passes; anything else is refused.
absl::Status CheckServerScheme(const KubeConfig& config, bool allow_http);

// The bearer token to send now ("" when none).
absl::StatusOr<std::string> CurrentToken(const KubeConfig& config);

}  // namespace lb::control::k8s
