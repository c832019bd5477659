// lbbench: packets per second through the real worker pipeline, on 1..N worker lcores,
// with a reference measured in the same run.
//
//   lbbench [EAL options] -- [options]      e.g. lbbench -l 0-1 --no-huge -m 2048 -- --flows=100000
//
// Live mode (--live_port): the same frames go out of a real or virtual port to a running
// lbd (or to dpdk-testpmd as the reference; bench/live.sh runs both) and lbbench counts
// what comes back (encapsulated packets, when lbd's gateway MAC is lbbench's port).
//
// Each worker lcore takes bursts of 32 mbufs from a pool, copies pre-built frames of its
// own flows into them (as a NIC's DMA would), and runs them through Worker::ProcessBurst;
// what comes out goes back to the pool as a NIC's TX completion returns it (Transmitted).
// The reference does the same with a minimal forward (MAC swap) in place of the
// pipeline, so `ratio` is the pipeline's speed as a share of what the generator and the
// mbuf round trip alone allow on the same cores, in the same run, and `pipeline-ns` is
// the time the pipeline adds to each packet (ns/pkt less the reference's).
// With --updates_per_second the main lcore publishes new snapshots during the run.
#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>

#include <arpa/inet.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <gflags/gflags.h>

#include "absl/strings/str_format.h"
#include "common/config.h"
#include "dataplane/dpdk/eal.h"
#include "dataplane/dpdk/port.h"
#include "dataplane/dpdk/resources.h"
#include "dataplane/snapshot_store.h"
#include "dataplane/worker/worker.h"

DEFINE_uint32(flows, 100000, "Flows in all (split over the cores, as RSS would).");
DEFINE_uint32(flow_capacity, 1u << 20, "Flow-table capacity of each core, as lbd's --flow_capacity (1 .. 268435456).");
DEFINE_string(traffic, "established",
              "established: every flow seen before the measurement "
              "(flow-table hits); syn: every packet a new TCP flow.");
DEFINE_string(proto, "udp", "udp or tcp (syn traffic is always tcp).");
DEFINE_uint32(family, 4, "4 or 6: the client and VIP address family.");
DEFINE_uint32(packet_size, 64, "Frame size in bytes, without CRC (>= the headers).");
DEFINE_uint32(services, 1, "Services (VIPs); flows are spread over them.");
DEFINE_uint32(backends, 16, "Backends per service.");
DEFINE_uint32(source_ranges, 0,
              "Source prefixes of each service (lbd's source_ranges, Kubernetes' loadBalancerSourceRanges): one "
              "holds every client, the others are disjoint decoys, so each packet pays the filter's search over N "
              "ranges. 0: no filter.");
DEFINE_string(mode, "dsr-ipip", "dsr-ipip, dsr-gue or nat.");
DEFINE_uint32(snat_addresses, 16, "nat: SNAT addresses (each has 64512 ports per protocol, shared by the cores).");
DEFINE_string(flow_hash, "crc32c",
              "crc32c (lbd's default) or keyed (lbd --flow_hash_secret_file; a fixed "
              "secret here).");
DEFINE_bool(flow_sync, false,
            "Flow sync on (lbd --flow_sync_peers): the workers announce their flows into a ring, "
            "which the bench core empties after each burst, as lbd's sync thread would elsewhere.");
DEFINE_double(seconds, 2.0, "Measurement time of each of the two loops.");
DEFINE_uint32(updates_per_second, 0, "Snapshots published per second during the pipeline loop.");
// Exit status: 0; 1 setup failed; 2 bad options; 3 established traffic saw drops.
DEFINE_bool(traffic_counters, true,
            "Count each service's and backend's packets and bytes as lbd does (a TrafficTable); false: into "
            "the sink alone (the counting's memory traffic left out), to measure what it costs.");
DEFINE_bool(json, false, "Print JSON instead of a table.");
DEFINE_string(live_port, "",
              "Live mode: the EAL port (e.g. net_af_packet0 of --vdev) wired to a running lbd or "
              "another forwarder. Frames go out of it for --seconds; what comes back is counted.");
