// lb-k8s-watcher: the LB node's sidecar that turns Kubernetes Services and EndpointSlices
// into lbd's services (through lbd's gRPC API) and hands out VIPs to LoadBalancer
// Services of our class. See docs/k8s.md.
#include <unistd.h>

#include <pthread.h>

#include <csignal>
#include <cstdlib>

#include <gflags/gflags.h>
#include <glog/logging.h>
#include <grpcpp/grpcpp.h>

#include "absl/strings/ascii.h"
#include "absl/strings/str_split.h"
#include "control/http_endpoint.h"
#include "control/k8s/watcher.h"
#include "control/version.h"

DEFINE_string(kubeconfig, "", "kubeconfig file; empty: $KUBECONFIG, else the in-cluster service account.");
DEFINE_string(context, "", "kubeconfig context; empty: its current-context.");
DEFINE_string(lbd_socket, "/run/lbd/lbd.sock", "lbd's API socket.");
DEFINE_string(load_balancer_class, "lbd.io/dpdk-l4",
              "spec.loadBalancerClass of the LoadBalancer Services this watcher serves.");
DEFINE_string(vip_cidrs, "",
              "Comma-separated CIDRs this node announces (required): the LoadBalancer address pool; "
              "externalIPs outside them are not served.");
DEFINE_string(external_ips, "none",
              "Which Services' spec.externalIPs are served: none, all, or namespaces=NS[,NS...]. Any tenant "
              "may write any address there (CVE-2020-8554); an address in a LoadBalancer Service's status "
              "is never given to an externalIP.");
DEFINE_bool(accept_unmanaged_endpointslices, false,
            "Follow EndpointSlices that the EndpointSlice controller does not manage (label "
            "endpointslice.kubernetes.io/managed-by): anyone who may write a slice then chooses backends.");
DEFINE_bool(allow_insecure_http, false,
            "Accept a plain http:// API server (the bearer token travels in clear). For tests only.");
DEFINE_uint32(max_ports_per_service, 64,
              "Ports of one Service that are served, in spec order (each, on each address, is an lbd service); "
              "the rest get a TooManyPorts Event. lbd never drops a serving service for another's growth.");
DEFINE_uint32(max_table_size, 262139,
              "The largest lbd.io/maglev-table-size a Service may ask for: one of 1021, 4093, 16381, 65537, "
              "262139, 1048573, 4194301, 16777213.");
DEFINE_string(node_addresses, "",
              "Comma-separated addresses of the LB nodes (e.g. from status.hostIP): never served as a VIP.");
DEFINE_string(listen_address, "127.0.0.1:9101", "host:port for GET /healthz and GET /metrics. Empty: none.");
DEFINE_string(node_name, "", "Reported as the Events' source host; empty: $NODE_NAME, else the host name.");
DEFINE_string(dsr_lease_namespace, "",
              "Namespace of lb-dsr-node's Leases: a DSR Service's endpoints are served only on nodes whose agent "
              "holds a live one (the others get a DSRNodeNotReady Event). Empty: $POD_NAMESPACE; \"none\": not "
              "checked (every backend decapsulates by other means).");
DEFINE_uint32(debounce_ms, 100, "Quiet time after a change before lbd is updated (at most 10x this in all).");
DEFINE_uint32(resync_seconds, 300, "Apply the whole state again this often, even without changes.");
DEFINE_uint32(list_page_size, 500, "Objects per page when listing (limit/continue).");
DEFINE_uint32(watch_timeout_seconds, 300, "Watch duration asked of the API server (plus up to 20% jitter).");

