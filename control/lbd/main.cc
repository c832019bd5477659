// lbd: the load balancer appliance.
//
//   lbd [EAL options] -- [lbd options]
//
// EAL options choose lcores (-l: the first is the main lcore, every other one runs a
// worker), memory and devices (-a PCI address, --vdev). lbd options are the gflags below.
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_pdump.h>
#include <rte_telemetry.h>
#include <arpa/inet.h>
#include <grp.h>
#include <ifaddrs.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include <gflags/gflags.h>
#include <glog/logging.h>
#include <grpcpp/grpcpp.h>

#include "absl/strings/ascii.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "control/control_core.h"
#include "control/grpc_service.h"
#include "control/http_endpoint.h"
#include "control/lbd/neighbors.h"
#include "control/lbd/runtime.h"
#include "control/metrics.h"
#include "control/prometheus.h"
#include "control/version.h"
#include "dataplane/dpdk/eal.h"
#include "dataplane/flow_table.h"

DEFINE_string(port, "", "The wire port: af_packet:IFACE (lbd's own AF_PACKET port on kernel interface IFACE, "
                        "for nodes without a DPDK NIC: VMs, veth), or the EAL name of a DPDK port: a PCI "
                        "address (0000:3b:00.0, bound to vfio-pci and allowed with -a) or a virtual device "
                        "from --vdev. Required.");
DEFINE_uint32(af_packet_frames, 512, "af_packet port: RX ring frames per worker, 64 kB each (a GSO frame "
                                     "of the kernel's fits one): 512 frames take 32 MB a worker.");
DEFINE_string(tap, "lb0", "Kernel interface of the exception path (ARP/ND, BGP, BFD, ICMP to "
                          "the node, all traffic not for a VIP). Give it the node's addresses.");
DEFINE_string(tap_addresses, "", "Comma-separated ADDRESS/LENGTH (10.90.0.2/24) lbd gives --tap at start, and sets "
                                 "it up: the node's addresses on the wire's network (BGP, BFD, ARP), again after "
                                 "every restart. Empty: the operator configures the interface.");
DEFINE_string(gateway, "", "IPv4 or IPv6 address of the next hop toward the backends. Its MAC "
                           "is read from the kernel's neighbour table on --tap.");
DEFINE_string(gateway_mac, "", "MAC of the next hop, instead of resolving --gateway.");
DEFINE_uint32(vlan, 0, "802.1Q VLAN ID for encapsulated packets (0: untagged).");
DEFINE_string(encap_source_v4, "", "Outer IPv4 source addresses, as a prefix whose host bits "
                                   "vary per flow (10.255.0.0/24), or one address (/32).");
DEFINE_string(encap_source_v6, "", "Outer IPv6 source addresses, as --encap_source_v4.");
DEFINE_uint32(gue_port, 6080, "UDP destination port of GUE encapsulation.");
DEFINE_uint32(mtu, 1500, "IP MTU toward the backends.");
DEFINE_uint32(icmp_too_big_per_second, 100, "ICMP too-big errors a worker may send a second.");
DEFINE_string(vip_cidrs, "", "Comma-separated CIDRs this node announces (lb-bird-gen's vip_prefixes). A packet to "
                             "one of them that matches no VIP is dropped (no_vip) instead of reaching the kernel; "
                             "the node's own addresses must be outside them. Empty: none.");
DEFINE_uint32(exception_pps, 10000, "Packets a worker hands to the kernel a second, control traffic aside "
                                    "(ICMP to the node, SSH, ...). 0: no limit.");
DEFINE_uint32(exception_control_pps, 100000, "Control packets (ARP, ND, BGP, BFD, flow sync) a worker hands to the kernel a "
                                             "second, from a budget of their own. 0: no limit.");
DEFINE_string(flow_hash_secret_file, "",
              "File holding the cluster's flow-hash secret (at least 16 bytes; trailing whitespace is ignored). "
              "Every LB node of a cluster must read the same secret. With it, the flow hash is keyed by the "
              "secret, so nobody outside can choose 5-tuples that land on one backend; without it, it is the "
              "public CRC32C hash. Changing it moves flows as a change of every backend set would.");
DEFINE_string(control_peers, "", "Comma-separated addresses of the node's BGP and BFD peers (lb-bird-gen's peers). "
                                 "With them, only their BGP and BFD takes the control budget "
                                 "(--exception_control_pps); those ports from anyone else share --exception_pps. "
                                 "Empty: by port alone.");
