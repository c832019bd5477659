#include "dataplane/source_filter.h"

#include <algorithm>

namespace lb::dataplane {
namespace {

// The number before `v` (v > 0).
uint32_t Before(uint32_t v) { return v - 1; }
SourceFilter::V6 Before(const SourceFilter::V6& v) {
  return v.low != 0 ? SourceFilter::V6{v.high, v.low - 1} : SourceFilter::V6{v.high - 1, ~uint64_t{0}};
}

// Sorts `ranges` and merges those that overlap or touch.
template <typename T>
void Merge(std::vector<SourceFilter::Range<T>>& ranges) {
  std::ranges::sort(ranges, {}, &SourceFilter::Range<T>::first);
  size_t out = 0;
  for (const auto& r : ranges) {
    if (out != 0 && (r.first == T{} || Before(r.first) <= ranges[out - 1].last)) {
      ranges[out - 1].last = std::max(ranges[out - 1].last, r.last);
      continue;
    }
    ranges[out++] = r;
  }
  ranges.resize(out);
}

// The mask of the low `bits` bits of a 64-bit half (bits may be 0 .. 64).
uint64_t LowBits(unsigned bits) { return bits >= 64 ? ~uint64_t{0} : (uint64_t{1} << bits) - 1; }

}  // namespace

std::shared_ptr<const SourceFilter> SourceFilter::Build(std::span<const IpPrefix> prefixes) {
  auto filter = std::make_shared<SourceFilter>();
  for (const IpPrefix& p : prefixes) {
    if (p.address.IsV4()) {
      const uint32_t host = p.length >= 32 ? 0 : uint32_t(LowBits(32u - p.length));
      const uint32_t base = V4Of(p.address);
      filter->v4_.push_back({base & ~host, base | host});
      continue;
    }
    const unsigned host = 128u - std::min<unsigned>(p.length, 128);
    const V6 base = V6Of(p.address);
    const uint64_t low = LowBits(std::min(host, 64u)), high = host > 64 ? LowBits(host - 64) : 0;
    filter->v6_.push_back({{base.high & ~high, base.low & ~low}, {base.high | high, base.low | low}});
  }
  Merge(filter->v4_);
  Merge(filter->v6_);
  return filter;
}

}  // namespace lb::dataplane