namespace lb::control::k8s {
namespace {

Stopper g_stop;

absl::StatusOr<KubeConfig> LoadConfig() {
  std::string path = FLAGS_kubeconfig;
  if (path.empty() && std::getenv("KUBECONFIG") != nullptr) path = std::getenv("KUBECONFIG");
  return path.empty() ? InClusterConfig() : LoadKubeconfig(path, FLAGS_context);
}

absl::StatusOr<std::vector<IpPrefix>> ParseCidrs(const std::string& text) {
  std::vector<IpPrefix> out;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    const absl::string_view trimmed = absl::StripAsciiWhitespace(part);
    const auto p = IpPrefix::Parse(std::string_view(trimmed.data(), trimmed.size()));
    if (!p)
      return absl::InvalidArgumentError("--vip_cidrs: \"" + std::string(part) + "\" is not a CIDR (host bits zero)");
    out.push_back(*p);
  }
  return out;
}

std::string NodeName() {
  if (!FLAGS_node_name.empty()) return FLAGS_node_name;
  if (const char* n = std::getenv("NODE_NAME"); n != nullptr && *n != '\0') return n;
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  return host;
}

int Main(int argc, char** argv) {
  gflags::SetUsageMessage(
      "lb-k8s-watcher [options]: keep lbd's services equal to the cluster's Services and EndpointSlices");
  gflags::SetVersionString(std::string(BuildVersion()));
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv[0]);
  // SIGINT/SIGTERM: blocked in every thread (so first, before any thread starts) and
  // taken by one.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto config = LoadConfig();
  if (!config.ok()) {
    LOG(ERROR) << config.status().message();
    return 2;
  }
  if (absl::Status s = CheckServerScheme(*config, FLAGS_allow_insecure_http); !s.ok()) {
    LOG(ERROR) << s.message();
    return 2;
  }
  auto cidrs = ParseCidrs(FLAGS_vip_cidrs);
  if (!cidrs.ok()) {
    LOG(ERROR) << cidrs.status().message();
    return 2;
  }
  if (cidrs->empty()) {
    LOG(ERROR) << "--vip_cidrs is required: the CIDRs this node announces (only addresses in them are served)";
    return 2;
  }
  auto external_ips = ParseExternalIpPolicy(FLAGS_external_ips);
  if (!external_ips.ok()) {
    LOG(ERROR) << external_ips.status().message();
    return 2;
  }
  WatcherOptions options;
  options.mapping.load_balancer_class = FLAGS_load_balancer_class;
  options.mapping.vip_cidrs = *cidrs;
  options.mapping.external_ips = *external_ips;
  options.mapping.accept_unmanaged_slices = FLAGS_accept_unmanaged_endpointslices;
  options.mapping.max_table_size = FLAGS_max_table_size;
  options.mapping.max_ports_per_service = FLAGS_max_ports_per_service;
  for (absl::string_view part : absl::StrSplit(FLAGS_node_addresses, ',', absl::SkipWhitespace())) {
    const absl::string_view trimmed = absl::StripAsciiWhitespace(part);
    const auto a = IpAddress::Parse(std::string_view(trimmed.data(), trimmed.size()));
    if (!a) {
      LOG(ERROR) << "--node_addresses: \"" << std::string(part) << "\" is not an IP address";
      return 2;
    }
    options.mapping.node_addresses.push_back(*a);
  }
  options.debounce = std::chrono::milliseconds(FLAGS_debounce_ms);
  options.max_delay = options.debounce * 10;
  options.resync = std::chrono::seconds(std::max(1u, FLAGS_resync_seconds));
  options.informer.watch_timeout_seconds = int(std::max(1u, FLAGS_watch_timeout_seconds));
  options.informer.page_size = int(std::max(1u, FLAGS_list_page_size));
  options.node_name = NodeName();
  options.dsr_lease_namespace = FLAGS_dsr_lease_namespace;
  if (options.dsr_lease_namespace.empty() && std::getenv("POD_NAMESPACE") != nullptr)
    options.dsr_lease_namespace = std::getenv("POD_NAMESPACE");
  if (options.dsr_lease_namespace.empty()) {
    LOG(ERROR) << "--dsr_lease_namespace (or $POD_NAMESPACE) is required: where lb-dsr-node's Leases are; \"none\" "
                  "when the backends decapsulate DSR by other means";
    return 2;
  }
  if (options.dsr_lease_namespace == "none") options.dsr_lease_namespace.clear();

  KubeClient kube(*config);
  auto lbd = lb::v1::LoadBalancer::NewStub(
      grpc::CreateChannel("unix:" + FLAGS_lbd_socket, grpc::InsecureChannelCredentials()));
  Watcher watcher(&kube, lbd.get(), options);
  LOG(INFO) << "API server " << config->server << " (" << config->source << "); lbd at " << FLAGS_lbd_socket
            << "; class " << FLAGS_load_balancer_class << "; VIP CIDRs [" << FLAGS_vip_cidrs << "]";

  std::unique_ptr<HttpEndpoint> http;
  if (!FLAGS_listen_address.empty()) {
    auto endpoint = HttpEndpoint::Start(FLAGS_listen_address, HealthAndMetricsHandler(
                                                                  "lb-k8s-watcher", [&] { return watcher.Healthz(); },
                                                                  [&] { return watcher.RenderMetrics(); }));
    if (!endpoint.ok()) {
      LOG(ERROR) << "--listen_address: " << endpoint.status().message();
      return 2;
    }
    http = *std::move(endpoint);
  }

  std::thread signal_thread([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    LOG(INFO) << "signal " << sig << ": stopping";
    g_stop.Stop();
  });
  watcher.Run(g_stop);
  signal_thread.join();
  return 0;
}

}  // namespace
}  // namespace lb::control::k8s

int main(int argc, char** argv) { return lb::control::k8s::Main(argc, argv); }