DEFINE_string(live_dst_mac, "", "Live mode: destination MAC of the frames (the device under test's port).");
DEFINE_uint32(live_drain_ms, 300, "Live mode: time to keep receiving after the last frame is sent.");

namespace lb::bench {
namespace {

using namespace lb::dataplane;

constexpr uint16_t kBurst = 32;

struct Frame {
  alignas(64) uint8_t bytes[256];  // zero past `len`; copied in whole 64-byte lines
  uint16_t len;
};

struct CoreResult {
  uint32_t lcore = 0;
  uint64_t packets = 0;
  uint64_t cycles = 0;
  uint64_t ref_packets = 0;
  uint64_t ref_cycles = 0;
  uint64_t drops = 0;
  uint64_t hits = 0, misses = 0, full = 0;
  uint64_t announced = 0;  // --flow_sync
};

// Where the next frame of a core's traffic comes from: flow first_flow + next, of service
// `service` (kept in step with `next`, so that no packet costs a division). SYN traffic
// draws client address and port from `fresh` instead: always a new flow.
struct Cursor {
  uint32_t next = 0;
  uint32_t service = 0;
  uint32_t fresh = 0;
};

// A core's traffic: its flows are [first_flow, first_flow + flows); flow f is a frame of
// service f % services (templates[f % services]) from the client address and port
// ClientOf(f). Like a NIC's RX ring, the generator's memory does not grow with the flows.
struct Core {
  uint32_t index;
  std::unique_ptr<Worker> worker;
  std::optional<dpdk::ElemRing> announced;  // --flow_sync
  std::vector<Frame> templates;             // by service
  uint32_t first_flow = 0;
  uint32_t flows = 0;
  CoreResult result;