DEFINE_string(flow_sync_peers, "",
              "Comma-separated addresses of the LB nodes of this node's ECMP group (its own, from --tap_addresses, "
              "are skipped, so one list serves every node). lbd tells them the flows it "
              "pins and learns theirs (UDP --flow_sync_port on the node network, authenticated with the "
              "--flow_hash_secret_file secret, which it then needs), so that a connection ECMP moves to another node "
              "keeps its backend, also after the backend set changed (docs/flow-sync.md). Empty: no flow sync.");
DEFINE_uint32(flow_sync_port, 7300, "UDP port of flow sync, the same on every node.");
DEFINE_uint32(flow_sync_refresh_ms, 5000, "Flow sync: an active flow is announced again this often. A (re)started "
                                          "node reports healthy only this long (and a second) after it starts, "
                                          "having learned the peers' active flows by then.");
DEFINE_uint32(flow_sync_nat_sessions, 65536,
              "Flow sync: the NAT sessions of the peer nodes each worker can adopt (about 128 bytes each, and two "
              "flow-table entries), so that a NAT connection survives its node (docs/flow-sync.md). Size it for the "
              "peers' live NAT sessions; what does not fit is counted as nat_adopted_full.");
DEFINE_uint32(flow_capacity, 1u << 20, "Flow-table capacity of each worker (64 bytes a flow; rounded up to a power of two).");
DEFINE_uint32(tcp_established_timeout, 300, "Idle timeout of established TCP flows, seconds.");
DEFINE_uint32(udp_timeout, 30, "Idle timeout of UDP flows, seconds.");
DEFINE_uint32(tcp_syn_timeout, 10, "Idle timeout of TCP flows that have seen only a SYN, seconds.");
DEFINE_uint32(tcp_closing_timeout, 10, "Idle timeout of TCP flows after a FIN or RST, seconds.");
DEFINE_string(snat_addresses, "", "NAT mode: comma-separated source addresses (IPv4 and/or IPv6, at most 16) "
              "that connections to backends come from; route them to this node. Empty: no NAT services.");
DEFINE_string(snat_ports, "1024-65535", "NAT mode: the source ports of each SNAT address, shared out over the "
              "workers (port p to worker (p - first) % workers).");
DEFINE_uint32(idle_polls, 0, "Idle back-off: after this many empty polls a worker sleeps "
                             "--idle_sleep_us between polls until traffic returns. 0 busy-polls "
                             "(production); tests and demos use e.g. 100.");
DEFINE_uint32(idle_sleep_us, 100, "Sleep between polls of an idle worker, microseconds.");
DEFINE_uint32(mbufs, 16383, "Packet buffers in the pool.");
DEFINE_string(api_socket, "/run/lbd/lbd.sock", "Unix socket of the gRPC API, mode 0660. Empty: none.");
DEFINE_string(api_address, "", "host:port of the gRPC API over TCP with TLS. Empty: none.");
DEFINE_string(tls_cert, "", "PEM certificate chain for --api_address.");
DEFINE_string(tls_key, "", "PEM private key for --api_address.");
DEFINE_string(tls_client_ca, "", "PEM CA bundle: API clients over TCP must present a certificate it "
                                 "signed. Required with --api_address unless --api_insecure_no_client_auth.");
DEFINE_bool(api_insecure_no_client_auth, false,
            "Serve --api_address without client certificates: anyone who reaches the port administers "
            "lbd. Only for a port that nothing untrusted can reach.");
DEFINE_string(api_socket_group, "", "Group that owns --api_socket (mode 0660), e.g. the one lb-k8s-watcher "
                                    "and lb-bird-gen run in. Empty: lbd's own.");
DEFINE_string(metrics_address, "", "host:port of GET /metrics (Prometheus) and GET /healthz (200 while healthy, "
              "else 503 with the problems). The manifest's: the node's address, port 7310. Empty: none.");
DEFINE_bool(await_first_apply, false, "Report unhealthy (so lb-bird-gen announces nothing) until the first Apply: "
            "the whole configuration lb-k8s-watcher sends once it has listed the cluster. For nodes the "
            "watcher configures; without it a (re)started node announces with no services.");
DEFINE_string(state_dir, "", "Directory of what must survive a restart of lbd: the operator's drain (file "
              "`drained`). Empty: nothing survives.");
DEFINE_uint32(max_services, 4096, "Most services.");
DEFINE_uint32(max_backends_per_service, 65535, "Most backends in one service.");
DEFINE_uint32(max_backends_total, 1u << 20, "Most backends in all.");
DEFINE_string(backend_cidrs, "", "Comma-separated prefixes backends must be in (e.g. the cluster's pod and "
              "node CIDRs). Empty: any unicast address that is not a VIP or one of this node's.");
