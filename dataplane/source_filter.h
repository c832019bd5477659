// SourceFilter: the clients a service admits (Kubernetes' spec.loadBalancerSourceRanges),
// as sorted, disjoint, merged address ranges per family, so that a lookup is one binary
// search, whatever the prefixes' lengths and overlaps. An IPv4 client is searched among
// the IPv4 ranges (4-byte bounds: 4096 ranges take 32 kB), an IPv6 client among the IPv6
// ones: an IPv6 prefix, ::/0 included, admits no IPv4 client, as in Kubernetes. A service
// without ranges has no filter at all: its packets pay one well-predicted branch.
//
// Immutable once built: shared by the snapshots' service records; any thread reads it.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "common/bytes.h"
#include "common/ip_address.h"

namespace lb::dataplane {

class SourceFilter {
 public:
  // The filter admitting exactly the addresses within `prefixes` (of either family).
  static std::shared_ptr<const SourceFilter> Build(std::span<const IpPrefix> prefixes);

  bool Admits(const IpAddress& a) const { return a.IsV4() ? Holds(v4_, V4Of(a)) : Holds(v6_, V6Of(a)); }
  size_t ranges() const { return v4_.size() + v6_.size(); }

  // An IPv6 address as a 128-bit number, high half first.
  struct V6 {
    uint64_t high = 0, low = 0;
    friend auto operator<=>(const V6&, const V6&) = default;
  };
  static uint32_t V4Of(const IpAddress& a) { return Load32(a.bytes.data() + 12); }
  static V6 V6Of(const IpAddress& a) {
    const uint8_t* b = a.bytes.data();
    return {uint64_t(Load32(b)) << 32 | Load32(b + 4), uint64_t(Load32(b + 8)) << 32 | Load32(b + 12)};
  }
  template <typename T>
  struct Range {
    T first, last;  // inclusive
  };

 private:
  // Whether a range holds `k`: the last range that starts at or below it.
  template <typename T>
  static bool Holds(const std::vector<Range<T>>& ranges, const T& k) {
    size_t lo = 0, hi = ranges.size();
    while (lo < hi) {
      const size_t mid = (lo + hi) / 2;
      if (ranges[mid].first <= k) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    return lo != 0 && k <= ranges[lo - 1].last;
  }

  std::vector<Range<uint32_t>> v4_;
  std::vector<Range<V6>> v6_;
};

}  // namespace lb::dataplane
