#include "control/lbd/flags.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <gflags/gflags.h>
#include <glog/logging.h>

#include "absl/strings/ascii.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "control/lbd/host_interface.h"
#include "dataplane/flow_sync_wire.h"
#include "dataplane/flow_table.h"

DEFINE_string(port, "",
              "The wire port: af_packet:IFACE (lbd's own AF_PACKET port on kernel interface IFACE, "
              "for nodes without a DPDK NIC: VMs, veth), or the EAL name of a DPDK port: a PCI "
              "address (0000:3b:00.0, bound to vfio-pci and allowed with -a) or a virtual device "
              "from --vdev. Required.");
DEFINE_uint32(af_packet_frames, 512,
              "af_packet port: RX ring frames per worker, 64 kB each (a GSO frame "
              "of the kernel's fits one): 512 frames take 32 MB a worker.");
DEFINE_string(tap, "lb0",
              "Kernel interface of the exception path (ARP/ND, BGP, BFD, ICMP to "
              "the node, all traffic not for a VIP). Give it the node's addresses.");
DEFINE_string(sysctl_dir, "/proc/sys",
              "Where lbd keeps the kernel's IP stack off the uplink (net/ipv4/conf/IFACE/forwarding, arp_ignore, "
              "rp_filter, net/ipv6/conf/IFACE/disable_ipv6). An unprivileged container's /proc/sys is read-only: "
              "mount the node's /proc/sys/net elsewhere (a hostPath) and name its parent, e.g. /host/proc/sys.");
DEFINE_string(tap_addresses, "",
              "Comma-separated ADDRESS/LENGTH (10.90.0.2/24) lbd gives --tap at start, and sets "
              "it up: the node's addresses on the wire's network (BGP, BFD, ARP), again after "
              "every restart. Empty: the operator configures the interface.");
DEFINE_string(gateway, "",
              "IPv4 or IPv6 address of the next hop toward the backends. Its MAC "
              "is read from the kernel's neighbour table on --tap.");
DEFINE_string(gateway_mac, "", "MAC of the next hop, instead of resolving --gateway.");
DEFINE_uint32(vlan, 0, "802.1Q VLAN ID for encapsulated packets (0: untagged).");
DEFINE_string(encap_source_v4, "",
              "Outer IPv4 source addresses, as a prefix whose host bits "
              "vary per flow (10.255.0.0/24), or one address (/32).");
DEFINE_string(encap_source_v6, "", "Outer IPv6 source addresses, as --encap_source_v4.");
DEFINE_uint32(gue_port, 6080, "UDP destination port of GUE encapsulation.");
DEFINE_uint32(mtu, 1500, "IP MTU toward the backends.");
DEFINE_uint32(icmp_too_big_per_second, 100, "ICMP too-big errors a worker may send a second.");
DEFINE_string(vip_cidrs, "",
              "Comma-separated CIDRs this node announces (lb-bird-gen's vip_prefixes). A packet to "
              "one of them that matches no VIP is dropped (no_vip) instead of reaching the kernel; "
              "the node's own addresses must be outside them. Empty: none.");
DEFINE_uint32(exception_pps, 10000,
              "Packets a worker hands to the kernel a second that are neither neighbour discovery, routing nor "
              "flow sync (ICMP to the node, SSH, ...). Each of those has a budget of its own, so that a flood of one "
              "cannot crowd out another. 0: no limit.");
DEFINE_uint32(exception_neighbor_pps, 10000,
              "ARP and IPv6 neighbour discovery (hop limit 255 only) a worker hands to the kernel a second. "
              "0: no limit.");
DEFINE_uint32(exception_routing_pps, 10000,
              "BGP and BFD from --control_peers with TTL 255 (GTSM) a worker hands to the kernel a second. "
              "0: no limit.");
DEFINE_uint32(exception_sync_pps, 50000,
              "Flow-sync datagrams from --flow_sync_peers a worker hands to the kernel a second. 0: no limit.");
DEFINE_string(flow_hash_secret_file, "",
              "File holding the cluster's flow-hash secret (at least 16 bytes; trailing whitespace is ignored). "
              "Every LB node of a cluster must read the same secret. With it, the flow hash is keyed by the "
              "secret, so nobody outside can choose 5-tuples that land on one backend; without it, it is the "
              "public CRC32C hash. Changing it moves flows as a change of every backend set would.");