DEFINE_uint64(max_table_memory, uint64_t{1} << 30,
              "Most bytes of Maglev tables and backend records of all services together (a "
              "service counts 2 bytes a table entry and 128 a backend; lbctl stats shows the use).");

namespace lb::control {
namespace {

// 128 bits of a random secret; a shorter one could be guessed from the backends flows land on.
constexpr size_t kMinFlowHashSecret = 16;

std::atomic<bool> g_stop{false};
// For the telemetry callbacks, which run on EAL's telemetry thread: cleared before what
// the core reaches (the runtime) is torn down. Acquire/release: a callback that sees the
// pointer sees the core constructed.
std::atomic<ControlCore*> g_core{nullptr};

void OnSignal(int) { g_stop.store(true, std::memory_order_relaxed); }

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) LOG(FATAL) << "cannot read " << path;
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Trailing whitespace (a newline from `echo`) is not part of the secret, so that files
// written either way give every node the same hash.
absl::StatusOr<FlowHasher> FlowHasherFromFlags(std::string* secret_out) {
  if (FLAGS_flow_hash_secret_file.empty()) {
    LOG(WARNING) << "flow hash: public (crc32c): anyone can choose 5-tuples that land on one backend; give every "
                    "node of the cluster the same --flow_hash_secret_file (docs/security.md)";
    return FlowHasher{};
  }
  std::ifstream in(FLAGS_flow_hash_secret_file, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrFormat("--flow_hash_secret_file: cannot read %s", FLAGS_flow_hash_secret_file));
  std::string secret((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!secret.empty() && absl::ascii_isspace(static_cast<unsigned char>(secret.back()))) secret.pop_back();
  if (secret.size() < kMinFlowHashSecret) {
    return absl::InvalidArgumentError(absl::StrFormat("--flow_hash_secret_file: %s holds %d bytes; the secret needs at least %d",
                                                      FLAGS_flow_hash_secret_file, secret.size(), kMinFlowHashSecret));
  }
  struct stat st;
  if (stat(FLAGS_flow_hash_secret_file.c_str(), &st) == 0 && (st.st_mode & S_IROTH) != 0) {
    LOG(WARNING) << "--flow_hash_secret_file: " << FLAGS_flow_hash_secret_file << " is readable by every user";
  }
  const auto hasher = FlowHasher::Keyed(secret);
  *secret_out = secret;
  LOG(INFO) << "flow hash: " << hasher.Describe() << " (every node of the cluster must show the same)";
  return hasher;
}

// The comma-separated IP addresses of flag `--name` (value `text`).
absl::StatusOr<std::vector<IpAddress>> AddressList(std::string_view name, const std::string& text) {
  std::vector<IpAddress> out;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    const auto a = IpAddress::Parse(std::string_view(part.data(), part.size()));
    if (!a) return absl::InvalidArgumentError(absl::StrFormat("--%s: \"%s\" is not an IP address", name, part));
    out.push_back(*a);
  }
  return out;
}

// `flow_hash_secret`: the secret of --flow_hash_secret_file (empty without one).
absl::StatusOr<NodeSettings> SettingsFromFlags(std::string* flow_hash_secret) {
  NodeSettings n;
  auto prefix = [](const std::string& flag, const std::string& text) -> absl::StatusOr<IpPrefix> {
    if (text.empty()) return IpPrefix{};
    auto p = IpPrefix::Parse(text.find('/') == std::string::npos
                                            ? text + (text.find(':') == std::string::npos ? "/32" : "/128")
                                            : text);
    if (!p) return absl::InvalidArgumentError(absl::StrFormat("--%s: \"%s\" is not a prefix", flag, text));
    return *p;
  };
  auto v4 = prefix("encap_source_v4", FLAGS_encap_source_v4);
  if (!v4.ok()) return v4.status();
  auto v6 = prefix("encap_source_v6", FLAGS_encap_source_v6);
  if (!v6.ok()) return v6.status();
  n.encap.source_v4 = *v4;
  n.encap.source_v6 = *v6;
  if (FLAGS_gue_port == 0 || FLAGS_gue_port > 65535) return absl::InvalidArgumentError("--gue_port: 1..65535");
  n.encap.gue_port = uint16_t(FLAGS_gue_port);
  n.mtu = uint16_t(std::min<uint32_t>(FLAGS_mtu, 65535));
  n.icmp_too_big_per_second = FLAGS_icmp_too_big_per_second;
  n.exception_per_second = FLAGS_exception_pps;
  n.exception_control_per_second = FLAGS_exception_control_pps;
  auto control_peers = AddressList("control_peers", FLAGS_control_peers);
  if (!control_peers.ok()) return control_peers.status();
  n.control_peers = *std::move(control_peers);
  for (absl::string_view part : absl::StrSplit(FLAGS_vip_cidrs, ',', absl::SkipWhitespace())) {
    auto p = IpPrefix::Parse(std::string_view(part.data(), part.size()));
    if (!p) return absl::InvalidArgumentError(absl::StrFormat("--vip_cidrs: \"%s\" is not a CIDR prefix", part));
    n.vip_cidrs.push_back(*p);
  }
  n.timeouts.tcp_established = FLAGS_tcp_established_timeout * 1000;
  n.timeouts.udp = FLAGS_udp_timeout * 1000;
  n.timeouts.tcp_syn_sent = FLAGS_tcp_syn_timeout * 1000;
  n.timeouts.tcp_closing = FLAGS_tcp_closing_timeout * 1000;
  auto snat = AddressList("snat_addresses", FLAGS_snat_addresses);
  if (!snat.ok()) return snat.status();
  n.nat.addresses = *std::move(snat);
  unsigned lo = 0, hi = 0;
  char extra;
  if (std::sscanf(FLAGS_snat_ports.c_str(), "%u-%u%c", &lo, &hi, &extra) != 2 || lo == 0 || hi > 65535 || lo > hi) {
    return absl::InvalidArgumentError(absl::StrFormat("--snat_ports: \"%s\" is not FIRST-LAST within 1-65535", FLAGS_snat_ports));
  }
  n.nat.port_min = uint16_t(lo);
  n.nat.port_max = uint16_t(hi);
  n.limits = {FLAGS_max_services, FLAGS_max_backends_per_service, FLAGS_max_backends_total,
              FLAGS_max_table_memory};
  for (absl::string_view part : absl::StrSplit(FLAGS_backend_cidrs, ',', absl::SkipWhitespace())) {
    auto p = IpPrefix::Parse(std::string_view(part.data(), part.size()));
    if (!p) return absl::InvalidArgumentError(absl::StrFormat("--backend_cidrs: \"%s\" is not a prefix", part));
    n.limits.backend_cidrs.push_back(*p);
  }
  if (FLAGS_vlan > 4094) return absl::InvalidArgumentError("--vlan: 0..4094");
  auto hasher = FlowHasherFromFlags(flow_hash_secret);
  if (!hasher.ok()) return hasher.status();
  n.flow_hasher = *hasher;
  auto sync_peers = AddressList("flow_sync_peers", FLAGS_flow_sync_peers);
  if (!sync_peers.ok()) return sync_peers.status();
  n.flow_sync_peers = *std::move(sync_peers);
  if (FLAGS_flow_sync_port == 0 || FLAGS_flow_sync_port > 65535) return absl::InvalidArgumentError("--flow_sync_port: 1..65535");
  if (!n.flow_sync_peers.empty()) n.flow_sync_port = uint16_t(FLAGS_flow_sync_port);
  if (!n.flow_sync_peers.empty() && flow_hash_secret->empty()) {
    return absl::InvalidArgumentError("--flow_sync_peers needs --flow_hash_secret_file: its secret authenticates the "
                                      "peers' datagrams (and the nodes must agree on the flow hash anyway)");
  }
  if (absl::Status s = ValidateNode(n); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrFormat("flags: %s", s.message()));
  }
  return n;
}

