// libFuzzer target over parse + classify + rewrite: each input is one Ethernet frame,
// run through Worker::ProcessBurst against a configuration with every forwarding variant.
//
// Besides the sanitizers' checks it asserts what must hold for any input:
//  - Parse() never reads past the frame (it also runs on an exact-size heap copy, where
//    AddressSanitizer sees any overread; in an mbuf the buffer is larger than the frame);
//  - packets for the kernel leave unchanged;
//  - every packet the worker sends parses again, with IP lengths that match the frame
//    and a valid IPv4 header checksum (unless the input's was not: NAT adjusts checksums
//    incrementally, RFC 1624, which keeps an error for the receiver to find).
// Inputs of odd length first have the worker adopt a NAT session the frame belongs to, as
// flow sync from a peer would (AdoptSessionOf), so that the adopted sessions' paths run too.
#include <rte_eal.h>
#include <rte_ip.h>
#include <rte_mbuf.h>

#include <arpa/inet.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "dataplane/dpdk/eal.h"
#include "dataplane/snapshot_store.h"
#include "dataplane/worker/worker.h"
#include "tests/fuzz/check.h"
#include "tests/fuzz/fuzz_eal.h"

namespace {

using namespace lb;
using namespace lb::dataplane;

rte_mempool* g_pool;
SnapshotStore* g_store;
Worker* g_worker;
Millis g_now = 1000;

using lb::fuzz::Check;

ServiceConfig Service(const char* vip, uint8_t proto, uint16_t port, std::vector<const char*> backends,
                      ForwardingMode mode) {
  ServiceConfig s;
  s.vip = *IpAddress::Parse(vip);
  s.protocol = proto;
  s.port = port;
  s.mode = mode;
  s.table_size = 251;
  for (const char* b : backends) s.backends.push_back({*IpAddress::Parse(b)});
  return s;
}

DataplaneConfig FuzzConfig() {
  DataplaneConfig c;
  c.encap.source_v4 = *IpPrefix::Parse("10.255.0.0/24");
  c.encap.source_v6 = *IpPrefix::Parse("fd00:ff::/120");
  c.next_hop.vlan = 7;
  // A known gateway: without it every forwarded packet stops at no_next_hop, before the
  // rewrites this target is for.
  c.next_hop.source_mac = {0x02, 0, 0, 0, 0, 0xaa};
  c.next_hop.gateway_mac = {0x02, 0, 0, 0, 0, 0xbb};
  const auto ipip = ForwardingMode::kDsrIpip;
  const auto gue = ForwardingMode::kDsrGue;
  c.services = {
      Service("10.1.0.10", IPPROTO_TCP, 80, {"192.168.1.1", "192.168.1.2", "fd00::1"}, ipip),
      Service("10.1.0.10", IPPROTO_UDP, 53, {"192.168.1.1", "fd00::2"}, gue),
      Service("10.1.0.10", IPPROTO_UDP, 0, {"192.168.1.3"}, ipip),
      Service("2001:db8::10", IPPROTO_TCP, 80, {"fd00::1", "192.168.1.4"}, ipip),
      Service("2001:db8::10", IPPROTO_UDP, 53, {"fd00::3", "192.168.1.5"}, gue),
      // NAT, so that HandleNat, HandleSnat and the NAT ICMP paths run too.
      Service("10.1.0.20", IPPROTO_TCP, 80, {"192.168.2.1"}, ForwardingMode::kNat),
      Service("10.1.0.20", IPPROTO_UDP, 53, {"192.168.2.2"}, ForwardingMode::kNat),
      Service("2001:db8::20", IPPROTO_UDP, 53, {"fd00::5"}, ForwardingMode::kNat),
  };
  c.services[5].backends[0].port = 8080;
  c.nat.addresses = {*IpAddress::Parse("10.254.0.1"), *IpAddress::Parse("fd00:fe::1")};
  c.nat.port_min = 1024;
  c.nat.port_max = 1151;  // few ports: exhaustion is reached too
  c.vip_cidrs = {*IpPrefix::Parse("10.1.0.0/24"), *IpPrefix::Parse("2001:db8::/64")};
  c.control_peers = {*IpAddress::Parse("192.0.2.254")};
  c.exception_budgets.per_second = {1000, 1000, 1000, 1000};
  c.icmp_too_big_per_second = 1000000;
  return c;
}

bool Ipv4HeaderChecksumValid(const uint8_t* ip) {
  const uint16_t len = uint16_t((ip[0] & 0x0f) * 4);
  return rte_raw_cksum(ip, len) == 0xffff;
}

void CheckSent(const rte_mbuf* m, bool input_checksum_valid) {
  Check(m->nb_segs == 1, "a sent packet is one segment");
  const auto* data = rte_pktmbuf_mtod(m, const uint8_t*);
  ParsedPacket p;
  Check(Parse(data, m->data_len, p) == ParseStatus::kOk, "a sent packet parses");
  Check(p.kind != PacketKind::kNotIp, "a sent packet is IP");
  Check(uint32_t(p.l3_offset) + p.ip_len == m->pkt_len, "IP length matches the frame");
  if (p.is_v4 && input_checksum_valid) Check(Ipv4HeaderChecksumValid(data + p.l3_offset), "IPv4 header checksum");
}

const IpAddress kNatVip = *IpAddress::Parse("10.1.0.20");
const IpAddress kPeerSnat = *IpAddress::Parse("10.254.0.2");  // another node's SNAT address

// A frame to the NAT VIP is the client side of a session a peer opened from kPeerSnat; a
// frame to an SNAT address (the peer's, or this node's own: it came back) is the reply of
// one; an ICMP error is about the packet it quotes, either way. The worker learns that
// session before it sees the frame.
void AdoptSessionOf(const ParsedPacket& p) {
  const bool flow = p.kind == PacketKind::kTcp || p.kind == PacketKind::kUdp || p.kind == PacketKind::kIcmpError;
  if (!flow || p.is_fragment || !p.is_v4) return;
  const bool tcp = p.key.protocol == IPPROTO_TCP;
  SyncedFlow f{.state = uint8_t(FlowState::kTcpEstablished), .nat = true};
  if (p.key.dst == kNatVip) {
    f.key = p.key;
    f.backend = *IpAddress::Parse(tcp ? "192.168.2.1" : "192.168.2.2");
    f.backend_port = tcp ? 8080 : ntohs(p.key.dst_port_be);
    f.snat = kPeerSnat;
    f.snat_port = uint16_t(1024 + ntohs(p.key.src_port_be) % 256);
  } else if (p.key.dst == kPeerSnat || p.key.dst == *IpAddress::Parse("10.254.0.1")) {
    f.key = {.src = *IpAddress::Parse("198.51.100.1"),
             .dst = kNatVip,
             .src_port_be = htons(40000),
             .dst_port_be = htons(tcp ? 80 : 53),
             .protocol = p.key.protocol};
    f.backend = p.key.src;
    f.backend_port = ntohs(p.key.src_port_be);
    f.snat = p.key.dst;
    f.snat_port = ntohs(p.key.dst_port_be);
  } else {
    return;
  }
  g_worker->Learn({&f, 1}, g_now);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** argv) {
  g_pool = lb::fuzz::InitEalWithPool((*argv)[0], 128, 1023);
  auto store = SnapshotStore::Create(1);
  if (!store.ok()) std::abort();
  g_store = store->release();
  if (!g_store->RegisterWorker(0).ok()) std::abort();
  SnapshotBuilder builder;
  auto snap = builder.Build(FuzzConfig());
  if (!snap.ok()) std::abort();
  g_store->Publish(*std::move(snap));
  const DataplaneConfig config = FuzzConfig();
  g_worker = new Worker(Worker::Options{.id = 0,
                                        .flow_capacity = 1024,
                                        .nat_addresses = uint32_t(config.nat.addresses.size()),
                                        .nat_port_min = config.nat.port_min,
                                        .nat_port_max = config.nat.port_max,
                                        // as on net_af_packet ports: the completion reads every datagram
                                        .complete_partial_checksums = true,
                                        .nat_adopted_capacity = 64},  // few: a full table is reached too
                        g_store);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 1600) return 0;
  bool input_checksum_valid = true;
  {
    auto exact = std::make_unique<uint8_t[]>(size + (size == 0));
    std::memcpy(exact.get(), data, size);
    ParsedPacket p;
    if (Parse(exact.get(), uint32_t(size), p) == ParseStatus::kOk) {
      input_checksum_valid = !p.is_v4 || Ipv4HeaderChecksumValid(exact.get() + p.l3_offset);
      if (size % 2 == 1) AdoptSessionOf(p);
    }
  }
  rte_mbuf* m = rte_pktmbuf_alloc(g_pool);
  if (m == nullptr) std::abort();
  char* dst = rte_pktmbuf_append(m, uint16_t(size));
  if (dst == nullptr) std::abort();
  std::memcpy(dst, data, size);

