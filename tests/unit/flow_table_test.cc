#include "dataplane/flow_table.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <unordered_set>
#include <vector>

namespace lb::dataplane {
namespace {

FlowKey Key(uint32_t n) {
  FlowKey k;
  k.src = IpAddress::FromV4(0xc0000000u + n);
  k.dst = IpAddress::FromV4(0x0a01000a);
  k.src_port_be = uint16_t(n);
  k.dst_port_be = 80;
  k.protocol = 6;
  return k;
}

FlowTag TagOf(const FlowTable& t, uint32_t n) { return t.Tag(Key(n), FlowHasher{}.Hash(Key(n))); }

TEST(FlowTableTest, InsertFindAndExpire) {
  FlowTable t(1024);
  EXPECT_GE(t.capacity(), 1024u);
  const FlowTag tag = TagOf(t, 1);
  EXPECT_FALSE(t.Find(tag, 100));
  bool reclaimed = true;
  auto s = t.Claim(tag, 100, &reclaimed);
  ASSERT_TRUE(s);
  EXPECT_FALSE(reclaimed);
  s.entry->backend_slot = 7;
  *s.deadline = 100 + 50;
  EXPECT_EQ(t.occupied(), 1u);
  auto found = t.Find(tag, 149);
  ASSERT_TRUE(found);
  EXPECT_EQ(found.entry->backend_slot, 7u);
  EXPECT_FALSE(t.Find(tag, 150)) << "expired at its deadline";
  EXPECT_FALSE(t.Find(TagOf(t, 2), 120));
}

TEST(FlowTableTest, DeadlinesSurviveClockWrap) {
  FlowTable t(64);
  const FlowTag tag = TagOf(t, 3);
  bool reclaimed;
  auto s = t.Claim(tag, 0xfffffff0u, &reclaimed);
  ASSERT_TRUE(s);
  *s.deadline = 0xfffffff0u + 100;  // wraps past zero
  EXPECT_TRUE(t.Find(tag, 0x10));
  EXPECT_FALSE(t.Find(tag, 0x60));
}

// The fingerprint covers every byte of the key, differs per table secret, and is never 0
// (the empty way).
TEST(FlowTableTest, FingerprintsTellKeysApart) {
  FlowTable a(2, /*secret=*/1), b(2, /*secret=*/2);
  const FlowKey k = Key(5);
  EXPECT_NE(a.Tag(k, 0).fingerprint, b.Tag(k, 0).fingerprint);
  for (size_t byte = 0; byte < sizeof(FlowKey) - 3; ++byte) {  // not the zero padding
    FlowKey other = k;
    reinterpret_cast<uint8_t*>(&other)[byte] ^= 0x10;
    EXPECT_NE(a.Tag(k, 0).fingerprint, a.Tag(other, 0).fingerprint) << "byte " << byte;
  }
  std::unordered_set<uint64_t> seen;
  for (uint32_t n = 0; n < 1'000'000; ++n) {
    const uint64_t f = a.Tag(Key(n), 0).fingerprint;
    EXPECT_NE(f, 0u);
    seen.insert(f);
  }
  EXPECT_EQ(seen.size(), 1'000'000u) << "no collision among a million keys";
}

// Two buckets, so every flow's home and second bucket are the two of them: six live
// flows fill the table; a seventh is refused (a live flow is never evicted); once one
// expires, its way is reused.
TEST(FlowTableTest, FullTableRefusesThenReclaims) {
  FlowTable t(2);
  ASSERT_EQ(t.capacity(), 2u);
  bool reclaimed;
  for (uint32_t i = 0; i < 6; ++i) {
    auto s = t.Claim(TagOf(t, i), 0, &reclaimed);
    ASSERT_TRUE(s) << i;
    *s.deadline = i == 3 ? 10 : 1000;
  }
  EXPECT_FALSE(t.Claim(TagOf(t, 6), 5, &reclaimed));
  auto s = t.Claim(TagOf(t, 6), 10, &reclaimed);
  ASSERT_TRUE(s);
  EXPECT_TRUE(reclaimed);
  *s.deadline = 1000;
  EXPECT_TRUE(t.Find(TagOf(t, 6), 11));
  EXPECT_FALSE(t.Find(TagOf(t, 3), 11));
  for (uint32_t i : {0u, 1u, 2u, 4u, 5u}) EXPECT_TRUE(t.Find(TagOf(t, i), 11)) << i;
  EXPECT_EQ(t.occupied(), 6u);
}

// Against a model: random inserts with random lifetimes, lookups, sweeps, in a small
// table where a third of the flows live in their second bucket. Every flow the table
// took is found while live and not after; none it refused is found. This is what the
// home buckets' overflow counts must get right (a count that drops to zero too early
// hides a flow in its second bucket).
TEST(FlowTableTest, AgreesWithAModel) {
  FlowTable t(64);
  std::mt19937 rng(7);
  std::map<uint32_t, Millis> live;  // flow -> deadline, for the flows the table holds
  Millis now = 1;
  // Which cache line (bucket) each claim landed in, by home bucket: a home whose flows
  // landed in two lines sent some to their second bucket.
  std::map<uint32_t, std::set<uintptr_t>> lines_by_home;
  for (int round = 0; round < 20'000; ++round) {
    const uint32_t flow = rng() % 400;
    const FlowTag tag = TagOf(t, flow);
    auto it = live.find(flow);
    const bool expected = it != live.end() && !Expired(it->second, now);
    auto found = t.Find(tag, now);
    ASSERT_EQ(bool(found), expected) << "flow " << flow << " round " << round;
    if (!found) {
      bool reclaimed;
      if (auto s = t.Claim(tag, now, &reclaimed)) {
        *s.deadline = now + 1 + rng() % 200;
        live[flow] = *s.deadline;
        lines_by_home[tag.hash & (t.capacity() - 1)].insert(reinterpret_cast<uintptr_t>(s.entry) & ~uintptr_t(63));
      } else {
        live.erase(flow);
      }
    }
    if (round % 7 == 0) t.Sweep(now, 8);
    now += rng() % 3;
  }
  int homes_that_overflowed = 0;
  for (const auto& [home, lines] : lines_by_home) homes_that_overflowed += lines.size() > 1;
  EXPECT_GT(homes_that_overflowed, 32) << "the test must exercise second buckets";
  uint64_t live_now = 0;
  for (const auto& [flow, deadline] : live) live_now += !Expired(deadline, now);
  EXPECT_GE(t.occupied(), live_now);
  for (uint32_t b = 0; b < t.capacity(); b += 8) t.Sweep(now, 8);
  EXPECT_EQ(t.occupied(), live_now) << "the sweep frees exactly the expired flows";
}

TEST(FlowTableTest, SweepFreesExpiredFlows) {
  FlowTable t(4096);
  bool reclaimed;
  int short_lived = 0;
  std::vector<bool> held(3000);
  for (uint32_t i = 0; i < 3000; ++i) {
    auto s = t.Claim(TagOf(t, i), 0, &reclaimed);
    if (!s) continue;
    held[i] = true;
    short_lived += i % 2 == 0;
    *s.deadline = i % 2 ? 100 : 10;
  }
  const auto inserted = uint64_t(std::count(held.begin(), held.end(), true));
  EXPECT_GT(inserted, 2990u);
  EXPECT_EQ(t.occupied(), inserted);
  uint32_t freed = 0;
  for (uint32_t i = 0; i < t.capacity(); i += 64) freed += t.Sweep(50, 64);
  EXPECT_EQ(int(freed), short_lived);
  EXPECT_EQ(t.occupied(), inserted - freed);
  for (uint32_t i = 0; i < 3000; ++i) EXPECT_EQ(bool(t.Find(TagOf(t, i), 50)), held[i] && i % 2 == 1) << i;
}

TEST(FlowTableTest, HoldsNearlyAllOfItsCapacity) {
  // Offered exactly `capacity` distinct flows (one per bucket on average), three ways
  // and a second choice keep nearly all of them (one choice would refuse 2.3%).
  FlowTable t(1 << 16);
  bool reclaimed;
  uint32_t kept = 0;
  for (uint32_t i = 0; i < t.capacity(); ++i) {
    auto s = t.Claim(TagOf(t, i), 0, &reclaimed);
    if (!s) continue;
    *s.deadline = 1000;
    ++kept;
  }
  EXPECT_GT(double(kept) / t.capacity(), 0.997);
  EXPECT_EQ(FlowTable::kBytesPerFlow, 64u);
}

}  // namespace
}  // namespace lb::dataplane
