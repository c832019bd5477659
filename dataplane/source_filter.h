// SourceFilter: the clients a service admits (Kubernetes' spec.loadBalancerSourceRanges),
// as sorted, disjoint, merged address ranges, so that a lookup is one binary search over
// at most a few thousand ranges, whatever the prefixes' lengths and overlaps. A service
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

  bool Admits(const IpAddress& a) const {
    const Key k = KeyOf(a);
    // The last range starting at or below k, if any, holds it.
    size_t lo = 0, hi = ranges_.size();
    while (lo < hi) {
      const size_t mid = (lo + hi) / 2;
      if (ranges_[mid].first <= k) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    return lo != 0 && k <= ranges_[lo - 1].last;
  }
  size_t ranges() const { return ranges_.size(); }

 private:
  // An address as a 128-bit number (IPv4 mapped into ::ffff:0:0/96), high half first.
  struct Key {
    uint64_t high = 0, low = 0;
    friend auto operator<=>(const Key&, const Key&) = default;
  };
  struct Range {
    Key first, last;  // inclusive
  };
  static Key KeyOf(const IpAddress& a) {
    return {uint64_t(Load32(a.bytes.data())) << 32 | Load32(a.bytes.data() + 4),
            uint64_t(Load32(a.bytes.data() + 8)) << 32 | Load32(a.bytes.data() + 12)};
  }

  std::vector<Range> ranges_;
};

}  // namespace lb::dataplane
