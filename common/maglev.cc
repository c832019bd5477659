#include "common/maglev.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <cstring>
#include <numeric>

#include "absl/strings/str_format.h"
#include "common/hash.h"

namespace lb {
namespace {

constexpr uint64_t kOffsetSeed = 0x6d61676c65763031;  // "maglev01"
constexpr uint64_t kSkipSeed = 0x6d61676c65763032;    // "maglev02"

// Per-backend state while filling: the backend's permutation (offset, skip; §3.4
// "Generating permutations") and its weight accounting.
// Kept small (16 bytes) so that a thousand of them and the occupancy bitmap share L1.
struct Filler {
  uint32_t input_index;
  uint32_t position;  // permutation[next], kept incrementally instead of recomputed
  uint32_t skip;
  uint32_t skip2;  // 2 * skip mod M
};

// Per-backend weight accounting, consulted only when weights differ.
struct Turns {
  uint64_t weight;
  uint64_t taken_weight = 0;  // max_weight times the turns taken so far
};

// One step along a permutation: (pos + skip) mod m, without a division.
inline uint32_t Advance(uint32_t pos, uint32_t skip, uint32_t m) {
  pos += skip;
  return pos >= m ? pos - m : pos;
}

inline uint32_t IsFree(const uint64_t* taken, uint32_t pos) { return uint32_t(~taken[pos >> 6] >> (pos & 63)) & 1u; }

// The first free entry of `f`'s permutation from f.position on. Sequential probing, two
// positions per iteration: both come from the same base (pos + skip, pos + 2 skip), so
// their loads are independent, and the probe run's unpredictable exit branch is taken
// once per two probes (bench/maglev_benchmark: about 15% faster than one at a time).
inline uint32_t FirstFree(const uint64_t* taken, const Filler& f, uint32_t m) {
  uint32_t p[2];
  for (p[0] = f.position;; p[0] = Advance(p[0], f.skip2, m)) {
    p[1] = Advance(p[0], f.skip, m);
    const uint32_t free_mask = IsFree(taken, p[0]) | IsFree(taken, p[1]) << 1;
    if (free_mask != 0) return p[__builtin_ctz(free_mask)];
  }
}

// a^-1 mod m for prime m (Fermat's little theorem: a^(m-2)).
uint32_t InverseModPrime(uint32_t a, uint32_t m) {
  uint64_t result = 1, base = a;
  for (uint32_t e = m - 2; e != 0; e >>= 1) {
    if (e & 1) result = result * base % m;
    base = base * base % m;
  }
  return uint32_t(result);
}

// The end of the fill, computed instead of probed. With r entries free a turn costs about
// M / r probes, so the last entries take most of the probing (about M ln(M) probes in all;
// half of them after the table is ~99% full). Since M is prime, a free entry q lies
// d(q) = (q - position) * skip^-1 mod M steps along a backend's permutation; every entry
// the backend has already stepped past is taken for good, so its first free entry is the
// free q with the smallest d(q): r multiplications instead of M / r probes, same answer.
class TailFiller {
 public:
  // Worth it once r * (cost of a modular multiply) < (M / r) * (cost of a probe).
  static uint32_t Threshold(uint32_t m) { return std::max<uint32_t>(8, uint32_t(std::sqrt(m) / 2)); }

  TailFiller(const std::vector<uint64_t>& taken, uint32_t m, size_t num_fillers)
      : m_(m), inverse_skip_(num_fillers, 0) {
    for (uint32_t pos = 0; pos < m; ++pos) {
      if (IsFree(taken.data(), pos)) free_.push_back(pos);
    }
  }

  // Takes filler `i`'s first free entry off the free list and returns it.
  uint32_t Take(size_t i, const Filler& f) {
    uint32_t& inverse = inverse_skip_[i];
    if (inverse == 0) inverse = InverseModPrime(f.skip, m_);
    size_t best = 0;
    uint64_t best_steps = UINT64_MAX;
    for (size_t k = 0; k < free_.size(); ++k) {
      const uint32_t q = free_[k];
      const uint32_t delta = q >= f.position ? q - f.position : q + m_ - f.position;
      const uint64_t steps = uint64_t(delta) * inverse % m_;
      if (steps < best_steps) {
        best_steps = steps;
        best = k;
      }
    }
    const uint32_t pos = free_[best];
    free_[best] = free_.back();
    free_.pop_back();
    return pos;
  }

