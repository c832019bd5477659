// The control core's cost of a change at cluster scale, without gRPC: one backend's
// weight changed in a state of N services x 100 backends (the issue-13 shape), against
// the reference of assembling a snapshot of the same services with no record rebuilt
// (what every change costs at least), and a full Apply.
#include <benchmark/benchmark.h>

#include <arpa/inet.h>

#include "control/control_core.h"

namespace lb::control {
namespace {

IpAddress V4(uint32_t a) {
  const uint32_t be = htonl(a);
  return IpAddress::FromV4Bytes(&be);
}

std::vector<ServiceConfig> State(uint32_t services, uint32_t backends) {
  std::vector<ServiceConfig> out(services);
  for (uint32_t s = 0; s < services; ++s) {
    out[s].vip = V4((10u << 24) | (100u << 16) | s);
    out[s].protocol = IPPROTO_UDP;
    out[s].port = 53;
    for (uint32_t b = 0; b < backends; ++b)
      out[s].backends.push_back({V4((10u << 24) | (200u << 16) | (s * 7 + b * 131) % 65536)});
  }
  return out;
}

struct Core {
  explicit Core(uint32_t services) {
    NodeSettings settings;
    settings.encap.source_v4 = *IpPrefix::Parse("10.255.0.1/32");
    store = *dataplane::SnapshotStore::Create(1);
    core = std::make_unique<ControlCore>(settings, store.get(), nullptr);
    (void)core->Start();
    config = State(services, 100);
    (void)core->Apply(1, config);
  }
  std::unique_ptr<dataplane::SnapshotStore> store;
  std::unique_ptr<ControlCore> core;
  std::vector<ServiceConfig> config;
};

void BM_UpdateOneBackend(benchmark::State& state) {
  Core c(uint32_t(state.range(0)));
  uint32_t k = 0;
  for (auto _ : state) {
    const auto& s = c.config[(k * 7919) % c.config.size()];
    auto r = c.core->UpdateBackend(IdOf(s), s.backends[k % 100].address, 0, {.weight = 2 + k % 2});
    if (!r.ok()) state.SkipWithError("UpdateBackend failed");
    ++k;
  }
}
BENCHMARK(BM_UpdateOneBackend)->Arg(256)->Arg(4096)->Unit(benchmark::kMicrosecond);

// Reference: what every change costs at least, whatever it rebuilds: a snapshot of every
// service assembled from the records in force (indexes shared, as the services' keys are
// the same).
void BM_AssembleOnly(benchmark::State& state) {
  Core c(uint32_t(state.range(0)));
  dataplane::SnapshotBuilder builder;
  std::vector<dataplane::ServiceRecordPtr> records;
  for (const auto& r : c.store->current()->services()) records.push_back(r);
  for (auto _ : state) {
    benchmark::DoNotOptimize(builder.Assemble(records, NodeConfig{}, c.store->current()));
  }
}
BENCHMARK(BM_AssembleOnly)->Arg(256)->Arg(4096)->Unit(benchmark::kMicrosecond);

void BM_ApplyAll(benchmark::State& state) {
  const auto config = State(uint32_t(state.range(0)), 100);
  for (auto _ : state) {
    Core c(0);
    benchmark::DoNotOptimize(c.core->Apply(1, config));
  }
}
BENCHMARK(BM_ApplyAll)->Arg(256)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace lb::control

BENCHMARK_MAIN();
