// Maglev table build time (NSDI'16 §5.3 reports 1.8 ms for M = 65537 and 22.9 ms for
// M = 655373 with 1000 backends; Envoy's maglev_lb about 2.5 ms for the first).
#include <benchmark/benchmark.h>

#include "common/maglev.h"

namespace lb::dataplane {
namespace {

std::vector<MaglevBackend> Backends(int n) {
  std::vector<MaglevBackend> b;
  for (int i = 0; i < n; ++i) b.push_back({IpAddress::FromV4(0x0a000000u + uint32_t(i)), 53, 1});
  return b;
}

void BM_MaglevBuild(benchmark::State& state) {
  const auto backends = Backends(int(state.range(0)));
  const uint32_t m = uint32_t(state.range(1));
  for (auto _ : state) {
    auto table = BuildMaglevTable(backends, m);
    benchmark::DoNotOptimize(table);
  }
  state.counters["entries"] = m;
}
BENCHMARK(BM_MaglevBuild)->Args({1000, 65537})->Args({1000, 655373})->Args({100, 65537})->Unit(benchmark::kMillisecond);

// Weighted backends: one heavy backend among light ones is the slow case of the weighted
// fill (most rounds skip the light backends).
void BM_MaglevBuildWeighted(benchmark::State& state) {
  auto backends = Backends(1000);
  for (size_t i = 0; i < backends.size(); ++i) backends[i].weight = 1 + uint32_t(i % 4);
  for (auto _ : state) {
    auto table = BuildMaglevTable(backends, 65537);
    benchmark::DoNotOptimize(table);
  }
}
BENCHMARK(BM_MaglevBuildWeighted)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace lb::dataplane

BENCHMARK_MAIN();
