// Flow sync's CPU per synced flow off the hot path (docs/flow-sync.md): the sync thread
// packing announcements into datagrams, and the peer's thread authenticating and
// unpacking them. The workers' part (an enqueue per announcement, Learn per received
// flow) is in lbbench --flow_sync and flow_table_benchmark's inserts.
#include <arpa/inet.h>
#include <benchmark/benchmark.h>

#include <vector>

#include "dataplane/flow_sync_wire.h"

namespace lb::dataplane {
namespace {

// `n` DSR flows, or NAT sessions (`nat`: with an SNAT address and port each).
std::vector<SyncedFlow> Flows(size_t n, bool nat = false) {
  std::vector<SyncedFlow> flows(n);
  for (size_t i = 0; i < n; ++i) {
    flows[i].key.src = IpAddress::FromV4(0xc0000200u + uint32_t(i));
    flows[i].key.dst = IpAddress::FromV4(0x0a640a0au);
    flows[i].key.src_port_be = htons(uint16_t(10000 + i));
    flows[i].key.dst_port_be = htons(80);
    flows[i].key.protocol = IPPROTO_TCP;
    flows[i].backend = IpAddress::FromV4(0x0a5c0102u + uint32_t(i % 16));
    flows[i].state = 2;
    if (nat) {
      flows[i].nat = true;
      flows[i].snat = IpAddress::FromV4(0x0a5d0001u);
      flows[i].snat_port = uint16_t(1024 + i);
    }
  }
  return flows;
}

const SipKey kKey = flow_sync::KeyFromSecret("lbbench's flow-hash secret, 32 bytes");

// Arg 0: DSR flows; 1: NAT sessions.
void BM_FlowSyncEncode(benchmark::State& state) {
  const auto flows = Flows(1000, state.range(0) == 1);
  std::vector<uint8_t> datagram;
  uint64_t bytes = 0;
  for (auto _ : state) {
    std::span<const SyncedFlow> rest(flows);
    bytes = 0;
    while (!rest.empty()) {
      rest = rest.subspan(flow_sync::Encode(kKey, flow_sync::MessageType::kFlows, 1, rest, datagram));
      bytes += datagram.size();
    }
    benchmark::DoNotOptimize(datagram.data());
  }
  state.SetItemsProcessed(int64_t(state.iterations()) * 1000);
  state.counters["payload_bytes_per_1000_flows"] = double(bytes);
}
BENCHMARK(BM_FlowSyncEncode)->Arg(0)->Arg(1);

void BM_FlowSyncDecode(benchmark::State& state) {
  const auto flows = Flows(flow_sync::kMaxDatagram / 24, state.range(0) == 1);
  std::vector<uint8_t> datagram;
  const size_t n = flow_sync::Encode(kKey, flow_sync::MessageType::kFlows, 1, flows, datagram);
  for (auto _ : state) {
    auto m = flow_sync::Decode(kKey, datagram);
    benchmark::DoNotOptimize(m);
  }
  state.SetItemsProcessed(int64_t(state.iterations() * n));
}
BENCHMARK(BM_FlowSyncDecode)->Arg(0)->Arg(1);

}  // namespace
}  // namespace lb::dataplane

BENCHMARK_MAIN();