 private:
  uint32_t m_;
  std::vector<uint32_t> free_;
  std::vector<uint32_t> inverse_skip_;  // per filler, computed on its first tail turn
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

uint32_t MaglevTableSizeFor(size_t backends) {
  const uint64_t want = 100 * uint64_t(std::max<size_t>(backends, 1));
  for (uint32_t m : kMaglevTableSizes) {
    if (m >= want) return m;
  }
  return kMaxMaglevTableSize;
}

absl::StatusOr<std::vector<uint16_t>> BuildMaglevTable(std::span<const MaglevBackend> backends, uint32_t table_size) {
  if (!IsPrime(table_size) || table_size > kMaxMaglevTableSize) {
    return absl::InvalidArgumentError(
        absl::StrFormat("table_size: %d must be a prime no larger than %d", table_size, kMaxMaglevTableSize));
  }
  if (backends.size() > kMaxMaglevBackends) {
    return absl::InvalidArgumentError(
        absl::StrFormat("backends: %d backends, at most %d per service", backends.size(), kMaxMaglevBackends));
  }

  // Canonical order: by (address, port). This is what makes the result independent of
  // the order of `backends`. Sorted as integers (the address as two big-endian words,
  // which orders exactly as its bytes do): byte-wise comparisons made this sort the
  // largest fixed cost of a build.
  struct Canonical {
    uint64_t high, low;
    uint32_t port, index;
    bool SameBackend(const Canonical& o) const { return high == o.high && low == o.low && port == o.port; }
    bool operator<(const Canonical& o) const {
      return high != o.high ? high < o.high : low != o.low ? low < o.low : port < o.port;
    }
  };
  std::vector<Canonical> order;
  order.reserve(backends.size());
  for (uint32_t i = 0; i < backends.size(); ++i) {
    const uint8_t* a = backends[i].address.bytes.data();
    uint64_t high = 0, low = 0;
    for (int k = 0; k < 8; ++k) {
      high = high << 8 | a[k];
      low = low << 8 | a[8 + k];
    }
    order.push_back({high, low, backends[i].port, i});
  }
  std::sort(order.begin(), order.end());
  for (size_t i = 1; i < order.size(); ++i) {
    if (order[i - 1].SameBackend(order[i])) {
      const uint32_t a = std::min(order[i - 1].index, order[i].index);
      const uint32_t b = std::max(order[i - 1].index, order[i].index);
      return absl::InvalidArgumentError(absl::StrFormat("backends[%d]: duplicate of backends[%d] (%s port %d)", b, a,
                                                        backends[a].address.ToString(), backends[a].port));
    }
  }

  std::vector<Filler> fillers;
  std::vector<Turns> turns;
  uint64_t max_weight = 0;
  for (const Canonical& c : order) {
    const uint32_t index = c.index;
    const MaglevBackend& b = backends[index];
    if (b.weight == 0) continue;
    uint8_t name[18];
    std::memcpy(name, b.address.bytes.data(), 16);
    name[16] = uint8_t(b.port >> 8);
    name[17] = uint8_t(b.port);
    // §3.4: offset = h1(name) mod M, skip = h2(name) mod (M - 1) + 1, with the modulo done
    // by multiply-shift on the hashes' high 32 bits (no division).
    const uint32_t offset = ReduceToRange(uint32_t(StableHash64(name, sizeof(name), kOffsetSeed) >> 32), table_size);
    const uint32_t skip =
        ReduceToRange(uint32_t(StableHash64(name, sizeof(name), kSkipSeed) >> 32), table_size - 1) + 1;
    fillers.push_back({index, offset, skip, Advance(skip, skip, table_size)});
    turns.push_back({b.weight});
    max_weight = std::max<uint64_t>(max_weight, b.weight);
  }
  if (fillers.empty()) return std::vector<uint16_t>{};
  if (fillers.size() > table_size) {
    return absl::InvalidArgumentError(
        absl::StrFormat("table_size: %d entries cannot hold %d weighted backends", table_size, fillers.size()));
  }

  // Occupancy as a bitmap: 8 KiB for M = 65537, so the probing of §3.4's "Populate"
  // loop stays in L1 while the table itself is written once per entry.
  std::vector<uint64_t> taken((table_size + 63) / 64, 0);
  std::vector<uint16_t> table(table_size);
  uint32_t filled = 0;
  // Weighted turns (as Envoy's maglev_lb.cc does it): in round r a backend of weight w takes
  // a turn when r * w >= (turns taken so far) * max_weight, so over R rounds it takes about
  // R * w / max_weight turns; a backend of the largest weight takes one every round.
  const bool uniform = std::all_of(turns.begin(), turns.end(), [&](const Turns& t) { return t.weight == max_weight; });
  const uint32_t tail_start = table_size - std::min(table_size, TailFiller::Threshold(table_size));
  std::optional<TailFiller> tail;
  for (uint64_t round = 1; filled < table_size; ++round) {
    for (size_t i = 0; i < fillers.size(); ++i) {
      if (!uniform) {
        if (round * turns[i].weight < turns[i].taken_weight) continue;
        turns[i].taken_weight += max_weight;
      }
      Filler& f = fillers[i];
      if (filled >= tail_start && !tail) tail.emplace(taken, table_size, fillers.size());
      const uint32_t pos = tail ? tail->Take(i, f) : FirstFree(taken.data(), f, table_size);
      taken[pos >> 6] |= uint64_t{1} << (pos & 63);
      table[pos] = uint16_t(f.input_index);
      f.position = Advance(pos, f.skip, table_size);
      if (++filled == table_size) break;
    }
  }
  return table;
}

}  // namespace lb
