#include "dataplane/source_filter.h"

#include <algorithm>

namespace lb::dataplane {

std::shared_ptr<const SourceFilter> SourceFilter::Build(std::span<const IpPrefix> prefixes) {
  auto filter = std::make_shared<SourceFilter>();
  std::vector<Range>& ranges = filter->ranges_;
  for (const IpPrefix& p : prefixes) {
    // The prefix's length in the 128-bit space: an IPv4 /n is a /(96 + n) there.
    const unsigned bits = p.address.IsV4() ? 96u + p.length : p.length;
    const unsigned host = 128 - std::min(bits, 128u);
    const Key base = KeyOf(p.address);
    // The host bits' mask, split over the two halves.
    const uint64_t low_mask = host >= 64 ? ~uint64_t{0} : host == 0 ? 0 : (uint64_t{1} << host) - 1;
    const uint64_t high_mask = host <= 64 ? 0 : host == 128 ? ~uint64_t{0} : (uint64_t{1} << (host - 64)) - 1;
    ranges.push_back({{base.high & ~high_mask, base.low & ~low_mask}, {base.high | high_mask, base.low | low_mask}});
  }
  std::ranges::sort(ranges, {}, &Range::first);
  // Merged where they overlap or touch.
  size_t out = 0;
  for (const Range& r : ranges) {
    if (out != 0) {
      Range& prev = ranges[out - 1];
      const Key next_after_prev =
          prev.last.low == ~uint64_t{0} ? Key{prev.last.high + 1, 0} : Key{prev.last.high, prev.last.low + 1};
      const bool prev_ends_space = prev.last == Key{~uint64_t{0}, ~uint64_t{0}};
      if (prev_ends_space || r.first <= next_after_prev) {
        prev.last = std::max(prev.last, r.last);
        continue;
      }
    }
    ranges[out++] = r;
  }
  ranges.resize(out);
  return filter;
}

}  // namespace lb::dataplane