int TelemetryStats(const char*, const char*, rte_tel_data* d) {
  ControlCore* core = g_core.load(std::memory_order_acquire);
  if (core == nullptr) return -1;  // stopping
  const Stats stats = core->GetStats();
  rte_tel_data_start_dict(d);
  for (size_t i = 0; i < dataplane::kNumEvents; ++i) {
    rte_tel_data_add_dict_u64(d, std::string(dataplane::kEventInfo[i].name).c_str(), stats.events[i]);
  }
  for (size_t i = 0; i < dataplane::kNumDropReasons; ++i) {
    const std::string name = "drop_" + std::string(dataplane::kDropReasonInfo[i].name);
    rte_tel_data_add_dict_u64(d, name.c_str(), stats.drops[i]);
  }
  rte_tel_data_add_dict_u64(d, "flows", stats.flows);
  rte_tel_data_add_dict_u64(d, "generation", stats.generation);
  return 0;
}

int TelemetryHealth(const char*, const char*, rte_tel_data* d) {
  ControlCore* core = g_core.load(std::memory_order_acquire);
  if (core == nullptr) return -1;  // stopping
  const Health h = core->GetHealth();
  rte_tel_data_start_dict(d);
  rte_tel_data_add_dict_int(d, "healthy", h.healthy);
  rte_tel_data_add_dict_int(d, "workers_alive", int(h.workers_alive));
  return 0;
}

