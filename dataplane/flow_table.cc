#include "dataplane/flow_table.h"

#include <bit>

namespace lb::dataplane {

FlowTable::FlowTable(uint32_t capacity)
    : num_buckets_(std::bit_ceil(std::max<uint32_t>(1, (capacity + kWays - 1) / kWays))),
      mask_(num_buckets_ - 1),
      buckets_(num_buckets_),
      entries_(size_t(num_buckets_) * kWays) {}

uint32_t FlowTable::Sweep(Millis now, uint32_t num_buckets) {
  uint32_t freed = 0;
  for (uint32_t i = 0; i < num_buckets; ++i) {
    Bucket& b = buckets_[sweep_cursor_];
    sweep_cursor_ = (sweep_cursor_ + 1) & mask_;
    for (uint32_t way = 0; way < kWays; ++way) {
      if (b.sig[way] != 0 && Expired(b.deadline[way], now)) {
        b.sig[way] = 0;
        ++freed;
      }
    }
  }
  if (freed != 0) {
    occupied_.store(occupied_.load(std::memory_order_relaxed) - freed, std::memory_order_relaxed);
  }
  return freed;
}

}  // namespace lb::dataplane