  BurstOutput out;
  const uint64_t completed_before = g_worker->counters().Get(Event::kChecksumsCompleted);
  g_worker->ProcessBurst(&m, 1, g_now, out);
  const bool completed = g_worker->counters().Get(Event::kChecksumsCompleted) != completed_before;
  g_now += 7;
  Check(out.num_wire + out.num_kernel <= 1, "one packet in, at most one out");
  for (uint16_t i = 0; i < out.num_kernel; ++i) {
    const rte_mbuf* k = out.kernel[i];
    Check(k->pkt_len == size, "kernel packets keep their length");
    // Unmodified, but for a checksum the worker completed: two adjacent bytes.
    const auto* sent = rte_pktmbuf_mtod(k, const uint8_t*);
    size_t first = size, last = 0;
    for (size_t b = 0; b < size; ++b) {
      if (sent[b] != data[b]) first = std::min(first, b), last = b;
    }
    Check(first == size || (completed && last - first <= 1),
          "kernel packets are not modified (but a completed checksum)");
    rte_pktmbuf_free(out.kernel[i]);
  }
  for (uint16_t i = 0; i < out.num_wire; ++i) {
    CheckSent(out.wire[i], input_checksum_valid);
    rte_pktmbuf_free(out.wire[i]);
  }
  g_store->Quiescent(0);
  return 0;
}