std::unique_ptr<HttpEndpoint> StartMetrics(const std::string& address, ControlCore* core) {
  auto endpoint = HttpEndpoint::Start(address, [core](std::string_view method, std::string_view path) {
    if (method == "GET" && path == "/metrics") {
      std::string body = RenderPrometheus(core->GetStats(), core->GetHealth());
      AppendBuildInfo(body, "lbd");
      return HttpReply{.body = std::move(body)};
    }
    if (method == "GET" && path == "/healthz") {
      const Health h = core->GetHealth();
      if (h.healthy) return HttpReply{.content_type = "text/plain", .body = "ok\n"};
      return HttpReply{.status = 503, .content_type = "text/plain", .body = absl::StrJoin(h.problems, "\n") + "\n"};
    }
    return HttpReply{.status = 404, .body = "lbd serves GET /metrics and GET /healthz\n"};
  });
  if (!endpoint.ok()) LOG(FATAL) << "--metrics_address: " << endpoint.status().message();
  LOG(INFO) << "metrics on http://" << address << "/metrics";
  return *std::move(endpoint);
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
    LOG(INFO) << "--api_socket: " << dir << " was writable by every user (mode " << absl::StrFormat("%o", st.st_mode & 07777)
              << ", as a kubelet makes emptyDir volumes); made it 0750";
    return absl::OkStatus();
  }
  if ((st.st_mode & S_IWOTH) && !(st.st_mode & S_ISVTX)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "--api_socket: %s is writable by every user (mode %o): anyone could replace the socket; use a "
        "directory only lbd's user (and group) may write to", dir, st.st_mode & 07777));
  }
  return absl::OkStatus();
}

// What the API flags ask for is allowed and possible: checked before anything starts.
absl::Status ValidateApiFlags() {
  if (!FLAGS_api_socket.empty()) {
    const size_t slash = FLAGS_api_socket.rfind('/');
    const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : FLAGS_api_socket.substr(0, slash);
    if (absl::Status s = CheckSocketDirectory(dir); !s.ok()) return s;
    if (!FLAGS_api_socket_group.empty() && getgrnam(FLAGS_api_socket_group.c_str()) == nullptr) {
      return absl::InvalidArgumentError(absl::StrFormat("--api_socket_group: no group %s", FLAGS_api_socket_group));
    }
  }
  if (!FLAGS_api_address.empty()) {
    if (FLAGS_tls_cert.empty() || FLAGS_tls_key.empty()) {
      return absl::InvalidArgumentError("--api_address needs --tls_cert and --tls_key (the TCP API is TLS only)");
    }
    if (FLAGS_tls_client_ca.empty() && !FLAGS_api_insecure_no_client_auth) {
      return absl::InvalidArgumentError(
          "--api_address needs --tls_client_ca (clients must present a certificate it signed): without it "
          "anyone who reaches the port administers lbd. --api_insecure_no_client_auth allows that");
    }
  }
  return absl::OkStatus();
}