DEFINE_string(control_peers, "",
              "Required: comma-separated addresses of the node's BGP and BFD peers (its ToRs, lb-bird-gen's peers), "
              "or none when the node runs no BGP. Only their BGP and BFD, with TTL 255 (GTSM: BIRD's ttl security, "
              "and the ToR's), take the routing budget (--exception_routing_pps); the same ports from anyone else "
              "share --exception_pps, and a peer's with a lower TTL is dropped (off_link_control).");
DEFINE_string(flow_sync_peers, "",
              "Comma-separated LB nodes of this node's ECMP group, this node among them, each as ADDRESS or "
              "ADDRESS=SNAT[+SNAT...]: the address flow sync runs between (the management NIC's) and the node's "
              "--snat_addresses, which with this node's are the only ones its announced NAT sessions may name "
              "(required of every node when this one does NAT). One list serves every node: a node finds itself by its "
              "own addresses "
              "(--tap_addresses, the host's interfaces), binds to that one and skips it. lbd tells the others the "
              "flows it pins and learns theirs (UDP --flow_sync_port, authenticated with the "
              "--flow_hash_secret_file secret, which it then needs), so that a connection ECMP moves to another node "
              "keeps its backend, also after the backend set changed (docs/flow-sync.md). Empty: no flow sync.");
DEFINE_uint32(flow_sync_port, 7300, "UDP port of flow sync, the same on every node.");
DEFINE_uint32(flow_sync_max_skew_ms, 5000,
              "Flow sync: how far the LB nodes' clocks may disagree (keep them in step with NTP). A datagram is "
              "taken only when dated within this of the receiver's clock, and newer than the sender's last: "
              "captured datagrams replayed later are refused (datagrams_stale, datagrams_replayed).");
DEFINE_uint32(flow_sync_learn_pps, 1000000,
              "Flow sync: flows and NAT sessions taken from one peer a second (beyond: flows_over_budget), so that "
              "no peer fills the workers' learn rings. A peer sends a dump at about 730,000 IPv4 flows a second.");
DEFINE_uint32(flow_sync_refresh_ms, 5000,
              "Flow sync: an active flow is announced again this often. A (re)started "
              "node reports healthy only this long (and a second) after it starts, "
              "having learned the peers' active flows by then.");
DEFINE_uint32(flow_sync_nat_sessions, 65536,
              "Flow sync: the NAT sessions of the peer nodes each worker can adopt (about 128 bytes each, and two "
              "flow-table entries), so that a NAT connection survives its node (docs/flow-sync.md). Size it for the "
              "peers' live NAT sessions; what does not fit is counted as nat_adopted_full.");
DEFINE_uint32(flow_capacity, 1u << 20,
              "Flow-table capacity of each worker (64 bytes a flow; rounded up to a power of two).");
DEFINE_uint32(tcp_established_timeout, 300, "Idle timeout of established TCP flows, seconds.");
DEFINE_uint32(udp_timeout, 30, "Idle timeout of UDP flows, seconds.");
DEFINE_uint32(tcp_syn_timeout, 10, "Idle timeout of TCP flows that have seen only a SYN, seconds.");
DEFINE_uint32(tcp_closing_timeout, 10, "Idle timeout of TCP flows after a FIN or RST, seconds.");
DEFINE_string(snat_addresses, "",
              "NAT mode: comma-separated source addresses (IPv4 and/or IPv6, at most 16) "
              "that connections to backends come from; route them to this node. Empty: no NAT services.");
DEFINE_string(snat_ports, "1024-65535",
              "NAT mode: the source ports of each SNAT address, shared out over the "
              "workers (port p to worker (p - first) % workers).");
DEFINE_uint32(idle_polls, 0,
              "Idle back-off: after this many empty polls a worker sleeps "
              "--idle_sleep_us between polls until traffic returns. 0 busy-polls "
              "(production); tests and demos use e.g. 100.");
DEFINE_uint32(idle_sleep_us, 100, "Sleep between polls of an idle worker, microseconds.");
DEFINE_uint32(mbufs, 16383, "Packet buffers in the pool.");
DEFINE_string(api_socket, "/run/lbd/lbd.sock", "Unix socket of the gRPC API, mode 0660. Empty: none.");
DEFINE_string(api_address, "", "host:port of the gRPC API over TCP with TLS. Empty: none.");
DEFINE_string(tls_cert, "", "PEM certificate chain for --api_address.");
DEFINE_string(tls_key, "", "PEM private key for --api_address.");
DEFINE_string(tls_client_ca, "",
              "PEM CA bundle: API clients over TCP must present a certificate it "
              "signed. Required with --api_address unless --api_insecure_no_client_auth.");
