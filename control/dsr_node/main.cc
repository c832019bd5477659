// lb-dsr-node: the worker-node half of DSR. See docs/dsr-node.md.
//
//   lb-dsr-node [flags]                             the Kubernetes agent (a DaemonSet)
//   lb-dsr-node attach --interface=IF --vips=A,B    this network namespace decapsulates A, B
//   lb-dsr-node detach --interface=IF               and no longer
//   lb-dsr-node show                                what of ours this namespace holds
#include <net/if.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <thread>

#include <gflags/gflags.h>
#include <glog/logging.h>

#include "absl/strings/ascii.h"
#include "absl/strings/str_split.h"
#include "control/dsr_node/agent.h"
#include "control/http_endpoint.h"
#include "control/k8s/kube_config.h"
#include "control/version.h"

DEFINE_string(kubeconfig, "", "kubeconfig file; empty: $KUBECONFIG, else the in-cluster service account.");
DEFINE_string(context, "", "kubeconfig context; empty: its current-context.");
DEFINE_bool(allow_insecure_http, false, "Allow an http:// API server (tests only).");
DEFINE_string(node_name, "", "This node's name (the Pods' spec.nodeName); empty: $NODE_NAME. Required.");
DEFINE_string(lease_namespace, "",
              "Namespace of the Lease that tells lb-k8s-watcher this node decapsulates; empty: $POD_NAMESPACE. "
              "\"none\": no Lease (then the watcher sends this node no DSR traffic unless told not to check).");
DEFINE_uint32(lease_duration_seconds, 30, "The Lease's duration; it is renewed every third of it.");
DEFINE_string(load_balancer_class, "lbd.io/dpdk-l4", "The LoadBalancer class served (as lb-k8s-watcher's).");
DEFINE_string(external_ips, "none",
              "Whose spec.externalIPs are decapsulated too: none, all, or namespaces=NS[,NS...] (as "
              "lb-k8s-watcher's).");
DEFINE_bool(accept_unmanaged_endpointslices, false,
            "Follow EndpointSlices not managed by the EndpointSlice controller (as lb-k8s-watcher's).");
DEFINE_uint32(gue_port, 6080, "GUE's UDP destination port (lbd's --gue_port); 0: IPIP only.");
DEFINE_string(proc_dir, "/proc", "The host's /proc (the agent needs hostPID to see the pods' namespaces).");
DEFINE_string(sysctl_dir, "/proc/sys", "A writable /proc/sys, for rp_filter in the pods' namespaces.");
DEFINE_uint32(resync_seconds, 30, "Verify every pod and sweep for leftovers this often.");
DEFINE_string(listen_address, "127.0.0.1:9104", "host:port for GET /healthz, /livez and /metrics. Empty: none.");
DEFINE_string(interface, "", "attach/detach: the interface that receives the tunnelled packets.");
DEFINE_string(vips, "", "attach: the VIPs to decapsulate, comma-separated.");

namespace lb::control::dsr_node {
namespace {

k8s::Stopper g_stop;

int Fail(const std::string& message) {
  LOG(ERROR) << message;
  return 2;
}

// show: what of ours this network namespace holds, one line each:
//   filter IF program ID decapsulated=N not_tunnel=N ...
//   vip ADDRESS
int Show() {
  struct if_nameindex* interfaces = if_nameindex();
  if (interfaces == nullptr) return Fail("if_nameindex: cannot list the interfaces");
  for (struct if_nameindex* i = interfaces; i->if_index != 0; ++i) {
    auto id = AttachedProgramId(int(i->if_index));
    if (!id.ok() || *id == 0) continue;
    std::cout << "filter " << i->if_name << " program " << *id;
    if (auto counters = CountersOfProgram(*id); counters.ok()) {
      for (int c = 0; c < DSR_DECAP_COUNTERS; ++c) std::cout << " " << DecapCounterName(c) << "=" << (*counters)[c];
    }
    std::cout << "\n";
  }
  if_freenameindex(interfaces);
  auto addresses = ListAddresses();
  if (!addresses.ok()) return Fail(std::string(addresses.status().message()));
  for (const InterfaceAddress& a : *addresses) {
    if (a.proto == kAddressProto) std::cout << "vip " << a.address.ToString() << "\n";
  }
  return 0;
}

// attach/detach: the calling process's network namespace, e.g. under `ip netns exec`.
int Attach(bool attach) {
  const int ifindex = int(if_nametoindex(FLAGS_interface.c_str()));
  if (FLAGS_interface.empty() || ifindex == 0)
    return Fail("--interface: \"" + FLAGS_interface + "\" is no interface here");
  if (!attach) {
    if (absl::Status s = StopDecapsulating(ifindex); !s.ok()) return Fail(std::string(s.message()));
    std::cout << "dsr_decap removed from " << FLAGS_interface << ", and our VIPs from lo\n";
    return 0;
  }
  std::vector<IpAddress> vips;
  for (absl::string_view part : absl::StrSplit(FLAGS_vips, ',', absl::SkipWhitespace())) {
    const absl::string_view text = absl::StripAsciiWhitespace(part);
    const auto vip = IpAddress::Parse(std::string_view(text.data(), text.size()));
    if (!vip) return Fail("--vips: \"" + std::string(text) + "\" is not an IP address");
    vips.push_back(*vip);
  }
  if (vips.empty()) return Fail("--vips: at least one VIP");
  if (FLAGS_gue_port > 65535) return Fail("--gue_port: 0..65535");
  auto program = DecapProgram::Load(uint16_t(FLAGS_gue_port));
  if (!program.ok()) return Fail(std::string(program.status().message()));
  if (absl::Status s = Decapsulate(**program, ifindex, vips, FLAGS_sysctl_dir); !s.ok())
    return Fail(std::string(s.message()));
  std::cout << "dsr_decap (program " << (*program)->prog_id() << ") on " << FLAGS_interface << "'s ingress; "
            << vips.size() << " VIP(s) on lo\n";
  return 0;  // the filter holds the program after this process ends
}

std::string FromFlagOrEnv(const std::string& flag, const char* env) {
  if (!flag.empty()) return flag;
  const char* value = std::getenv(env);
  return value == nullptr ? "" : value;
}

int RunAgent() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  AgentOptions options;
  options.policy.node_name = FromFlagOrEnv(FLAGS_node_name, "NODE_NAME");
  if (options.policy.node_name.empty()) return Fail("--node_name (or $NODE_NAME) is required");
  options.policy.load_balancer_class = FLAGS_load_balancer_class;
  auto external_ips = k8s::ParseExternalIpPolicy(FLAGS_external_ips);
  if (!external_ips.ok()) return Fail(std::string(external_ips.status().message()));
  options.policy.external_ips = *external_ips;
  options.policy.accept_unmanaged_slices = FLAGS_accept_unmanaged_endpointslices;
  if (FLAGS_gue_port > 65535) return Fail("--gue_port: 0..65535");
  options.gue_port = uint16_t(FLAGS_gue_port);
  options.proc_dir = FLAGS_proc_dir;
  options.sysctl_dir = FLAGS_sysctl_dir;
  options.lease_namespace = FromFlagOrEnv(FLAGS_lease_namespace, "POD_NAMESPACE");
  if (options.lease_namespace.empty())
    return Fail("--lease_namespace (or $POD_NAMESPACE) is required; \"none\" for no Lease");
  if (options.lease_namespace == "none") options.lease_namespace.clear();
  options.lease_duration = std::chrono::seconds(std::max(3u, FLAGS_lease_duration_seconds));
  options.resync = std::chrono::seconds(std::max(1u, FLAGS_resync_seconds));