std::unique_ptr<grpc::Server> StartApi(LoadBalancerService* service, const Limits& limits) {
  grpc::ServerBuilder builder;
  builder.RegisterService(service);
  builder.SetMaxReceiveMessageSize(ApiMessageLimit(limits));
  if (!FLAGS_api_socket.empty()) {
    unlink(FLAGS_api_socket.c_str());  // a stale socket of an earlier run
    builder.AddListeningPort("unix:" + FLAGS_api_socket, grpc::InsecureServerCredentials());
  }
  if (!FLAGS_api_address.empty()) {
    if (FLAGS_tls_client_ca.empty()) {
      LOG(WARNING) << "INSECURE: the API on " << FLAGS_api_address << " does not authenticate its clients "
                   << "(--api_insecure_no_client_auth): anyone who reaches it administers lbd";
    }
    grpc::SslServerCredentialsOptions tls(
        FLAGS_tls_client_ca.empty() ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                                    : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    if (!FLAGS_tls_client_ca.empty()) tls.pem_root_certs = ReadFile(FLAGS_tls_client_ca);
    tls.pem_key_cert_pairs.push_back({ReadFile(FLAGS_tls_key), ReadFile(FLAGS_tls_cert)});
    builder.AddListeningPort(FLAGS_api_address, grpc::SslServerCredentials(tls));
  }
  // The socket is born 0660 (the umask applies when gRPC binds it), so no other user can
  // connect in the moment before a chmod.
  const mode_t old_umask = umask(0117);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  umask(old_umask);
  if (server == nullptr) LOG(FATAL) << "cannot start the gRPC API";
  if (!FLAGS_api_socket.empty()) {
    if (!FLAGS_api_socket_group.empty()) {
      const group* g = getgrnam(FLAGS_api_socket_group.c_str());
      if (g == nullptr) LOG(FATAL) << "--api_socket_group: no group " << FLAGS_api_socket_group;
      if (chown(FLAGS_api_socket.c_str(), uid_t(-1), g->gr_gid) != 0) {
        LOG(FATAL) << "--api_socket_group: chown " << FLAGS_api_socket << ": " << std::strerror(errno);
      }
    }
    LOG(INFO) << "API on unix:" << FLAGS_api_socket << " (mode 0660"
              << (FLAGS_api_socket_group.empty() ? "" : ", group " + FLAGS_api_socket_group) << ")";
  }
  if (!FLAGS_api_address.empty()) {
    LOG(INFO) << "API on " << FLAGS_api_address << " (TLS"
              << (FLAGS_tls_client_ca.empty() ? ", clients NOT authenticated)" : ", client certificates required)");
  }
  return server;
}

// The addresses of the host's interfaces (getifaddrs), e.g. its management NIC's.
std::vector<IpAddress> HostAddresses() {
  std::vector<IpAddress> out;
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return out;
  for (const ifaddrs* i = list; i != nullptr; i = i->ifa_next) {
    if (i->ifa_addr == nullptr) continue;
    char text[INET6_ADDRSTRLEN] = {};
    if (i->ifa_addr->sa_family == AF_INET) {
      inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(i->ifa_addr)->sin_addr, text, sizeof(text));
    } else if (i->ifa_addr->sa_family == AF_INET6) {
      inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(i->ifa_addr)->sin6_addr, text, sizeof(text));
    } else {
      continue;
    }
    if (auto a = IpAddress::Parse(text)) out.push_back(*a);
  }
  freeifaddrs(list);
  return out;
}

bool HasArgument(int argc, char** argv, std::initializer_list<const char*> names) {
  for (int i = 1; i < argc; ++i) {
    for (const char* name : names) {
      if (!std::strcmp(argv[i], name)) return true;
    }
  }
  return false;
}

// The CPUs this process may run on (its affinity mask: what the kubelet's CPU manager
// gave the container), as an EAL lcore list ("2,3,5").
std::string AllowedCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return "";
  std::vector<int> cpus;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
  }
  return absl::StrJoin(cpus, ",");
}

// EAL's arguments with `-l` added when they choose no lcores: one lcore per CPU this
// process may run on, so that lbd runs where it was placed rather than on CPUs 0..N.
std::vector<char*> WithDefaultLcores(int argc, char** argv, std::string* storage) {
  std::vector<char*> out(argv, argv + argc);
  for (int i = 1; i < argc && std::strcmp(argv[i], "--") != 0; ++i) {
    const std::string_view a = argv[i];
    if (a.starts_with("-l") || a.starts_with("-c") || a.starts_with("--lcores")) return out;
  }
  *storage = AllowedCpus();
  if (storage->empty()) return out;
  out.insert(out.begin() + 1, {const_cast<char*>("-l"), storage->data()});
  return out;
}

// Releases EAL and removes the directories it made, then returns `code`.
int ExitAfterEal(int code) {
  dataplane::dpdk::CleanUpEal();
  return code;
}

