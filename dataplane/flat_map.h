// FlatMap: an immutable open-addressing hash map for the per-packet lookups of a
// snapshot (VIP -> VIP record, service key -> service).
//
// Built once by the control thread, then only read: any thread may call Find() on a
// published map without synchronisation. Linear probing in a power-of-two array at most
// half full; keys are hashed and compared as bytes, so a Key must have no padding whose
// value is undefined (give it explicit, zeroed pad fields).
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include "common/hash.h"

namespace lb::dataplane {

template <typename Key, typename Value>
class FlatMap {
  static_assert(std::has_unique_object_representations_v<Key>, "FlatMap keys are hashed as bytes: no implicit padding");

 public:
  FlatMap() : slots_(1), mask_(0) {}

  // Keys must be distinct; the last of duplicates wins.
  explicit FlatMap(const std::vector<std::pair<Key, Value>>& items) {
    const size_t size = std::bit_ceil(std::max<size_t>(2, items.size() * 2));
    slots_.resize(size);
    mask_ = uint32_t(size - 1);
    for (const auto& [key, value] : items) {
      uint32_t i = Hash(key) & mask_;
      while (slots_[i].used && !Same(slots_[i].key, key)) i = (i + 1) & mask_;
      slots_[i] = Slot{key, value, true};
    }
  }

  const Value* Find(const Key& key) const {
    for (uint32_t i = Hash(key) & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (!s.used) return nullptr;  // the map is at most half full: an empty slot exists
      if (Same(s.key, key)) return &s.value;
    }
  }

  void Prefetch(const Key& key) const { __builtin_prefetch(&slots_[Hash(key) & mask_]); }

 private:
  struct Slot {
    Key key{};
    Value value{};
    bool used = false;
  };
  static uint32_t Hash(const Key& key) { return FlowHash(&key, sizeof(key)); }
  static bool Same(const Key& a, const Key& b) { return std::memcmp(&a, &b, sizeof(Key)) == 0; }

  std::vector<Slot> slots_;
  uint32_t mask_;
};

}  // namespace lb::dataplane
