// Flow-table lookup and insert rates at 1M flows, in the access pattern of a worker: a
// burst of 32 keys hashed and prefetched first, then looked up (docs/design.md, the dataplane).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <memory>
#include <random>
#include <vector>

#include "dataplane/flow_table.h"

namespace lb::dataplane {
namespace {

constexpr uint32_t kBurst = 32;
const FlowHasher kHasher;  // the public hash, lbd's default

std::vector<FlowKey> Keys(uint32_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<FlowKey> keys(n);
  for (FlowKey& k : keys) {
    k.src = IpAddress::FromV4(rng());
    k.dst = IpAddress::FromV4(0x0a01000a);
    k.src_port_be = uint16_t(rng());
    k.dst_port_be = 0x5000;
    k.protocol = 6;
  }
  return keys;
}

// Lookups of live flows in a table holding `flows` of them. The packets' keys come from
// a traffic array read in order (as packets arrive, their headers in cache) that visits
// the flows in random order (so the table sees no locality). Per burst: hash and
// prefetch the buckets, then look up.
void BM_FlowLookupHit(benchmark::State& state) {
  const uint32_t flows = uint32_t(state.range(0));
  FlowTable table(flows);
  const auto keys = Keys(flows, 1);
  bool reclaimed;
  std::vector<FlowKey> traffic;
  for (const FlowKey& k : keys) {
    if (auto s = table.Claim(table.Tag(k, kHasher.Hash(k)), 0, &reclaimed)) {
      *s.deadline = 1u << 30;
      traffic.push_back(k);
    }
  }
  std::mt19937 rng(2);
  std::shuffle(traffic.begin(), traffic.end(), rng);
  traffic.resize(traffic.size() / kBurst * kBurst);
  size_t next = 0, hits = 0;
  FlowTag tags[kBurst];
  for (auto _ : state) {
    const FlowKey* burst = &traffic[next];
    for (uint32_t i = 0; i < kBurst; ++i) {
      tags[i] = table.Tag(burst[i], kHasher.Hash(burst[i]));
      table.Prefetch(tags[i].hash);
    }
    for (uint32_t i = 0; i < kBurst; ++i) hits += bool(table.Find(tags[i], 1));
    next += kBurst;
    if (next == traffic.size()) next = 0;
  }
  if (hits != size_t(state.iterations()) * kBurst) state.SkipWithError("lookups missed");
  state.SetItemsProcessed(int64_t(state.iterations()) * kBurst);
  state.counters["stored"] = double(traffic.size());
  state.counters["bytes_per_flow"] = double(FlowTable::kBytesPerFlow);
}
BENCHMARK(BM_FlowLookupHit)->Arg(100'000)->Arg(1'000'000);

// Inserts of new flows until the table holds about its capacity() (one flow per bucket);
// it is then refilled from empty (outside the timing).
void BM_FlowInsert(benchmark::State& state) {
  const uint32_t capacity = uint32_t(state.range(0));
  const auto keys = Keys(capacity, 3);
  auto table = std::make_unique<FlowTable>(capacity);
  size_t next = 0;
  bool reclaimed;
  FlowTag tags[kBurst];
  for (auto _ : state) {
    if (next + kBurst > keys.size()) {
      state.PauseTiming();
      table = std::make_unique<FlowTable>(capacity);
      next = 0;
      state.ResumeTiming();
    }
    for (uint32_t i = 0; i < kBurst; ++i) {
      tags[i] = table->Tag(keys[next + i], kHasher.Hash(keys[next + i]));
      table->Prefetch(tags[i].hash);
    }
    for (uint32_t i = 0; i < kBurst; ++i) {
      if (auto s = table->Claim(tags[i], 0, &reclaimed)) {
        *s.deadline = 1000;
      }
    }
    next += kBurst;
  }
  state.SetItemsProcessed(int64_t(state.iterations()) * kBurst);
}
BENCHMARK(BM_FlowInsert)->Arg(1'000'000);

// New flows meeting a table full of live ones (a SYN flood's steady state): each is
// looked up in its home and second bucket and refused. Per burst: prefetch the homes,
// then look up and try to insert.
void BM_FlowMissFullTable(benchmark::State& state) {
  const uint32_t capacity = uint32_t(state.range(0));
  FlowTable table(capacity);
  bool reclaimed;
  const auto fill = Keys(capacity * 4, 5);
  for (const FlowKey& k : fill) {
    if (auto s = table.Claim(table.Tag(k, kHasher.Hash(k)), 0, &reclaimed)) *s.deadline = 1u << 30;
  }
  const auto keys = Keys(1 << 20, 6);
  size_t next = 0, refused = 0;
  FlowTag tags[kBurst];
  for (auto _ : state) {
    for (uint32_t i = 0; i < kBurst; ++i) {
      tags[i] = table.Tag(keys[next + i], kHasher.Hash(keys[next + i]));
      table.Prefetch(tags[i].hash);
    }
    for (uint32_t i = 0; i < kBurst; ++i) {
      if (table.Find(tags[i], 1)) continue;
      if (auto s = table.Claim(tags[i], 1, &reclaimed)) {
        *s.deadline = 1u << 30;
      } else {
        ++refused;
      }
    }
    next = (next + kBurst) & ((1 << 20) - 1);
  }
  state.SetItemsProcessed(int64_t(state.iterations()) * kBurst);
  state.counters["refused"] = double(refused) / double(state.iterations() * kBurst);
}
BENCHMARK(BM_FlowMissFullTable)->Arg(100'000)->Arg(1'000'000);

// The flow hash alone over the 40-byte key: the public CRC32C plus the finaliser, and
// the keyed multiply-fold hash under a cluster secret (--flow_hash_secret_file).
void BM_FlowHash(benchmark::State& state) {
  const FlowHasher hasher = state.range(0) ? FlowHasher::Keyed("bench-secret-0123456789") : FlowHasher{};
  state.SetLabel(hasher.Describe());
  const auto keys = Keys(1024, 4);
  size_t i = 0;
  for (auto _ : state) benchmark::DoNotOptimize(hasher.Hash(keys[i++ & 1023]));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_FlowHash)->Arg(0)->Arg(1);

// The flow's fingerprint alone: the keyed multiply-fold hash over the same key.
void BM_FlowFingerprint(benchmark::State& state) {
  const auto keys = Keys(1024, 4);
  const FlowTable table(2);
  size_t i = 0;
  for (auto _ : state) benchmark::DoNotOptimize(table.Tag(keys[i++ & 1023], 0));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_FlowFingerprint);

}  // namespace
}  // namespace lb::dataplane

BENCHMARK_MAIN();
