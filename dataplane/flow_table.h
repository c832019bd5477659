// FlowTable: a worker's connection table, 5-tuple -> backend.
//
// A packet of an established flow touches one cache line: a bucket is a 64-byte line of
// three ways, and a way holds everything a hit needs (a 64-bit fingerprint of the
// 5-tuple, the deadline, the backend slot and generation, the state), no key. A flow is
// known by its tag: the flow hash picks its home bucket, the fingerprint (keyed by a
// secret of this table, see KeyedHash40) tells it from the others there. Two flows are
// confused only if their fingerprints are equal: 2^-64 per way and lookup, and not
// something an outsider can arrange. Flows that need the whole key (NAT) keep it in
// their session and check it there.
//
// Two choices: a flow whose home bucket is full of live flows goes to a second bucket
// chosen by its fingerprint (cuckoo hashing's partial-key trick, without moving flows),
// and the home bucket counts such flows, so that lookups visit the second bucket only
// when the home has sent a flow there. At one flow per bucket (capacity()) about 2% of
// flows live in their second bucket and 0.1% find no room; without the second choice,
// three ways would refuse 2.3%. A flow that finds no room is not inserted: the caller then
// forwards it by hash alone, so a flood of new flows degrades to stateless Maglev instead
// of evicting live connections (and thrashing).
//
// Entries expire by deadline (lazily on lookup and insert, and by an incremental sweep).
//
// Thread model: worker lcore only (one table per worker; no locks, no atomics on the hot
// path). occupied() may be read by any thread.
#pragma once

#include <atomic>
#include <cstdint>

#include "common/flow_key.h"
#include "common/millis.h"
#include "dataplane/huge_array.h"

namespace lb::dataplane {

// Connection state as seen from the client side (DSR sees one direction only).
enum class FlowState : uint8_t {
  kUdp,
  kTcpSynSent,      // only a SYN seen so far: short timeout, so SYN floods age out fast
  kTcpEstablished,  // a packet without SYN followed
  kTcpClosing,      // FIN or RST seen
  kOther,
  // The first packet this node saw had no SYN: a connection that ECMP moved here, or a
  // spoofed ACK. The SYN timeout until a second packet of the flow confirms it, so that
  // an ACK flood ages out as fast as a SYN flood.
  kTcpMidstream,
};

// What a way holds for its flow besides the fingerprint and deadline.
struct FlowEntry {
  uint32_t backend_slot;
  uint32_t backend_generation : 24;  // the slot's generation when this flow was pinned
  uint32_t state : 8;                // FlowState
};
static_assert(sizeof(FlowEntry) == 8);

// What FlowEntry::state holds: the FlowState in its low bits, and which kind of entry it
// is (the worker's; backend_slot means something else for each kind):
//   a DSR flow:           FlowState [| kAnnouncedFlag] [| kLearnedFlag]   a backend slot
//   a NAT session's:      kNatEntryFlag | FlowState                        a NatTable index
//   an adopted session's: kNatEntryFlag | kLearnedFlag | FlowState         an AdoptedTable index
inline constexpr uint8_t kStateMask = 0x1f;
inline constexpr uint8_t kAnnouncedFlag = 0x20;  // flow sync: the peers know this flow
inline constexpr uint8_t kLearnedFlag = 0x40;    // flow sync: a peer pinned it (no packet came here yet)
inline constexpr uint8_t kNatEntryFlag = 0x80;
inline constexpr uint8_t kAdoptedEntry = kNatEntryFlag | kLearnedFlag;
inline bool IsLearnedFlowEntry(const FlowEntry& e) { return (e.state & kAdoptedEntry) == kLearnedFlag; }
inline bool IsSessionEntry(const FlowEntry& e) { return (e.state & kAdoptedEntry) == kNatEntryFlag; }
inline bool IsAdoptedEntry(const FlowEntry& e) { return (e.state & kAdoptedEntry) == kAdoptedEntry; }

// A flow-table lookup answered by a worker for the control thread (Worker::QueryFlow,
// ExplainFlow).
struct FlowAnswer {
  bool found = false;
  uint32_t backend_slot = 0;
  uint32_t backend_generation = 0;
};

// How the table knows a flow (FlowTable::Tag).
struct FlowTag {
  uint32_t hash = 0;         // HashFlowKey: picks the home bucket
  uint64_t fingerprint = 0;  // keyed, never 0 (0 marks an empty way)
};

class FlowTable {
 public:
  static constexpr uint32_t kWays = 3;