DEFINE_bool(api_insecure_no_client_auth, false,
            "Serve --api_address without client certificates: anyone who reaches the port administers "
            "lbd. Only for a port that nothing untrusted can reach.");
DEFINE_string(api_socket_group, "",
              "Group that owns --api_socket (mode 0660), e.g. the one lb-k8s-watcher "
              "and lb-bird-gen run in. Empty: lbd's own.");
DEFINE_string(metrics_address, "",
              "host:port of GET /metrics (Prometheus) and GET /healthz (200 while healthy, "
              "else 503 with the problems). The manifest's: the node's address, port 7310. Empty: none.");
DEFINE_uint32(metrics_top_backends, 0,
              "Backends exported one by one on /metrics (lb_backend_packets_total, _bytes_total, "
              "_maglev_entries): the N of all services sent the most packets. 0: none, every service's totals "
              "only (7 series a service). A backend's series come and go as it enters and leaves the N.");
DEFINE_bool(drop_capabilities, true,
            "Once started (every device and socket open), keep only NET_ADMIN, NET_RAW and IPC_LOCK, in every "
            "thread, with no way back (no_new_privs, the bounding set): lbd parses the network's packets for as "
            "long as it runs. false: keep what it was given (debugging only).");
DEFINE_bool(await_first_apply, false,
            "Report unhealthy (so lb-bird-gen announces nothing) until the first Apply: "
            "the whole configuration lb-k8s-watcher sends once it has listed the cluster. For nodes the "
            "watcher configures; without it a (re)started node announces with no services.");
DEFINE_string(state_dir, "",
              "Directory of what must survive a restart of lbd: the operator's drain (file "
              "`drained`). Empty: nothing survives.");
DEFINE_uint32(max_services, 4096, "Most services.");
DEFINE_uint32(max_backends_per_service, 65535, "Most backends in one service.");
DEFINE_uint32(max_backends_total, 1u << 20, "Most backends in all.");
DEFINE_string(backend_cidrs, "",
              "Comma-separated prefixes backends must be in (e.g. the cluster's pod and "
              "node CIDRs). Empty: any unicast address that is not a VIP or one of this node's.");
DEFINE_uint64(max_table_memory, uint64_t{1} << 30,
              "Most bytes of Maglev tables and backend records of all services together (a "
              "service counts 2 bytes a table entry and 128 a backend; lbctl stats shows the use).");

