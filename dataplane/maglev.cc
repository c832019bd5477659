#include "dataplane/maglev.h"

#include <algorithm>
#include <cstring>
#include <numeric>

#include "absl/strings/str_format.h"
#include "dataplane/hash.h"

namespace lb::dataplane {
namespace {

constexpr uint64_t kOffsetSeed = 0x6d61676c65763031;  // "maglev01"
constexpr uint64_t kSkipSeed = 0x6d61676c65763032;    // "maglev02"

// Per-backend state while filling: the backend's permutation (offset, skip; §3.4
// "Generating permutations") and its weight accounting.
struct Filler {
  uint32_t input_index;
  uint32_t position;  // permutation[next], kept incrementally instead of recomputed
  uint32_t skip;
  uint64_t weight;
  uint64_t turns_taken_weight = 0;  // sum of max_weight over the turns it has taken
};

}  // namespace

bool IsPrime(uint32_t n) {
  if (n < 2) return false;
  if (n % 2 == 0) return n == 2;
  for (uint32_t d = 3; uint64_t(d) * d <= n; d += 2) {
    if (n % d == 0) return false;
  }
  return true;
}

absl::StatusOr<std::vector<uint16_t>> BuildMaglevTable(std::span<const MaglevBackend> backends,
                                                       uint32_t table_size) {
  if (!IsPrime(table_size) || table_size > kMaxMaglevTableSize) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "table_size: %d must be a prime no larger than %d", table_size, kMaxMaglevTableSize));
  }
  if (backends.size() > kMaxMaglevBackends) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "backends: %d backends, at most %d per service", backends.size(), kMaxMaglevBackends));
  }

  // Canonical order: by (address, port). This is what makes the result independent of
  // the order of `backends`.
  std::vector<uint32_t> order(backends.size());
  std::iota(order.begin(), order.end(), 0u);
  std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
    const auto& x = backends[a];
    const auto& y = backends[b];
    return x.address != y.address ? x.address < y.address : x.port < y.port;
  });
  for (size_t i = 1; i < order.size(); ++i) {
    const auto& x = backends[order[i - 1]];
    const auto& y = backends[order[i]];
    if (x.address == y.address && x.port == y.port) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "backends[%d]: duplicate of backends[%d] (%s port %d)", std::max(order[i - 1], order[i]),
          std::min(order[i - 1], order[i]), x.address.ToString(), x.port));
    }
  }

  std::vector<Filler> fillers;
  uint64_t max_weight = 0;
  for (uint32_t index : order) {
    const MaglevBackend& b = backends[index];
    if (b.weight == 0) continue;
    uint8_t name[18];
    std::memcpy(name, b.address.bytes.data(), 16);
    name[16] = uint8_t(b.port >> 8);
    name[17] = uint8_t(b.port);
    const uint32_t offset = uint32_t(StableHash64(name, sizeof(name), kOffsetSeed) % table_size);
    const uint32_t skip =
        uint32_t(StableHash64(name, sizeof(name), kSkipSeed) % (table_size - 1)) + 1;
    fillers.push_back({index, offset, skip, b.weight});
    max_weight = std::max<uint64_t>(max_weight, b.weight);
  }
  if (fillers.empty()) return std::vector<uint16_t>{};
  if (fillers.size() > table_size) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "table_size: %d entries cannot hold %d weighted backends", table_size, fillers.size()));
  }

  // Occupancy as a bitmap: 8 KiB for M = 65537, so the probing of §3.4's "Populate"
  // loop stays in L1 while the table itself is written once per entry.
  std::vector<uint64_t> taken((table_size + 63) / 64, 0);
  std::vector<uint16_t> table(table_size);
  uint32_t filled = 0;
  // Weighted turns (as Envoy's maglev_lb.cc does it): in round r a backend of weight w takes
  // a turn when r * w >= (turns taken so far) * max_weight, so over R rounds it takes about
  // R * w / max_weight turns; a backend of the largest weight takes one every round.
  for (uint64_t round = 1; filled < table_size; ++round) {
    for (Filler& f : fillers) {
      if (round * f.weight < f.turns_taken_weight) continue;
      f.turns_taken_weight += max_weight;
      uint32_t pos = f.position;
      while (taken[pos >> 6] & (uint64_t{1} << (pos & 63))) {
        pos += f.skip;
        pos -= pos >= table_size ? table_size : 0;
      }
      taken[pos >> 6] |= uint64_t{1} << (pos & 63);
      table[pos] = uint16_t(f.input_index);
      pos += f.skip;
      f.position = pos - (pos >= table_size ? table_size : 0);
      if (++filled == table_size) break;
    }
  }
  return table;
}

}  // namespace lb::dataplane