  std::string path = FLAGS_kubeconfig;
  if (path.empty() && std::getenv("KUBECONFIG") != nullptr) path = std::getenv("KUBECONFIG");
  auto config = path.empty() ? k8s::InClusterConfig() : k8s::LoadKubeconfig(path, FLAGS_context);
  if (!config.ok()) return Fail(std::string(config.status().message()));
  if (absl::Status s = k8s::CheckServerScheme(*config, FLAGS_allow_insecure_http); !s.ok())
    return Fail(std::string(s.message()));
  // A probe load: a node that cannot load the program (no CAP_BPF, a kernel without
  // cls_bpf) says so at once instead of at its first pod.
  if (auto probe = DecapProgram::Load(options.gue_port); !probe.ok())
    return Fail(std::string(probe.status().message()));

  k8s::KubeClient kube(*config);
  Agent agent(&kube, options);
  LOG(INFO) << "lb-dsr-node " << BuildVersion() << " on node " << options.policy.node_name << "; API server "
            << config->server << "; class " << options.policy.load_balancer_class << "; GUE port " << options.gue_port;

  std::unique_ptr<HttpEndpoint> http;
  if (!FLAGS_listen_address.empty()) {
    auto endpoint = HttpEndpoint::Start(FLAGS_listen_address, HealthAndMetricsHandler(
                                                                  "lb-dsr-node", [&] { return agent.Healthz(); },
                                                                  [&] { return agent.RenderMetrics(); }));
    if (!endpoint.ok()) return Fail("--listen_address: " + std::string(endpoint.status().message()));
    http = *std::move(endpoint);
  }
  std::thread signal_thread([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    // Nothing is undone on the way out: the pods keep decapsulating while the agent is
    // away (an upgrade), and the next agent takes them over.
    LOG(INFO) << "signal " << sig << ": stopping; the pods keep their decapsulation";
    g_stop.Stop();
  });
  agent.Run(g_stop);
  signal_thread.join();
  return 0;
}

int Main(int argc, char** argv) {
  gflags::SetUsageMessage(
      "the worker-node half of DSR (docs/dsr-node.md)\n"
      "  lb-dsr-node [flags]                           the Kubernetes agent: the pods on this node that back\n"
      "                                                DSR Services decapsulate their VIPs (tc BPF)\n"
      "  lb-dsr-node attach --interface=IF --vips=A,B  this network namespace decapsulates A and B arriving\n"
      "                                                on IF (a backend outside Kubernetes)\n"
      "  lb-dsr-node detach --interface=IF             undoes attach\n"
      "  lb-dsr-node show                              this namespace's dsr_decap filters (with their\n"
      "                                                counters) and the VIPs the agent or attach added");
  gflags::SetVersionString(std::string(BuildVersion()));
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv[0]);
  if (argc > 2) return Fail("one command at most: attach, detach, show, or none (the agent)");
  const std::string command = argc == 2 ? argv[1] : "";
  if (command == "attach" || command == "detach") return Attach(command == "attach");
  if (command == "show") return Show();
  if (!command.empty()) return Fail("unknown command \"" + command + "\": attach, detach, show, or none (the agent)");
  return RunAgent();
}

}  // namespace
}  // namespace lb::control::dsr_node

int main(int argc, char** argv) { return lb::control::dsr_node::Main(argc, argv); }