namespace lb::control {
namespace {

// 128 bits of a random secret; a shorter one could be guessed from the backends flows land on.
constexpr size_t kMinFlowHashSecret = 16;

// Trailing whitespace (a newline from `echo`) is not part of the secret, so that files
// written either way give every node the same hash.
absl::StatusOr<FlowHasher> FlowHasherFromFlags(std::string* secret_out) {
  if (FLAGS_flow_hash_secret_file.empty()) {
    LOG(WARNING) << "flow hash: public (crc32c): anyone can choose 5-tuples that land on one backend; give every "
                    "node of the cluster the same --flow_hash_secret_file (docs/security.md)";
    return FlowHasher{};
  }
  std::ifstream in(FLAGS_flow_hash_secret_file, std::ios::binary);
  if (!in)
    return absl::InvalidArgumentError(
        absl::StrFormat("--flow_hash_secret_file: cannot read %s", FLAGS_flow_hash_secret_file));
  std::string secret((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!secret.empty() && absl::ascii_isspace(static_cast<unsigned char>(secret.back()))) secret.pop_back();
  if (secret.size() < kMinFlowHashSecret) {
    return absl::InvalidArgumentError(
        absl::StrFormat("--flow_hash_secret_file: %s holds %d bytes; the secret needs at least %d",
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
// --flow_sync_peers: ADDRESS[=SNAT[+SNAT...]], comma-separated.
absl::StatusOr<std::vector<FlowSyncer::PeerOptions>> SyncPeers(const std::string& text) {
  std::vector<FlowSyncer::PeerOptions> out;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    const std::pair<absl::string_view, absl::string_view> peer = absl::StrSplit(part, absl::MaxSplits('=', 1));
    FlowSyncer::PeerOptions p;
    const auto a = IpAddress::Parse(std::string_view(peer.first.data(), peer.first.size()));
    if (!a)
      return absl::InvalidArgumentError(absl::StrFormat("--flow_sync_peers: \"%s\" is not an IP address", peer.first));
    p.address = *a;
    for (absl::string_view snat : absl::StrSplit(peer.second, '+', absl::SkipEmpty())) {
      const auto s = IpAddress::Parse(std::string_view(snat.data(), snat.size()));
      if (!s) {
        return absl::InvalidArgumentError(
            absl::StrFormat("--flow_sync_peers: %s: \"%s\" is not an SNAT address", peer.first, snat));
      }
      p.snat_addresses.push_back(*s);
    }
    if (std::ranges::find(out, p.address, &FlowSyncer::PeerOptions::address) != out.end()) {
      return absl::InvalidArgumentError(absl::StrFormat("--flow_sync_peers: %s twice", peer.first));
    }
    out.push_back(std::move(p));
  }
  return out;
}

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
    auto p = IpPrefix::Parse(
        text.find('/') == std::string::npos ? text + (text.find(':') == std::string::npos ? "/32" : "/128") : text);
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
  n.exception_budgets[ExceptionClass::kOther] = FLAGS_exception_pps;
  n.exception_budgets[ExceptionClass::kNeighbor] = FLAGS_exception_neighbor_pps;
  n.exception_budgets[ExceptionClass::kRouting] = FLAGS_exception_routing_pps;
  n.exception_budgets[ExceptionClass::kFlowSync] = FLAGS_exception_sync_pps;
  // Never "by port alone": then anyone could spend the routing budget.
  if (FLAGS_control_peers.empty()) {
    return absl::InvalidArgumentError(
        "--control_peers: required: the node's BGP and BFD peers (its ToRs, lb-bird-gen's peers), or none when the "
        "node runs no BGP");
  }
  if (FLAGS_control_peers != "none") {
    auto control_peers = AddressList("control_peers", FLAGS_control_peers);
    if (!control_peers.ok()) return control_peers.status();
    n.control_peers = *std::move(control_peers);
  }
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
    return absl::InvalidArgumentError(
        absl::StrFormat("--snat_ports: \"%s\" is not FIRST-LAST within 1-65535", FLAGS_snat_ports));
  }
  n.nat.port_min = uint16_t(lo);
  n.nat.port_max = uint16_t(hi);
  n.limits = {FLAGS_max_services, FLAGS_max_backends_per_service, FLAGS_max_backends_total, FLAGS_max_table_memory};
  for (absl::string_view part : absl::StrSplit(FLAGS_backend_cidrs, ',', absl::SkipWhitespace())) {
    auto p = IpPrefix::Parse(std::string_view(part.data(), part.size()));
    if (!p) return absl::InvalidArgumentError(absl::StrFormat("--backend_cidrs: \"%s\" is not a prefix", part));
    n.limits.backend_cidrs.push_back(*p);
  }
  if (FLAGS_vlan > 4094) return absl::InvalidArgumentError("--vlan: 0..4094");
  auto hasher = FlowHasherFromFlags(flow_hash_secret);
  if (!hasher.ok()) return hasher.status();
  n.flow_hasher = *hasher;
  if (absl::Status s = ValidateNode(n); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrFormat("flags: %s", s.message()));
  }
  return n;
}

absl::StatusOr<RuntimeOptions> RuntimeOptionsFromFlags(NodeSettings& settings, const std::string& flow_hash_secret) {
  if (FLAGS_port.empty())
    return absl::InvalidArgumentError("--port is required (after --): the EAL name of the wire port");
  if (FLAGS_flow_capacity == 0 || FLAGS_flow_capacity > dataplane::FlowTable::kMaxCapacity) {
    return absl::InvalidArgumentError(absl::StrFormat("--flow_capacity=%d: must be 1 .. %d", FLAGS_flow_capacity,
                                                      dataplane::FlowTable::kMaxCapacity));
  }
  RuntimeOptions ro;
  ro.port = FLAGS_port;
  ro.af_packet_frames = FLAGS_af_packet_frames;
  ro.tap_name = FLAGS_tap;
  ro.sysctl_dir = FLAGS_sysctl_dir;
  for (absl::string_view part : absl::StrSplit(FLAGS_tap_addresses, ',', absl::SkipWhitespace())) {
    const auto a = InterfaceAddress::Parse(std::string_view(part.data(), part.size()));
    if (!a) {
      return absl::InvalidArgumentError(
          absl::StrFormat("--tap_addresses: \"%s\" is not ADDRESS/LENGTH (10.90.0.2/24)", part));
    }
    ro.tap_addresses.push_back(*a);
  }
  ro.flow_capacity = FLAGS_flow_capacity;
  // Twice the limits: a change that replaces every service or backend holds the old ids
  // until the workers have left the snapshots that name them.
  ro.traffic_services = uint32_t(std::min<uint64_t>(2 * uint64_t{FLAGS_max_services}, UINT32_MAX - 1));
  ro.traffic_backends = uint32_t(std::min<uint64_t>(2 * uint64_t{FLAGS_max_backends_total}, UINT32_MAX - 1));
  ro.mbufs = FLAGS_mbufs;
  ro.idle_polls = FLAGS_idle_polls;
  ro.idle_sleep_us = FLAGS_idle_sleep_us;
  ro.vlan = uint16_t(FLAGS_vlan);
  ro.nat_addresses = uint32_t(settings.nat.addresses.size());
  ro.nat_port_min = settings.nat.port_min;
  ro.nat_port_max = settings.nat.port_max;
  ro.flow_hasher = settings.flow_hasher;
  if (!FLAGS_gateway.empty()) {
    ro.gateway = IpAddress::Parse(FLAGS_gateway);
    if (!ro.gateway)
      return absl::InvalidArgumentError(absl::StrFormat("--gateway: \"%s\" is not an IP address", FLAGS_gateway));
  }
  if (!FLAGS_gateway_mac.empty()) {
    ro.gateway_mac = ParseMac(FLAGS_gateway_mac);
    if (!ro.gateway_mac) {
      return absl::InvalidArgumentError(
          absl::StrFormat("--gateway_mac: \"%s\" is not a MAC address", FLAGS_gateway_mac));
    }
  }
  if (!ro.gateway && !ro.gateway_mac) {
    return absl::InvalidArgumentError("give --gateway (resolved through the kernel) or --gateway_mac");
  }
  // One list serves every node of the group: a node finds itself in it by its own
  // addresses (--tap_addresses, the host's interfaces: a management NIC's), for the sync
  // thread and for the workers' control-traffic classification alike.
  auto sync_peers = SyncPeers(FLAGS_flow_sync_peers);
  if (!sync_peers.ok()) return sync_peers.status();
  if (FLAGS_flow_sync_port == 0 || FLAGS_flow_sync_port > 65535) {
    return absl::InvalidArgumentError("--flow_sync_port: 1..65535");
  }
  if (!sync_peers->empty() && flow_hash_secret.empty()) {
    return absl::InvalidArgumentError(
        "--flow_sync_peers needs --flow_hash_secret_file: its secret authenticates the "
        "peers' datagrams (and the nodes must agree on the flow hash anyway)");
  }
  // Never a backend: the node's own addresses and its peers'.
  const std::vector<IpAddress> host_addresses = HostAddresses();
  std::vector<IpAddress>& never_backends = settings.limits.node_addresses;
  never_backends = host_addresses;
  for (const InterfaceAddress& t : ro.tap_addresses) never_backends.push_back(t.address);
  for (const FlowSyncer::PeerOptions& p : *sync_peers) never_backends.push_back(p.address);
  if (!sync_peers->empty()) {
    auto own = [&](const IpAddress& a) {
      return std::ranges::find(host_addresses, a) != host_addresses.end() ||
             std::ranges::any_of(ro.tap_addresses, [&](const InterfaceAddress& t) { return t.address == a; });
    };
    std::vector<FlowSyncer::PeerOptions> selves;
    for (FlowSyncer::PeerOptions& p : *sync_peers) {
      (own(p.address) ? selves : ro.flow_sync.peers).push_back(std::move(p));
    }
    if (selves.size() != 1) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "--flow_sync_peers must name this node exactly once (one of its addresses: --tap_addresses, the host's "
          "interfaces), the source of its datagrams; it names %d",
          selves.size()));
    }
    if (ro.flow_sync.peers.empty()) return absl::InvalidArgumentError("--flow_sync_peers names only this node");
    ro.flow_sync.self = selves[0].address;
    ro.flow_sync.self_snat_addresses = settings.nat.addresses;
    // The SNAT addresses tell which peer may announce which NAT sessions.
    const std::vector<IpAddress>& snat = settings.nat.addresses;
    if (!selves[0].snat_addresses.empty() && !std::ranges::is_permutation(selves[0].snat_addresses, snat)) {
      return absl::InvalidArgumentError("--flow_sync_peers: this node's SNAT addresses are not its --snat_addresses");
    }
    for (const FlowSyncer::PeerOptions& p : ro.flow_sync.peers) {
      if (!snat.empty() && p.snat_addresses.empty()) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "--flow_sync_peers: %s names no SNAT address, but this node does NAT (--snat_addresses): write "
            "%s=SNAT, or its NAT sessions cannot be adopted here",
            p.address.ToString(), p.address.ToString()));
      }
      for (const IpAddress& a : p.snat_addresses) {
        if (std::ranges::find(snat, a) != snat.end()) {
          return absl::InvalidArgumentError(absl::StrFormat("--flow_sync_peers: %s's SNAT address %s is this node's",
                                                            p.address.ToString(), a.ToString()));
        }
      }
    }
    // The workers' classification: the peers' datagrams to the port are flow sync.
    for (const FlowSyncer::PeerOptions& p : ro.flow_sync.peers) settings.flow_sync_peers.push_back(p.address);
    settings.flow_sync_port = uint16_t(FLAGS_flow_sync_port);
  }
  ro.flow_sync.max_skew_ms = FLAGS_flow_sync_max_skew_ms;
  ro.flow_sync.learn_per_second = FLAGS_flow_sync_learn_pps;
  const uint32_t shortest_timeout = std::min(settings.timeouts.udp, settings.timeouts.tcp_established);
  if (FLAGS_flow_sync_refresh_ms < 100 || FLAGS_flow_sync_refresh_ms >= shortest_timeout) {
    return absl::InvalidArgumentError(
        absl::StrFormat("--flow_sync_refresh_ms: from 100 to less than the UDP and established TCP timeouts (%d ms)",
                        shortest_timeout));
  }
  ro.flow_sync.port = uint16_t(FLAGS_flow_sync_port);
  ro.flow_sync.key = dataplane::flow_sync::KeyFromSecret(flow_hash_secret);
  ro.flow_sync_refresh_ms = FLAGS_flow_sync_refresh_ms;
  ro.flow_sync_nat_sessions = FLAGS_flow_sync_nat_sessions;
  // The journal keeps a flow as long as a learned entry lives (its timeout and an
  // interval), and as many as a worker's table holds: the flows of the whole group.
  ro.flow_sync.journal = {.tcp_ttl_ms = settings.timeouts.tcp_established + FLAGS_flow_sync_refresh_ms,
                          .udp_ttl_ms = settings.timeouts.udp + FLAGS_flow_sync_refresh_ms,
                          .capacity = FLAGS_flow_capacity};
  return ro;
}

}  // namespace

