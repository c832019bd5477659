#include "dataplane/flow_table.h"

#include <algorithm>
#include <bit>
#include <random>

namespace lb::dataplane {

static_assert(sizeof(FlowKey) == 40, "KeyedHash40 reads a FlowKey as five words");

uint64_t FlowTable::RandomSecret() {
  std::random_device rd;  // getrandom(2)
  return uint64_t(rd()) << 32 | rd();
}

FlowTable::FlowTable(uint32_t capacity, uint64_t secret)
    : num_buckets_(std::bit_ceil(std::clamp<uint32_t>(capacity, 2, 1u << 31))),
      mask_(num_buckets_ - 1),
      fingerprint_(secret),
      buckets_(num_buckets_) {}

FlowTable::Slot FlowTable::Claim(const FlowTag& tag, Millis now, bool* reclaimed) {
  *reclaimed = false;
  const uint32_t home = tag.hash & mask_;
  uint32_t index = home;
  int way = TakeWay(home, tag.fingerprint, now, /*guest=*/false, reclaimed);
  if (way < 0) {
    index = Alternate(home, tag.fingerprint);
    way = TakeWay(index, tag.fingerprint, now, /*guest=*/true, reclaimed);
    if (way < 0) return {};
    uint16_t& overflowed = buckets_[home].overflowed;
    if (overflowed != kOverflowSaturated) ++overflowed;
  }
  Bucket& b = buckets_[index];
  return {&b.entry[way], &b.deadline[way]};
}

int FlowTable::TakeWay(uint32_t index, uint64_t fingerprint, Millis now, bool guest, bool* reclaimed) {
  Bucket& b = buckets_[index];
  for (uint32_t way = 0; way < kWays; ++way) {
    const bool empty = b.fingerprint[way] == 0;
    if (!empty && !Expired(b.deadline[way], now)) continue;
    *reclaimed = !empty;
    if (!empty) Free(index, way);
    b.fingerprint[way] = fingerprint;
    if (guest) b.guests |= uint8_t(1u << way);
    AddOccupied(1);
    return int(way);
  }
  return -1;
}

void FlowTable::Free(uint32_t index, uint32_t way) {
  Bucket& b = buckets_[index];
  if (b.guests & (1u << way)) {
    b.guests &= uint8_t(~(1u << way));
    uint16_t& overflowed = buckets_[Alternate(index, b.fingerprint[way])].overflowed;  // its home
    if (overflowed != kOverflowSaturated) --overflowed;
  }
  b.fingerprint[way] = 0;
  AddOccupied(-1);
}

uint32_t FlowTable::Sweep(Millis now, uint32_t num_buckets) {
  uint32_t freed = 0;
  for (uint32_t i = 0; i < num_buckets; ++i) {
    const uint32_t index = sweep_cursor_;
    sweep_cursor_ = (sweep_cursor_ + 1) & mask_;
    Bucket& b = buckets_[index];
    for (uint32_t way = 0; way < kWays; ++way) {
      if (b.fingerprint[way] != 0 && Expired(b.deadline[way], now)) {
        Free(index, way);
        ++freed;
      }
    }
  }
  return freed;
}

}  // namespace lb::dataplane