int Main(int argc, char** argv) {
  gflags::SetUsageMessage(
      "lbd [EAL options] -- [lbd options]\n\n"
      "The load balancer appliance. EAL options come first: -l LCORES (the first is the main "
      "lcore, each other one runs a worker), -a PCI_ADDRESS or --vdev DEVARGS for the port, "
      "memory (--no-huge -m MB, or hugepages). lbd options may also come from a file: "
      "--flagfile=/etc/lbd/lbd.flags, one --flag=value a line (several --flagfile: read in "
      "order, a later value wins). Without -l, -c or --lcores lbd takes one lcore per CPU it "
      "may run on (its affinity mask). See docs/lbd.md.");
  gflags::SetVersionString(std::string(BuildVersion()));
  if (HasArgument(argc, argv, {"--help", "-h"})) {
    gflags::ShowUsageWithFlagsRestrict(argv[0], "control/lbd/main.cc");
    return 0;
  }
  if (HasArgument(argc, argv, {"--version"})) {
    std::printf("lbd %s\n", std::string(BuildVersion()).c_str());
    return 0;
  }
  std::string lcores;
  std::vector<char*> eal_argv = WithDefaultLcores(argc, argv, &lcores);
  const int eal_args = dataplane::dpdk::InitEal(int(eal_argv.size()), eal_argv.data());
  if (eal_args < 0) {
    std::fprintf(stderr, "lbd: EAL initialisation failed: %s\n", rte_strerror(rte_errno));
    return 1;
  }
  // rte_eal_init may have permuted eal_argv; what follows its arguments is lbd's.
  argc = int(eal_argv.size()) - eal_args;
  argv = eal_argv.data() + eal_args;
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  FLAGS_logtostderr = true;
  google::InitGoogleLogging("lbd");
  LOG(INFO) << "lbd " << BuildVersion()
            << (lcores.empty() ? "" : ", lcores " + lcores + " (the CPUs it may run on; -l chooses others)");
  if (FLAGS_port.empty()) {
    LOG(ERROR) << "--port is required (after --): the EAL name of the wire port";
    return ExitAfterEal(2);
  }
  if (FLAGS_flow_capacity == 0 || FLAGS_flow_capacity > dataplane::FlowTable::kMaxCapacity) {
    LOG(ERROR) << "--flow_capacity=" << FLAGS_flow_capacity << ": must be 1 .. " << dataplane::FlowTable::kMaxCapacity;
    return ExitAfterEal(2);
  }
  std::string flow_hash_secret;
  auto settings = SettingsFromFlags(&flow_hash_secret);
  if (!settings.ok()) {
    LOG(ERROR) << settings.status().message();
    return ExitAfterEal(2);
  }
  if (absl::Status s = ValidateApiFlags(); !s.ok()) {
    LOG(ERROR) << s.message();
    return ExitAfterEal(2);
  }
  if (!FLAGS_state_dir.empty()) {
    struct stat st;
    if ((mkdir(FLAGS_state_dir.c_str(), 0700) != 0 && errno != EEXIST) || stat(FLAGS_state_dir.c_str(), &st) != 0 ||
        !S_ISDIR(st.st_mode)) {
      LOG(ERROR) << "--state_dir: " << FLAGS_state_dir << " is not a directory lbd can make or use";
      return ExitAfterEal(2);
    }
  }
  RuntimeOptions ro;
  ro.port = FLAGS_port;
  ro.af_packet_frames = FLAGS_af_packet_frames;
  ro.tap_name = FLAGS_tap;
  for (absl::string_view part : absl::StrSplit(FLAGS_tap_addresses, ',', absl::SkipWhitespace())) {
    const auto a = InterfaceAddress::Parse(std::string_view(part.data(), part.size()));
    if (!a) {
      LOG(ERROR) << "--tap_addresses: \"" << part << "\" is not ADDRESS/LENGTH (10.90.0.2/24)";
      return ExitAfterEal(2);
    }
    ro.tap_addresses.push_back(*a);
  }
  ro.flow_capacity = FLAGS_flow_capacity;
  ro.mbufs = FLAGS_mbufs;
  ro.idle_polls = FLAGS_idle_polls;
  ro.idle_sleep_us = FLAGS_idle_sleep_us;
  ro.vlan = uint16_t(FLAGS_vlan);
  ro.nat_addresses = uint32_t(settings->nat.addresses.size());
  ro.nat_port_min = settings->nat.port_min;
  ro.nat_port_max = settings->nat.port_max;
  ro.flow_hasher = settings->flow_hasher;
  if (!FLAGS_gateway.empty()) {
    ro.gateway = IpAddress::Parse(FLAGS_gateway);
    if (!ro.gateway) {
      LOG(ERROR) << "--gateway: \"" << FLAGS_gateway << "\" is not an IP address";
      return ExitAfterEal(2);
    }
  }
  if (!FLAGS_gateway_mac.empty()) {
    ro.gateway_mac = ParseMac(FLAGS_gateway_mac);
    if (!ro.gateway_mac) {
      LOG(ERROR) << "--gateway_mac: \"" << FLAGS_gateway_mac << "\" is not a MAC address";
      return ExitAfterEal(2);
    }
  }
  if (!ro.gateway && !ro.gateway_mac) {
    LOG(ERROR) << "give --gateway (resolved through the kernel) or --gateway_mac";
    return ExitAfterEal(2);
  }
  // One list may serve every node of the group: a node skips its own addresses in it,
  // --tap_addresses and those of the host's interfaces (a management NIC's), for the sync
  // thread and for the workers' control-traffic classification alike.
  const bool sync_configured = !settings->flow_sync_peers.empty();
  const std::vector<IpAddress> host_addresses = HostAddresses();
  std::erase_if(settings->flow_sync_peers, [&](const IpAddress& peer) {
    return std::ranges::find(host_addresses, peer) != host_addresses.end() ||
           std::ranges::any_of(ro.tap_addresses, [&](const InterfaceAddress& a) { return a.address == peer; });
  });
  if (sync_configured && settings->flow_sync_peers.empty()) {
    LOG(ERROR) << "--flow_sync_peers names only this node's own addresses (--tap_addresses, the host's interfaces)";
    return ExitAfterEal(2);
  }
  ro.flow_sync.peers = settings->flow_sync_peers;
  const uint32_t shortest_timeout = std::min(settings->timeouts.udp, settings->timeouts.tcp_established);
  if (FLAGS_flow_sync_refresh_ms < 100 || FLAGS_flow_sync_refresh_ms >= shortest_timeout) {
    LOG(ERROR) << "--flow_sync_refresh_ms: from 100 to less than the UDP and established TCP timeouts ("
               << shortest_timeout << " ms)";
    return ExitAfterEal(2);
  }
  ro.flow_sync.port = uint16_t(FLAGS_flow_sync_port);
  ro.flow_sync.key = dataplane::flow_sync::KeyFromSecret(flow_hash_secret);
  ro.flow_sync_refresh_ms = FLAGS_flow_sync_refresh_ms;
  ro.flow_sync_nat_sessions = FLAGS_flow_sync_nat_sessions;
  // The journal keeps a flow as long as a learned entry lives (its timeout and an
  // interval), and as many as a worker's table holds: the flows of the whole group.
  ro.flow_sync.journal = {.tcp_ttl_ms = settings->timeouts.tcp_established + FLAGS_flow_sync_refresh_ms,
                          .udp_ttl_ms = settings->timeouts.udp + FLAGS_flow_sync_refresh_ms,
                          .capacity = FLAGS_flow_capacity};

  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  const uint32_t workers = rte_lcore_count() - 1;
  auto store = dataplane::SnapshotStore::Create(std::max(1u, workers));
  CHECK(store.ok()) << store.status();
  auto runtime = Runtime::Start(ro, store->get());
  if (!runtime.ok()) {
    LOG(ERROR) << runtime.status().message();
    return ExitAfterEal(1);
  }
  settings->next_hop = (*runtime)->InitialNextHop();
  ControlCore core(*settings, store->get(), runtime->get());
  if (absl::Status s = core.Start(); !s.ok()) LOG(FATAL) << "initial configuration: " << s;
  if (FLAGS_await_first_apply) core.AwaitFirstApply();
  if (!FLAGS_state_dir.empty()) {
    if (absl::Status s = core.PersistDrainIn(FLAGS_state_dir + "/drained"); !s.ok()) {
      LOG(FATAL) << "--state_dir: " << s.message();
    }
    if (core.GetHealth().drained) LOG(WARNING) << "drained by the operator (recorded in " << FLAGS_state_dir << ")";
  }
  g_core.store(&core, std::memory_order_release);
  rte_telemetry_register_cmd("/lb/stats", TelemetryStats, "lbd counters summed over workers");
  rte_telemetry_register_cmd("/lb/health", TelemetryHealth, "lbd health");
  if (rte_pdump_init() != 0) {
    LOG(WARNING) << "rte_pdump_init: " << rte_strerror(rte_errno)
                 << ": dpdk-dumpcap cannot capture (it needs EAL's shared config: not --no-shconf)";
  }

  LoadBalancerService service(&core);
  std::unique_ptr<grpc::Server> api = StartApi(&service, settings->limits);
  std::unique_ptr<HttpEndpoint> metrics =
      FLAGS_metrics_address.empty() ? nullptr : StartMetrics(FLAGS_metrics_address, &core);
  LOG(INFO) << "lbd running with " << workers << " worker(s); SIGTERM or SIGINT stops it";

  (*runtime)->RunMain(&core, g_stop);

  LOG(INFO) << "stopping";
  g_core.store(nullptr, std::memory_order_release);
  api->Shutdown();
  metrics.reset();
  (*runtime)->StopWorkers();
  runtime->reset();
  if (!FLAGS_api_socket.empty()) unlink(FLAGS_api_socket.c_str());
  rte_pdump_uninit();
  LOG(INFO) << "stopped";
  return ExitAfterEal(0);
}

}  // namespace
}  // namespace lb::control

int main(int argc, char** argv) { return lb::control::Main(argc, argv); }
