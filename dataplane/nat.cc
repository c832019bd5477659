#include "dataplane/nat.h"

#include <netinet/in.h>
#include <rte_byteorder.h>

#include <algorithm>

#include "common/hash.h"

namespace lb::dataplane {
namespace {

// Frees, with `free`, the expired sessions among the next `count` of `sessions` (`size`
// of them) from `cursor` on, round robin; returns how many.
template <typename Session, typename FreeFn>
uint32_t SweepExpired(const Session* sessions, uint32_t size, uint32_t& cursor, Millis now, uint32_t count,
                      FreeFn free) {
  uint32_t freed = 0;
  for (uint32_t i = 0; i < std::min(count, size); ++i) {
    const uint32_t index = cursor;
    cursor = cursor + 1 == size ? 0 : cursor + 1;
    if (sessions[index].in_use && Expired(sessions[index].deadline, now)) {
      free(index);
      ++freed;
    }
  }
  return freed;
}

}  // namespace

NatTable::NatTable(uint32_t num_addresses, uint16_t port_min, uint16_t port_max, uint32_t worker, uint32_t workers,
                   uint64_t port_secret)
    : num_addresses_(num_addresses),
      worker_(worker),
      workers_(std::max(1u, workers)),
      port_min_(port_min),
      port_max_(port_max),
      rng_(port_secret) {
  const uint32_t range = port_max >= port_min ? uint32_t(port_max - port_min) + 1 : 0;
  per_address_ = range > worker_ ? (range - worker_ + workers_ - 1) / workers_ : 0;
  num_sessions_ = 2 * num_addresses_ * per_address_;
  sessions_ = std::make_unique<NatSession[]>(num_sessions_);
  free_.resize(2 * num_addresses_);
  reclaim_cursor_.assign(2 * num_addresses_, 0);
  for (uint32_t r = 0; r < free_.size(); ++r) {
    free_[r].reserve(per_address_);
    // Popped from the back: the lowest port first.
    for (uint32_t k = per_address_; k-- > 0;) free_[r].push_back(r * per_address_ + k);
  }
  in_use_ = std::make_unique<std::atomic<uint64_t>[]>(std::max(1u, num_addresses_));
}

uint32_t NatTable::Allocate(uint8_t protocol, uint32_t preferred, const bool* family_v4, Millis now) {
  if (num_addresses_ == 0 || per_address_ == 0) return kNone;
  const uint32_t base = (protocol == IPPROTO_TCP ? 0 : 1) * num_addresses_;
  for (uint32_t i = 0; i < num_addresses_; ++i) {
    const uint32_t a = (preferred + i) % num_addresses_;
    if (family_v4[a] != family_v4[preferred % num_addresses_]) continue;
    const uint32_t range = base + a;
    // Expired sessions are returned by the sweep; when none is free yet, look for one.
    if (free_[range].empty() && reclaim_budget_ > 0) {
      const uint32_t scan = std::min(reclaim_budget_, 256u);
      reclaim_budget_ -= scan;
      Reclaim(range, now, scan);
    }
    std::vector<uint32_t>& free = free_[range];
    if (free.empty()) continue;
    if (rng_ != 0) {  // a free port chosen at random, not the most recently freed one
      rng_ ^= rng_ << 13;
      rng_ ^= rng_ >> 7;
      rng_ ^= rng_ << 17;
      std::swap(free[ReduceToRange(uint32_t(rng_ >> 32), uint32_t(free.size()))], free.back());
    }
    const uint32_t index = free.back();
    free.pop_back();
    NatSession& s = sessions_[index];
    s.in_use = true;
    s.snat_address = uint8_t(a);
    s.snat_port_be = rte_cpu_to_be_16(PortOf(index));
    in_use_[a].store(in_use_[a].load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);  // single writer
    return index;
  }
  return kNone;
}

void NatTable::Free(uint32_t index) {
  NatSession& s = sessions_[index];
  s.in_use = false;
  s.generation = (s.generation + 1) & 0xffffff;
  if (s.generation == 0) s.generation = 1;
  s.entry = nullptr;
  s.entry_deadline = nullptr;
  const uint32_t a = AddressOf(index);
  in_use_[a].store(in_use_[a].load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);  // single writer
  free_[index / per_address_].push_back(index);
}

void NatTable::Release(uint32_t index) {
  if (sessions_[index].in_use) Free(index);
}

void NatTable::Reclaim(uint32_t range, Millis now, uint32_t count) {
  uint32_t& cursor = reclaim_cursor_[range];
  for (uint32_t i = 0; i < std::min(count, per_address_); ++i) {
    const uint32_t index = range * per_address_ + cursor;
    cursor = cursor + 1 == per_address_ ? 0 : cursor + 1;
    if (sessions_[index].in_use && Expired(sessions_[index].deadline, now)) Free(index);
  }
}

uint32_t NatTable::Sweep(Millis now, uint32_t count) {
  return SweepExpired(sessions_.get(), num_sessions_, sweep_cursor_, now, count, [this](uint32_t i) { Free(i); });
}

AdoptedTable::AdoptedTable(uint32_t capacity)
    : capacity_(capacity), sessions_(std::make_unique<AdoptedSession[]>(capacity)) {
  free_.reserve(capacity);
  for (uint32_t i = capacity; i-- > 0;) free_.push_back(i);
}

uint32_t AdoptedTable::Take(Millis now) {
  // When none is free, the sweep's next slice may hold expired ones.
  if (free_.empty()) Sweep(now, std::min(capacity_, 256u));
  if (free_.empty()) return kNone;
  const uint32_t index = free_.back();
  free_.pop_back();
  sessions_[index].in_use = true;
  ++in_use_;
  return index;
}

void AdoptedTable::Release(uint32_t index) {
  AdoptedSession& s = sessions_[index];
  if (!s.in_use) return;
  s.in_use = false;
  s.carried = false;
  s.generation = (s.generation + 1) & 0xffffff;
  if (s.generation == 0) s.generation = 1;
  s.client_entry = s.reply_entry = {};
  --in_use_;
  free_.push_back(index);
}

uint32_t AdoptedTable::Sweep(Millis now, uint32_t count) {
  return SweepExpired(sessions_.get(), capacity_, sweep_cursor_, now, count, [this](uint32_t i) { Release(i); });
}

}  // namespace lb::dataplane
