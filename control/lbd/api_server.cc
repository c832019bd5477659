#include "control/lbd/api_server.h"

#include <grp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <glog/logging.h>

#include "absl/strings/str_format.h"

namespace lb::control {
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) LOG(FATAL) << "cannot read " << path;
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The largest request the limits allow: an Apply of max_backends_total backends (an
// address of up to 39 characters and its fields: at most 64 bytes each on the wire) over
// max_services services (key and settings: at most 256 bytes each), and room besides.
int ApiMessageLimit(const Limits& limits) {
  const uint64_t bytes = uint64_t{limits.max_backends_total} * 64 + uint64_t{limits.max_services} * 256 + (4 << 20);
  return int(std::min<uint64_t>(bytes, INT32_MAX));
}

// The API socket's directory: created 0750 if missing. Others must not write to it (they
// could replace the socket and impersonate lbd, or remove it): a world-writable one that
// lbd's user owns, as a kubelet makes every emptyDir volume (0777), is made 0750; one that
// another user owns is refused.
absl::Status CheckSocketDirectory(const std::string& dir) {
  if (mkdir(dir.c_str(), 0750) != 0 && errno != EEXIST) {
    return absl::InvalidArgumentError(absl::StrFormat("--api_socket: cannot create %s: %s", dir, std::strerror(errno)));
  }
  struct stat st;
  if (stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrFormat("--api_socket: %s is not a directory", dir));
  }
  if ((st.st_mode & S_IWOTH) && !(st.st_mode & S_ISVTX) && st.st_uid == geteuid()) {
    if (chmod(dir.c_str(), 0750) != 0) {
      return absl::InvalidArgumentError(absl::StrFormat("--api_socket: chmod 0750 %s: %s", dir, std::strerror(errno)));
    }
    LOG(INFO) << "--api_socket: " << dir << " was writable by every user (mode "
              << absl::StrFormat("%o", st.st_mode & 07777) << ", as a kubelet makes emptyDir volumes); made it 0750";
    return absl::OkStatus();
  }
  if ((st.st_mode & S_IWOTH) && !(st.st_mode & S_ISVTX)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("--api_socket: %s is writable by every user (mode %o): anyone could replace the socket; use a "
                        "directory only lbd's user (and group) may write to",
                        dir, st.st_mode & 07777));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateApiServer(const ApiServerOptions& o) {
  if (!o.socket.empty()) {
    const size_t slash = o.socket.rfind('/');
    const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : o.socket.substr(0, slash);
    if (absl::Status s = CheckSocketDirectory(dir); !s.ok()) return s;
    if (!o.socket_group.empty() && getgrnam(o.socket_group.c_str()) == nullptr) {
      return absl::InvalidArgumentError(absl::StrFormat("--api_socket_group: no group %s", o.socket_group));
    }
  }
  if (!o.address.empty()) {
    if (o.tls_cert.empty() || o.tls_key.empty()) {
      return absl::InvalidArgumentError("--api_address needs --tls_cert and --tls_key (the TCP API is TLS only)");
    }
    if (o.tls_client_ca.empty() && !o.insecure_no_client_auth) {
      return absl::InvalidArgumentError(
          "--api_address needs --tls_client_ca (clients must present a certificate it signed): without it "
          "anyone who reaches the port administers lbd. --api_insecure_no_client_auth allows that");
    }
  }
  return absl::OkStatus();
}

std::unique_ptr<grpc::Server> StartApiServer(const ApiServerOptions& o, LoadBalancerService* service,
                                             const Limits& limits) {
  grpc::ServerBuilder builder;
  builder.RegisterService(service);
  builder.SetMaxReceiveMessageSize(ApiMessageLimit(limits));
  if (!o.socket.empty()) {
    unlink(o.socket.c_str());  // a stale socket of an earlier run
    builder.AddListeningPort("unix:" + o.socket, grpc::InsecureServerCredentials());
  }
  if (!o.address.empty()) {
    if (o.tls_client_ca.empty()) {
      LOG(WARNING) << "INSECURE: the API on " << o.address << " does not authenticate its clients "
                   << "(--api_insecure_no_client_auth): anyone who reaches it administers lbd";
    }
    grpc::SslServerCredentialsOptions tls(o.tls_client_ca.empty()
                                              ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                                              : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    if (!o.tls_client_ca.empty()) tls.pem_root_certs = ReadFile(o.tls_client_ca);
    tls.pem_key_cert_pairs.push_back({ReadFile(o.tls_key), ReadFile(o.tls_cert)});
    builder.AddListeningPort(o.address, grpc::SslServerCredentials(tls));
  }
  // The socket is born 0660 (the umask applies when gRPC binds it), so no other user can
  // connect in the moment before a chmod.
  const mode_t old_umask = umask(0117);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  umask(old_umask);
  if (server == nullptr) LOG(FATAL) << "cannot start the gRPC API";
  if (!o.socket.empty()) {
    if (!o.socket_group.empty()) {
      const group* g = getgrnam(o.socket_group.c_str());
      if (g == nullptr) LOG(FATAL) << "--api_socket_group: no group " << o.socket_group;
      if (chown(o.socket.c_str(), uid_t(-1), g->gr_gid) != 0) {
        LOG(FATAL) << "--api_socket_group: chown " << o.socket << ": " << std::strerror(errno);
      }
    }
    LOG(INFO) << "API on unix:" << o.socket << " (mode 0660"
              << (o.socket_group.empty() ? "" : ", group " + o.socket_group) << ")";
  }
  if (!o.address.empty()) {
    LOG(INFO) << "API on " << o.address << " (TLS"
              << (o.tls_client_ca.empty() ? ", clients NOT authenticated)" : ", client certificates required)");
  }
  return server;
}

}  // namespace lb::control
