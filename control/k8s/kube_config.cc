#include "control/k8s/kube_config.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include <yaml-cpp/yaml.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"

namespace lb::control::k8s {
namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrFormat("cannot read %s", path));
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// A YAML mapping's `name`d entry from a kubeconfig list (clusters, users, contexts).
absl::StatusOr<YAML::Node> Named(const YAML::Node& root, const char* list, const std::string& name) {
  for (const auto& entry : root[list]) {
    if (entry["name"] && entry["name"].as<std::string>() == name) return entry;
  }
  return absl::NotFoundError(absl::StrFormat("no %s entry named \"%s\"", list, name));
}

// A PEM from `<field>-data` (base64) or the file named by `<field>`.
absl::StatusOr<std::string> Pem(const YAML::Node& node, const std::string& field, const std::string& dir) {
  if (const YAML::Node data = node[field + "-data"]) {
    std::string pem;
    if (!absl::Base64Unescape(data.as<std::string>(), &pem)) {
      return absl::InvalidArgumentError(absl::StrFormat("%s-data: not base64", field));
    }
    return pem;
  }
  if (const YAML::Node file = node[field]) {
    std::string path = file.as<std::string>();
    if (!path.empty() && path[0] != '/') path = dir + "/" + path;
    return ReadFile(path);
  }
  return std::string();
}

}  // namespace

absl::StatusOr<KubeConfig> InClusterConfig(const std::string& secrets_dir) {
  const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
  const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
  if (host == nullptr || port == nullptr || *host == '\0' || *port == '\0') {
    return absl::FailedPreconditionError("not in a cluster: KUBERNETES_SERVICE_HOST/PORT unset (give --kubeconfig)");
  }
  KubeConfig c;
  const std::string h = host;
  c.server = absl::StrFormat("https://%s:%s", h.find(':') != std::string::npos ? "[" + h + "]" : h, port);
  auto ca = ReadFile(secrets_dir + "/ca.crt");
  if (!ca.ok()) return ca.status();
  c.ca_pem = *std::move(ca);
  c.token_file = secrets_dir + "/token";
  if (auto token = CurrentToken(c); !token.ok()) return token.status();
  c.source = "in-cluster service account";
  return c;
}

absl::StatusOr<KubeConfig> LoadKubeconfig(const std::string& path, const std::string& context) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrFormat("%s: %s", path, e.what()));
  }
  const std::string dir = path.find('/') == std::string::npos ? "." : path.substr(0, path.rfind('/'));
  auto fail = [&](const absl::Status& s) {
    return absl::Status(s.code(), absl::StrFormat("%s: %s", path, s.message()));
  };
  try {
    std::string name = context;
    if (name.empty()) {
      if (!root["current-context"]) return fail(absl::InvalidArgumentError("no current-context (give --context)"));
      name = root["current-context"].as<std::string>();
    }
    auto ctx = Named(root, "contexts", name);
    if (!ctx.ok()) return fail(ctx.status());
    const YAML::Node c = (*ctx)["context"];
    auto cluster = Named(root, "clusters", c["cluster"].as<std::string>(""));
    if (!cluster.ok()) return fail(cluster.status());
    const YAML::Node cl = (*cluster)["cluster"];
    KubeConfig out;
    out.server = cl["server"].as<std::string>("");
    if (out.server.empty()) return fail(absl::InvalidArgumentError("the cluster has no server"));
    if (cl["insecure-skip-tls-verify"] && cl["insecure-skip-tls-verify"].as<bool>()) {
      return fail(
          absl::InvalidArgumentError("insecure-skip-tls-verify is set: lb-k8s-watcher always verifies the API server"));
    }
    auto ca = Pem(cl, "certificate-authority", dir);
    if (!ca.ok()) return fail(ca.status());
    out.ca_pem = *std::move(ca);
    if (c["user"]) {
      auto user = Named(root, "users", c["user"].as<std::string>());
      if (!user.ok()) return fail(user.status());
      const YAML::Node u = (*user)["user"];
      auto cert = Pem(u, "client-certificate", dir);
      auto key = Pem(u, "client-key", dir);
      if (!cert.ok()) return fail(cert.status());
      if (!key.ok()) return fail(key.status());
      out.client_cert_pem = *std::move(cert);
      out.client_key_pem = *std::move(key);
      if (out.client_cert_pem.empty() != out.client_key_pem.empty()) {
        return fail(absl::InvalidArgumentError("a client certificate needs its key and the key its certificate"));
      }
      out.token = u["token"].as<std::string>("");
      out.token_file = u["tokenFile"].as<std::string>("");
      if (!out.token_file.empty() && out.token_file[0] != '/') out.token_file = dir + "/" + out.token_file;
      if (u["exec"] || u["auth-provider"]) {
        return fail(absl::InvalidArgumentError(
            "exec and auth-provider credentials are not supported: use a token or a client certificate"));
      }
    }
    out.source = absl::StrFormat("%s (context %s)", path, name);
    return out;
  } catch (const YAML::Exception& e) {
    return fail(absl::InvalidArgumentError(e.what()));
  }
}

absl::StatusOr<std::string> CurrentToken(const KubeConfig& config) {
  if (config.token_file.empty()) return config.token;
  auto token = ReadFile(config.token_file);
  if (!token.ok()) return token.status();
  return std::string(absl::StripTrailingAsciiWhitespace(*token));
}

absl::Status CheckServerScheme(const KubeConfig& config, bool allow_http) {
  if (config.server.rfind("https://", 0) == 0) return absl::OkStatus();
  if (config.server.rfind("http://", 0) == 0) {
    if (allow_http) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrFormat(
        "API server %s is plain http: the bearer token would travel in clear (--allow_insecure_http allows it)",
        config.server));
  }
  return absl::InvalidArgumentError(absl::StrFormat("API server %s: not an https:// URL", config.server));
}

}  // namespace lb::control::k8s
