// FlowTable: a worker's connection table, 5-tuple -> backend.
//
// Fixed capacity, set-associative: a bucket is one cache line of eight 32-bit hash
// signatures and eight deadlines, and the eight 48-byte entries it indexes live in a
// parallel array, so a flow costs 56 bytes and a miss or an aging check touches one line.
// Entries expire by deadline (lazily on lookup and insert, and by an incremental sweep).
// A bucket full of live flows takes no new one: the caller then forwards by hash alone,
// so a flood of new flows degrades to stateless Maglev instead of evicting live
// connections (and thrashing).
//
// Thread model: worker lcore only (one table per worker; no locks, no atomics on the hot
// path). occupied() may be read by any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include "dataplane/flow_key.h"
#include "dataplane/huge_array.h"

namespace lb::dataplane {

// Connection state as seen from the client side (DSR sees one direction only).
enum class FlowState : uint8_t {
  kUdp,
  kTcpSynSent,      // only a SYN seen so far: short timeout, so SYN floods age out fast
  kTcpEstablished,  // a packet without SYN followed
  kTcpClosing,      // FIN or RST seen
  kOther,
};

struct FlowEntry {
  FlowKey key;
  uint32_t backend_slot;
  uint32_t backend_generation : 24;  // the slot's generation when this flow was pinned
  uint32_t state : 8;                // FlowState
};
static_assert(sizeof(FlowEntry) == 48);

// Time in milliseconds on a wrapping 32-bit clock. Deadlines compare with signed
// differences, which is correct while a flow's timeout is under 24 days.
using Millis = uint32_t;
inline bool Expired(Millis deadline, Millis now) { return int32_t(deadline - now) <= 0; }

class FlowTable {
 public:
  static constexpr uint32_t kWays = 8;

  // A found or claimed entry with its deadline (held in the bucket header).
  struct Slot {
    FlowEntry* entry = nullptr;
    Millis* deadline = nullptr;
    explicit operator bool() const { return entry != nullptr; }
  };

  // Room for at least `capacity` flows (rounded up to a power of two of buckets).
  explicit FlowTable(uint32_t capacity);

  uint32_t capacity() const { return num_buckets_ * kWays; }
  // Slots that hold a flow, live or expired-but-not-yet-reclaimed. Any thread.
  uint64_t occupied() const { return occupied_.load(std::memory_order_relaxed); }
  static constexpr size_t kBytesPerFlow = sizeof(FlowEntry) + 2 * sizeof(uint32_t);

  void Prefetch(uint32_t hash) const { __builtin_prefetch(&buckets_[hash & mask_]); }

  // Second stage, once the bucket header is (likely) in cache: prefetches the entry whose
  // signature matches, so that the key comparison in Find() does not wait for memory.
  void PrefetchEntry(uint32_t hash) const {
    const uint32_t index = hash & mask_;
    const Bucket& b = buckets_[index];
    const uint32_t sig = Signature(hash);
    for (uint32_t way = 0; way < kWays; ++way) {
      if (b.sig[way] == sig) {
        // A 48-byte entry may straddle two cache lines: fetch both.
        const char* e = reinterpret_cast<const char*>(&entries_[index * kWays + way]);
        __builtin_prefetch(e);
        __builtin_prefetch(e + sizeof(FlowEntry) - 1);
        return;
      }
    }
  }

  // The live entry for `key`, or an empty Slot.
  Slot Find(const FlowKey& key, uint32_t hash, Millis now) {
    Bucket& b = buckets_[hash & mask_];
    const uint32_t sig = Signature(hash);
    for (uint32_t way = 0; way < kWays; ++way) {
      if (b.sig[way] != sig || Expired(b.deadline[way], now)) continue;
      FlowEntry& e = entries_[(hash & mask_) * kWays + way];
      if (e.key == key) return {&e, &b.deadline[way]};
    }
    return {};
  }

  // Takes a free or expired way of `key`'s bucket and stores `key` in it; the caller
  // fills in the rest and the deadline. An empty Slot when every way holds a live flow.
  // `*reclaimed` says whether an expired flow was overwritten.
  Slot Claim(const FlowKey& key, uint32_t hash, Millis now, bool* reclaimed) {
    const uint32_t index = hash & mask_;
    Bucket& b = buckets_[index];
    for (uint32_t way = 0; way < kWays; ++way) {
      const bool empty = b.sig[way] == 0;
      if (!empty && !Expired(b.deadline[way], now)) continue;
      *reclaimed = !empty;
      if (empty) occupied_.store(occupied_.load(std::memory_order_relaxed) + 1,
                                 std::memory_order_relaxed);  // single writer: see counters.h
      b.sig[way] = Signature(hash);
      FlowEntry& e = entries_[index * kWays + way];
      e.key = key;
      return {&e, &b.deadline[way]};
    }
    return {};
  }

  // Frees the expired flows of the next `num_buckets` buckets (round robin); returns how
  // many. Call once per poll loop so that occupancy follows real use.
  uint32_t Sweep(Millis now, uint32_t num_buckets);

 private:
  struct alignas(64) Bucket {
    uint32_t sig[kWays];  // 0: empty
    Millis deadline[kWays];
  };
  static_assert(sizeof(Bucket) == 64);

  // Never 0, which marks an empty way. Bit 0 is also a bucket-index bit, so clearing
  // it loses nothing within a bucket.
  static uint32_t Signature(uint32_t hash) { return hash | 1u; }

  uint32_t num_buckets_;
  uint32_t mask_;
  uint32_t sweep_cursor_ = 0;
  HugeArray<Bucket> buckets_;
  HugeArray<FlowEntry> entries_;
  std::atomic<uint64_t> occupied_{0};
};

}  // namespace lb::dataplane