  Cursor CursorAt(uint32_t next, uint32_t fresh) const {
    return {next, uint32_t((first_flow + next) % templates.size()), fresh};
  }
  // The flow of the cursor's frame, and the cursor moved on to the next.
  uint32_t Advance(Cursor& c) const {
    const uint32_t f = first_flow + c.next;
    if (++c.next == flows) {
      c = CursorAt(0, c.fresh);
    } else if (++c.service == templates.size()) {
      c.service = 0;
    }
    return f;
  }
};

struct Shared {
  rte_mempool* pool;
  SnapshotStore* store;
  uint64_t duration_cycles;
  bool syn;
  std::atomic<bool> go{false};
};
Shared* g_shared;

void PutU16(uint8_t* p, uint16_t v) {
  p[0] = uint8_t(v >> 8);
  p[1] = uint8_t(v);
}

IpAddress VipOf(uint32_t s) {
  if (FLAGS_family == 4) return IpAddress::FromV4(0x0a010000u + s);  // 10.1.x.y
  uint8_t b[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 1};
  b[14] = uint8_t(s >> 8);
  b[15] = uint8_t(s);
  return IpAddress::FromV6Bytes(b);
}

// Flow `id`'s client: 198.18.0.0/15 (2001:db8:ff::/96 for IPv6) onward, 16 ports an address.
struct Client {
  uint32_t address;  // host order; IPv6: the low 32 bits
  uint16_t port;
};
Client ClientOf(uint32_t id) { return {0xc6120000u + (id >> 4), uint16_t(1024 + (id & 15) * 3000)}; }

// Writes flow `id`'s client address and port into a frame built by MakeFrame.
inline void SetClient(uint8_t* frame, uint32_t id, bool v4) {
  const Client c = ClientOf(id);
  uint8_t* ip = frame + 14;
  const uint32_t address_be = htonl(c.address);
  std::memcpy(v4 ? ip + 12 : ip + 8 + 12, &address_be, 4);
  PutU16(ip + (v4 ? 20 : 40), c.port);
}

// A frame of flow `f` to service f % services.
Frame MakeFrame(uint32_t f, bool tcp, uint8_t tcp_flags) {
  Frame fr{};
  uint8_t* p = fr.bytes;
  const uint8_t port_mac[6] = {2, 0, 0, 0, 0, 0xaa}, router_mac[6] = {2, 0, 0, 0, 0, 1};
  std::memcpy(p, port_mac, 6);
  std::memcpy(p + 6, router_mac, 6);
  const bool v4 = FLAGS_family == 4;
  PutU16(p + 12, v4 ? 0x0800 : 0x86dd);
  uint8_t* ip = p + 14;
  const uint16_t l3 = v4 ? 20 : 40, l4 = tcp ? 20 : 8;
  const uint16_t len = std::max<uint16_t>(uint16_t(FLAGS_packet_size), uint16_t(14 + l3 + l4));
  const uint16_t ip_len = uint16_t(len - 14);
  const IpAddress vip = VipOf(f % FLAGS_services);
  if (v4) {
    ip[0] = 0x45;
    PutU16(ip + 2, ip_len);
    PutU16(ip + 6, 0x4000);
    ip[8] = 64;
    ip[9] = tcp ? IPPROTO_TCP : IPPROTO_UDP;
    std::memcpy(ip + 16, vip.V4Bytes(), 4);
  } else {
    ip[0] = 0x60;
    PutU16(ip + 4, uint16_t(ip_len - 40));
    ip[6] = tcp ? IPPROTO_TCP : IPPROTO_UDP;
    ip[7] = 64;
    const uint8_t src[16] = {0x20, 0x01, 0x0d, 0xb8, 0xff};
    std::memcpy(ip + 8, src, 16);
    std::memcpy(ip + 24, vip.bytes.data(), 16);
  }
  uint8_t* l4p = ip + l3;
  PutU16(l4p + 2, tcp ? 80 : 53);
  if (tcp) {
    l4p[12] = 5 << 4;
    l4p[13] = tcp_flags;
  } else {
    PutU16(l4p + 4, uint16_t(ip_len - l3));
  }
  fr.len = len;
  SetClient(fr.bytes, f, v4);
  return fr;
}

// One template per service (flow s is the first of service s).
std::vector<Frame> MakeTemplates(bool tcp, uint8_t tcp_flags) {
  std::vector<Frame> t;
  for (uint32_t s = 0; s < FLAGS_services; ++s) t.push_back(MakeFrame(s, tcp, tcp_flags));
  return t;
}

DataplaneConfig MakeConfig(uint32_t extra_backend) {
  DataplaneConfig c;
  c.encap.source_v4 = *IpPrefix::Parse("10.255.0.0/24");
  c.encap.source_v6 = *IpPrefix::Parse("fd00:ff::/120");
  c.next_hop.gateway_mac = {2, 0, 0, 0, 0, 0xbb};
  c.next_hop.source_mac = {2, 0, 0, 0, 0, 0xaa};
  if (FLAGS_mode == "nat") {
    for (uint32_t a = 0; a < FLAGS_snat_addresses; ++a) c.nat.addresses.push_back(IpAddress::FromV4(0x0afe0001u + a));
  }
  for (uint32_t s = 0; s < FLAGS_services; ++s) {
    ServiceConfig svc;
    svc.vip = VipOf(s);
    const bool tcp = FLAGS_proto == "tcp" || FLAGS_traffic == "syn";
    svc.protocol = tcp ? IPPROTO_TCP : IPPROTO_UDP;
    svc.port = tcp ? 80 : 53;
    svc.mode = FLAGS_mode == "dsr-gue" ? ForwardingMode::kDsrGue
               : FLAGS_mode == "nat"   ? ForwardingMode::kNat
                                       : ForwardingMode::kDsrIpip;
    for (uint32_t b = 0; b < FLAGS_backends + extra_backend; ++b) {
      svc.backends.push_back({IpAddress::FromV4(0x0a020000u + s * 256 + b)});
    }
    if (FLAGS_source_ranges > 0) {
      svc.source_ranges.push_back(*IpPrefix::Parse(FLAGS_family == 6 ? "2001:db8:ff::/96" : "198.18.0.0/15"));
      for (uint32_t r = 1; r < FLAGS_source_ranges; ++r) {
        svc.source_ranges.push_back({IpAddress::FromV4(0x0b000000u + r * 512), 24});  // 11.0.2.0/24, 11.0.4.0/24, ...
      }
    }
    c.services.push_back(svc);
  }
  return c;
}

// Fills a burst of mbufs with the core's traffic from `c` on, as a NIC's DMA would: a
// copy of the service's frame in whole cache lines, then the flow's client address and port.
inline bool Fill(rte_mbuf** m, const Core& core, Cursor& c) {
  if (rte_pktmbuf_alloc_bulk(g_shared->pool, m, kBurst) != 0) return false;
  const bool syn = g_shared->syn, v4 = FLAGS_family == 4;
  for (uint16_t i = 0; i < kBurst; ++i) {
    const Frame& t = core.templates[c.service];
    const uint32_t f = core.Advance(c);
    uint8_t* d = rte_pktmbuf_mtod(m[i], uint8_t*);
    for (uint16_t at = 0; at < t.len; at += 64) std::memcpy(d + at, t.bytes + at, 64);
    m[i]->data_len = t.len;
    m[i]->pkt_len = t.len;
    SetClient(d, syn ? c.fresh++ : f, v4);
  }
  return true;
}

// What a NIC's TX completion does with the frames it sent, on a port where lbd requests
// RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE (every mbuf from one pool, reference count 1): back to
// the pool in bulk, without per-mbuf checks.
inline void Transmitted(rte_mbuf* const* m, uint16_t n) {
  if (n) rte_mempool_put_bulk(g_shared->pool, reinterpret_cast<void* const*>(m), n);
}

int RunCore(void* arg) {
  Core& core = *static_cast<Core*>(arg);
  while (!g_shared->go.load(std::memory_order_acquire)) rte_pause();
  rte_mbuf* m[kBurst];
  Cursor c = core.CursorAt(0, core.index << 24);
  // Reference: the same generator and mbuf round trip, with a MAC swap as the "work".
  uint64_t start = rte_rdtsc(), end = start + g_shared->duration_cycles, packets = 0;
  while (rte_rdtsc() < end) {
    if (!Fill(m, core, c)) continue;
    for (uint16_t i = 0; i < kBurst; ++i) {
      uint8_t* d = rte_pktmbuf_mtod(m[i], uint8_t*);
      uint8_t t[6];
      std::memcpy(t, d, 6);
      std::memcpy(d, d + 6, 6);
      std::memcpy(d + 6, t, 6);
    }
    Transmitted(m, kBurst);
    packets += kBurst;
  }
  core.result.ref_packets = packets;
  core.result.ref_cycles = rte_rdtsc() - start;
  g_shared->store->Quiescent(core.index);

  // The pipeline.
  start = rte_rdtsc();
  end = start + g_shared->duration_cycles;
  packets = 0;
  Millis now = core.worker->Now();
  // New connections only: a simulated millisecond per burst, so that flows time out
  // (10 s of SYN timeout = 10,000 bursts) and their ways (and NAT ports) are reused, as in
  // a steady state of connection churn; otherwise the flow table would fill up and
  // refuse every flow after the first second (and the NAT pool would run dry).
  const bool churn = g_shared->syn;
  while (rte_rdtsc() < end) {
    if (!Fill(m, core, c)) continue;
    BurstOutput out;
    if (churn) ++now;
    core.worker->ProcessBurst(m, kBurst, now, out);
    Transmitted(out.wire.data(), out.num_wire);
    if (out.num_kernel) rte_pktmbuf_free_bulk(out.kernel.data(), out.num_kernel);
    if (core.announced) {
      SyncedFlow taken[kBurst];
      while (rte_ring_sc_dequeue_burst_elem(core.announced->get(), taken, sizeof(SyncedFlow), kBurst, nullptr) != 0) {
      }
    }
    g_shared->store->Quiescent(core.index);
    packets += kBurst;
  }
  core.result.packets = packets;
  core.result.cycles = rte_rdtsc() - start;
  g_shared->store->Offline(core.index);
  return 0;
}

// ---- Live mode ----

struct LiveJob {
  Core* core = nullptr;
  uint16_t port = 0;
  uint64_t sent = 0, received = 0, encapsulated = 0, tx_cycles = 0;
};

// Whether a frame that came back is a DSR encapsulation (an IP-in-IP tunnel or GUE),
// as the dataplane's own parser reads it.
bool IsEncapsulated(const rte_mbuf* m) {
  ParsedPacket p;
  if (Parse(rte_pktmbuf_mtod(m, const uint8_t*), m->data_len, p) != ParseStatus::kOk) return false;
  return p.key.protocol == IPPROTO_IPIP || p.key.protocol == IPPROTO_IPV6 ||
         (p.kind == PacketKind::kUdp && p.key.dst_port_be == rte_cpu_to_be_16(6080));
}

int RunLive(void* arg) {
  auto* job = static_cast<LiveJob*>(arg);
  rte_mbuf* m[kBurst];
  rte_mbuf* rx[kBurst];
  Cursor c = job->core->CursorAt(0, 0);
  auto receive = [&] {
    const uint16_t n = rte_eth_rx_burst(job->port, 0, rx, kBurst);
    for (uint16_t i = 0; i < n; ++i) job->encapsulated += IsEncapsulated(rx[i]);
    job->received += n;
    if (n) rte_pktmbuf_free_bulk(rx, n);
  };
  const uint64_t start = rte_rdtsc(), end = start + g_shared->duration_cycles;
  while (rte_rdtsc() < end) {
    if (Fill(m, *job->core, c)) {
      const uint16_t sent = rte_eth_tx_burst(job->port, 0, m, kBurst);
      job->sent += sent;
      if (sent < kBurst) rte_pktmbuf_free_bulk(m + sent, kBurst - sent);
    }
    receive();
  }
  job->tx_cycles = rte_rdtsc() - start;
  const uint64_t drain_end = rte_rdtsc() + rte_get_tsc_hz() / 1000 * FLAGS_live_drain_ms;
  while (rte_rdtsc() < drain_end) receive();
  return 0;
}

int LiveMain(unsigned lcore, bool tcp) {
  const auto dst = ParseMac(FLAGS_live_dst_mac);
  if (!dst) {
    std::fprintf(stderr, "lbbench: --live_dst_mac: \"%s\" is not a MAC address\n", FLAGS_live_dst_mac.c_str());
    return 2;
  }
  auto port = dpdk::Port::Open(FLAGS_live_port, {.rx_queues = 1, .tx_queues = 1, .pool = g_shared->pool});
  if (!port.ok()) {
    std::fprintf(stderr, "lbbench: %s\n", std::string(port.status().message()).c_str());
    return 1;
  }
  Core core;
  const rte_ether_addr src = (*port)->mac();
  core.templates = MakeTemplates(tcp, g_shared->syn ? kTcpSyn : kTcpAck);
  for (Frame& fr : core.templates) {
    std::memcpy(fr.bytes, dst->data(), 6);
    std::memcpy(fr.bytes + 6, src.addr_bytes, 6);
  }
  core.flows = FLAGS_flows;
  LiveJob job{.core = &core, .port = (*port)->id()};
  rte_eal_remote_launch(RunLive, &job, lcore);
  rte_eal_mp_wait_lcore();
  const double secs = double(job.tx_cycles) / double(rte_get_tsc_hz());
  const double tx = double(job.sent) / secs / 1e6, rx = double(job.received) / secs / 1e6;
  const double loss = job.sent ? 100.0 * (1.0 - double(job.received) / double(job.sent)) : 0;
  if (FLAGS_json) {
    std::printf(
        "{\"live_port\":\"%s\",\"flows\":%d,\"seconds\":%.2f,\"sent\":%lu,\"received\":%lu,"
        "\"encapsulated\":%lu,\"tx_mpps\":%.4f,\"rx_mpps\":%.4f,\"loss_percent\":%.2f}\n",
        FLAGS_live_port.c_str(), FLAGS_flows, secs, (unsigned long)job.sent, (unsigned long)job.received,
        (unsigned long)job.encapsulated, tx, rx, loss);
  } else {
    std::printf("lbbench live: %s -> %s, %d flows, %.1f s\n\n%-10s %-10s %-10s %-12s %8s %8s %7s\n",
                FLAGS_live_port.c_str(), FLAGS_live_dst_mac.c_str(), FLAGS_flows, secs, "sent", "received",
                "encapsulated", "", "tx-Mpps", "rx-Mpps", "loss%");
    std::printf("%-10lu %-10lu %-10lu %-12s %8.3f %8.3f %7.2f\n", (unsigned long)job.sent, (unsigned long)job.received,
                (unsigned long)job.encapsulated, "", tx, rx, loss);
  }
  port->reset();
  return 0;
}

// Everything after EAL's initialisation; `argv` holds lbbench's own options.
int Run(int argc, char** argv) {
  gflags::SetUsageMessage("lbbench [EAL options] -- [options]: packets per second through the worker pipeline");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  if ((FLAGS_family != 4 && FLAGS_family != 6) || (FLAGS_traffic != "established" && FLAGS_traffic != "syn") ||
      (FLAGS_proto != "udp" && FLAGS_proto != "tcp") || FLAGS_packet_size > 256 || FLAGS_flows == 0 ||
      (FLAGS_flow_hash != "crc32c" && FLAGS_flow_hash != "keyed") || FLAGS_flow_capacity == 0 ||
      FLAGS_flow_capacity > FlowTable::kMaxCapacity) {
    std::fprintf(stderr, "lbbench: bad options (see --help)\n");
    return 2;
  }
  std::vector<unsigned> lcores;
  unsigned lc;
  RTE_LCORE_FOREACH_WORKER(lc) lcores.push_back(lc);
  if (lcores.empty()) {
    std::fprintf(stderr, "lbbench: give EAL worker lcores (-l 0-1: one measuring core)\n");
    return 2;
  }
  Shared shared;
  g_shared = &shared;
  shared.syn = FLAGS_traffic == "syn";
  shared.duration_cycles = uint64_t(FLAGS_seconds * double(rte_get_tsc_hz()));
  shared.pool = rte_pktmbuf_pool_create("lbbench", 8191 * uint32_t(lcores.size()), 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                                        SOCKET_ID_ANY);
  auto store = SnapshotStore::Create(uint32_t(lcores.size()));
  if (shared.pool == nullptr || !store.ok()) {
    std::fprintf(stderr, "lbbench: no memory for the pool (EAL -m)\n");
    return 1;
  }
  shared.store = store->get();
  if (!FLAGS_live_port.empty()) {
    const int rc = LiveMain(lcores[0], FLAGS_proto == "tcp" || shared.syn);
    rte_mempool_free(shared.pool);
    return rc;
  }
  // As lbd sizes it: twice the ids the configuration holds.
  const std::shared_ptr<TrafficTable> traffic =
      FLAGS_traffic_counters
          ? TrafficTable::Create(uint32_t(lcores.size()), 2 * FLAGS_services, 2 * FLAGS_services * FLAGS_backends)
          : nullptr;
  SnapshotBuilder builder({}, traffic);
  auto snap = builder.Build(MakeConfig(0));
  if (!snap.ok()) {
    std::fprintf(stderr, "lbbench: %s\n", std::string(snap.status().message()).c_str());
    return 1;
  }
  shared.store->Publish(*std::move(snap));

  const bool tcp = FLAGS_proto == "tcp" || shared.syn;
  std::vector<std::unique_ptr<Core>> cores;
  const uint32_t per_core = std::max(1u, FLAGS_flows / uint32_t(lcores.size()));
  for (uint32_t i = 0; i < lcores.size(); ++i) {
    auto core = std::make_unique<Core>();
    core->index = i;
    core->result.lcore = lcores[i];
    if (absl::Status s = shared.store->RegisterWorker(i); !s.ok()) return 1;
    const bool nat = FLAGS_mode == "nat";
    if (FLAGS_flow_sync) {
      auto ring = dpdk::ElemRing::Create(absl::StrFormat("lbbench_sync_%d", i), sizeof(SyncedFlow), 16384,
                                         RING_F_SP_ENQ | RING_F_SC_DEQ);
      if (!ring.ok()) return 1;
      core->announced.emplace(*std::move(ring));
    }
    core->worker = std::make_unique<Worker>(
        Worker::Options{
            .id = i,
            .flow_capacity = FLAGS_flow_capacity,
            .workers = uint32_t(lcores.size()),
            .nat_addresses = nat ? FLAGS_snat_addresses : 0,
            .flow_hasher = FLAGS_flow_hash == "keyed" ? FlowHasher::Keyed("lbbench's flow-hash secret") : FlowHasher{},
            .flow_sync_announce = core->announced ? core->announced->get() : nullptr,
            // As lbd with flow sync: room for the peers' NAT sessions (none here).
            .nat_adopted_capacity = FLAGS_flow_sync ? 65536u : 0u,
            .traffic = traffic != nullptr ? traffic->cells(i) : TrafficCells{}},
        shared.store);
    // Established traffic: every flow passes once before the measurement, a TCP one with
    // its SYN, as a connection opens (NAT opens sessions only on a SYN).
    core->templates = MakeTemplates(tcp, kTcpSyn);
    core->first_flow = i * per_core;
    core->flows = per_core;
    if (!shared.syn) {
      for (uint32_t f = 0; f < per_core; f += kBurst) {
        rte_mbuf* m[kBurst];
        Cursor c = core->CursorAt(f, 0);
        if (!Fill(m, *core, c)) return 1;
        BurstOutput out;
        core->worker->ProcessBurst(m, kBurst, core->worker->Now(), out);
        rte_pktmbuf_free_bulk(out.wire.data(), out.num_wire);
        rte_pktmbuf_free_bulk(out.kernel.data(), out.num_kernel);
      }
      core->templates = MakeTemplates(tcp, kTcpAck);
    }
    cores.push_back(std::move(core));
  }
  std::vector<uint64_t> warm_hits, warm_misses, warm_full, warm_drops, warm_announced;
  for (auto& c : cores) {
    warm_hits.push_back(c->worker->counters().Get(Event::kFlowHits));
    warm_misses.push_back(c->worker->counters().Get(Event::kFlowMisses));
    warm_full.push_back(c->worker->counters().Get(Event::kFlowTableFull));
    warm_announced.push_back(c->worker->counters().Get(Event::kFlowsAnnounced));
    uint64_t d = 0;
    for (size_t r = 0; r < kNumDropReasons; ++r) d += c->worker->counters().Get(DropReason(r));
    warm_drops.push_back(d);
  }
  for (auto& c : cores) rte_eal_remote_launch(RunCore, c.get(), c->result.lcore);
  shared.go.store(true, std::memory_order_release);

  // The main lcore: configuration updates during the pipeline loop (which starts after
  // the reference loop, FLAGS_seconds in).
  uint64_t updates = 0;
  if (FLAGS_updates_per_second > 0) {
    const uint64_t hz = rte_get_tsc_hz();
    const uint64_t begin = rte_rdtsc() + shared.duration_cycles;
    const uint64_t stop = begin + shared.duration_cycles;
    const uint64_t step = hz / FLAGS_updates_per_second;
    const DataplaneConfig a = MakeConfig(0), b = MakeConfig(1);
    while (rte_rdtsc() < begin) rte_pause();
    for (uint64_t t = begin; t < stop; t += step) {
      while (rte_rdtsc() < t) rte_pause();
      auto s = builder.Build(updates % 2 ? a : b);
      if (s.ok()) shared.store->Publish(*std::move(s));
      shared.store->Reclaim();
      ++updates;
    }
  }
  rte_eal_mp_wait_lcore();
  shared.store->Reclaim();

  const double ghz = double(rte_get_tsc_hz()) / 1e9;
  double total_mpps = 0, total_ref = 0;
  uint64_t total_drops = 0;
  std::string rows, json_cores;
  for (size_t i = 0; i < cores.size(); ++i) {
    CoreResult& r = cores[i]->result;
    const auto& k = cores[i]->worker->counters();
    r.hits = k.Get(Event::kFlowHits) - warm_hits[i];
    r.misses = k.Get(Event::kFlowMisses) - warm_misses[i];
    r.full = k.Get(Event::kFlowTableFull) - warm_full[i];
    r.announced = k.Get(Event::kFlowsAnnounced) - warm_announced[i];
    for (size_t d = 0; d < kNumDropReasons; ++d) r.drops += k.Get(DropReason(d));
    r.drops -= warm_drops[i];
    const double secs = double(r.cycles) / double(rte_get_tsc_hz());
    const double mpps = double(r.packets) / secs / 1e6;
    const double ref = double(r.ref_packets) / (double(r.ref_cycles) / double(rte_get_tsc_hz())) / 1e6;
    const double cpp = double(r.cycles) / double(r.packets);
    const double hit = r.hits + r.misses ? 100.0 * double(r.hits) / double(r.hits + r.misses) : 0;
    total_mpps += mpps;
    total_drops += r.drops;
    total_ref += ref;
    const double pipeline_ns = 1e3 / mpps - 1e3 / ref;
    rows += absl::StrFormat("%-5d %-6d %7.2f %8.1f %11.1f %11.1f %9d %9.1f%% %14.2f %6.2f\n", i, r.lcore, mpps,
                            cpp / ghz, cpp, pipeline_ns, r.drops, hit, ref, mpps / ref);
    json_cores += absl::StrFormat(
        "%s{\"core\":%d,\"lcore\":%d,\"mpps\":%.3f,\"ns_per_packet\":%.2f,\"cycles_per_packet\":%.1f,"
        "\"pipeline_ns_per_packet\":%.2f,\"drops\":%d,\"flow_hit_rate\":%.4f,\"flow_table_full\":%d,"
        "\"reference_mpps\":%.3f,\"ratio\":%.3f,\"flows_announced\":%d}",
        i ? "," : "", i, r.lcore, mpps, cpp / ghz, cpp, pipeline_ns, r.drops, hit / 100, r.full, ref, mpps / ref,
        r.announced);
  }
  const std::string what = absl::StrFormat(
      "%d core(s), IPv%d %s %s, %d flows, %d services x %d backends, %d-byte frames, %s%s, %.1f s", cores.size(),
      FLAGS_family, shared.syn ? "TCP" : (tcp ? "TCP" : "UDP"), FLAGS_traffic, FLAGS_flows, FLAGS_services,
      FLAGS_backends, FLAGS_packet_size, FLAGS_mode, FLAGS_flow_sync ? ", flow sync" : "", FLAGS_seconds);
  if (FLAGS_json) {
    std::printf(
        "{\"run\":\"%s\",\"tsc_ghz\":%.3f,\"cores\":[%s],\"total_mpps\":%.3f,"
        "\"total_reference_mpps\":%.3f,\"ratio\":%.3f,\"config_updates\":%lu}\n",
        what.c_str(), ghz, json_cores.c_str(), total_mpps, total_ref, total_mpps / total_ref, (unsigned long)updates);
  } else {
    std::printf("lbbench: %s\n\n", what.c_str());
    std::printf("%-5s %-6s %7s %8s %11s %11s %9s %10s %14s %6s\n", "core", "lcore", "Mpps", "ns/pkt", "cycles/pkt",
                "pipeline-ns", "drops", "flow-hit", "reference-Mpps", "ratio");
    std::printf("%s", rows.c_str());
    std::printf("%-12s %7.2f %63.2f %6.2f\n", "total", total_mpps, total_ref, total_mpps / total_ref);
    if (FLAGS_updates_per_second > 0) {
      std::printf("\nconfiguration updates during the pipeline loop: %lu\n", (unsigned long)updates);
    }
  }
  // Established flows of a configured service must all be forwarded (configuration
  // updates included): a drop is a failure, also for the bench suite's smoke run.
  const int rc = !shared.syn && total_drops > 0 ? 3 : 0;
  if (rc != 0)
    std::fprintf(stderr, "lbbench: %lu packets of established flows were dropped\n", (unsigned long)total_drops);
  for (auto& c : cores) c->worker.reset();
  rte_mempool_free(shared.pool);
  return rc;
}

int Main(int argc, char** argv) {
  const int eal = dpdk::InitEal(argc, argv);
  if (eal < 0) {
    std::fprintf(stderr, "lbbench: EAL: %s\n", rte_strerror(rte_errno));
    return 1;
  }
  const int rc = Run(argc - eal, argv + eal);
  dpdk::CleanUpEal();  // on every exit, also after a bad option
  return rc;
}

}  // namespace
}  // namespace lb::bench

int main(int argc, char** argv) { return lb::bench::Main(argc, argv); }