absl::StatusOr<LbdConfig> ConfigFromFlags() {
  LbdConfig c;
  std::string flow_hash_secret;
  auto settings = SettingsFromFlags(&flow_hash_secret);
  if (!settings.ok()) return settings.status();
  c.settings = *std::move(settings);
  auto runtime = RuntimeOptionsFromFlags(c.settings, flow_hash_secret);
  if (!runtime.ok()) return runtime.status();
  c.runtime = *std::move(runtime);
  c.api = {.socket = FLAGS_api_socket,
           .socket_group = FLAGS_api_socket_group,
           .address = FLAGS_api_address,
           .tls_cert = FLAGS_tls_cert,
           .tls_key = FLAGS_tls_key,
           .tls_client_ca = FLAGS_tls_client_ca,
           .insecure_no_client_auth = FLAGS_api_insecure_no_client_auth};
  if (absl::Status s = ValidateApiServer(c.api); !s.ok()) return s;
  c.metrics_address = FLAGS_metrics_address;
  c.metrics_top_backends = FLAGS_metrics_top_backends;
  c.await_first_apply = FLAGS_await_first_apply;
  c.drop_capabilities = FLAGS_drop_capabilities;
  c.state_dir = FLAGS_state_dir;
  if (!c.state_dir.empty()) {
    struct stat st;
    if ((mkdir(c.state_dir.c_str(), 0700) != 0 && errno != EEXIST) || stat(c.state_dir.c_str(), &st) != 0 ||
        !S_ISDIR(st.st_mode)) {
      return absl::InvalidArgumentError(
          absl::StrFormat("--state_dir: %s is not a directory lbd can make or use", c.state_dir));
    }
  }
  return c;
}

}  // namespace lb::control