  // A found or claimed way.
  struct Slot {
    FlowEntry* entry = nullptr;
    Millis* deadline = nullptr;
    explicit operator bool() const { return entry != nullptr; }
  };

  // Sized for `capacity` flows (rounded up to a power of two, at least 2): one bucket,
  // 64 bytes, per flow. `secret` keys the fingerprints; by default a random one.
  explicit FlowTable(uint32_t capacity, uint64_t secret = RandomSecret());

  // The largest capacity a program should ask for: 16 GiB of table.
  static constexpr uint32_t kMaxCapacity = 1u << 28;
  // The flows the table is sized for (it has three ways for each).
  uint32_t capacity() const { return num_buckets_; }
  static constexpr size_t kBytesPerFlow = 64;
  // Ways that hold a flow, live or expired-but-not-yet-reclaimed. Any thread.
  uint64_t occupied() const { return occupied_.load(std::memory_order_relaxed); }

  FlowTag Tag(const FlowKey& key, uint32_t hash) const { return {hash, fingerprint_(&key) | 1}; }

  void Prefetch(uint32_t hash) const { __builtin_prefetch(&buckets_[hash & mask_]); }
  // The live entry of the flow, or an empty Slot.
  Slot Find(const FlowTag& tag, Millis now) {
    const uint32_t home = tag.hash & mask_;
    if (Slot s = FindIn(home, tag.fingerprint, now)) return s;
    if (buckets_[home].overflowed == 0) return {};
    return FindIn(Alternate(home, tag.fingerprint), tag.fingerprint, now);
  }

  // Takes a free or expired way for a flow that Find() did not find, in its home bucket
  // or else its second one; the caller fills in the entry and the deadline. An empty Slot
  // when both are full of live flows. `*reclaimed` says whether an expired flow was
  // overwritten.
  Slot Claim(const FlowTag& tag, Millis now, bool* reclaimed);

  // Frees the expired flows of the next `num_buckets` buckets (round robin); returns how
  // many. Call once per poll loop so that occupancy follows real use.
  uint32_t Sweep(Millis now, uint32_t num_buckets);

  static uint64_t RandomSecret();

 private:
  static constexpr uint16_t kOverflowSaturated = UINT16_MAX;

  struct alignas(64) Bucket {
    uint64_t fingerprint[kWays];  // 0: empty
    Millis deadline[kWays];
    FlowEntry entry[kWays];
    // Flows whose home this is, held in their second bucket. Saturates: a bucket that
    // sent that many away is always searched twice.
    uint16_t overflowed;
    uint8_t guests;  // bit w: way w holds a flow whose home is another bucket
    uint8_t unused;
  };
  static_assert(sizeof(Bucket) == 64);

  // A flow's second bucket. Its own inverse (home = Alternate(second, fingerprint)), and
  // never the home itself while there are two buckets or more.
  uint32_t Alternate(uint32_t index, uint64_t fingerprint) const {
    return (index ^ (uint32_t(fingerprint >> 32) | 1u)) & mask_;
  }

  Slot FindIn(uint32_t index, uint64_t fingerprint, Millis now) {
    Bucket& b = buckets_[index];
    for (uint32_t way = 0; way < kWays; ++way) {
      if (b.fingerprint[way] == fingerprint && !Expired(b.deadline[way], now)) {
        return {&b.entry[way], &b.deadline[way]};
      }
    }
    return {};
  }

  // A free or expired way of bucket `index`, taken for `fingerprint`; -1 when none.
  int TakeWay(uint32_t index, uint64_t fingerprint, Millis now, bool guest, bool* reclaimed);
  // Empties way `way` of bucket `index` (bookkeeping for guests included).
  void Free(uint32_t index, uint32_t way);
  void AddOccupied(int64_t delta) {  // single writer: see counters.h
    occupied_.store(occupied_.load(std::memory_order_relaxed) + uint64_t(delta), std::memory_order_relaxed);
  }

  uint32_t num_buckets_;
  uint32_t mask_;
  uint32_t sweep_cursor_ = 0;
  KeyedHash40 fingerprint_;
  HugeArray<Bucket> buckets_;
  std::atomic<uint64_t> occupied_{0};
};

}  // namespace lb::dataplane
