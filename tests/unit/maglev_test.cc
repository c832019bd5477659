#include "common/maglev.h"

#include "common/hash.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>

namespace lb::dataplane {
namespace {

std::vector<MaglevBackend> MakeBackends(int n, uint32_t weight = 1) {
  std::vector<MaglevBackend> b;
  for (int i = 0; i < n; ++i) {
    b.push_back({IpAddress::FromV4(0x0a000000u + uint32_t(i)), 53, weight});
  }
  return b;
}

// Entries per backend identity (address), so tables built from differently ordered
// inputs can be compared.
std::vector<IpAddress> Resolve(const std::vector<uint16_t>& table, const std::vector<MaglevBackend>& backends) {
  std::vector<IpAddress> r;
  r.reserve(table.size());
  for (uint16_t i : table) r.push_back(backends[i].address);
  return r;
}

std::map<IpAddress, int> Counts(const std::vector<uint16_t>& table, const std::vector<MaglevBackend>& backends) {
  std::map<IpAddress, int> c;
  for (uint16_t i : table) ++c[backends[i].address];
  return c;
}

TEST(MaglevTest, SameTableForEveryInsertionOrder) {
  auto backends = MakeBackends(50);
  backends[7].weight = 3;
  auto reference = BuildMaglevTable(backends, 10007);
  ASSERT_TRUE(reference.ok());
  const auto expected = Resolve(*reference, backends);
  std::mt19937 rng(42);
  for (int round = 0; round < 5; ++round) {
    std::shuffle(backends.begin(), backends.end(), rng);
    auto t = BuildMaglevTable(backends, 10007);
    ASSERT_TRUE(t.ok());
    EXPECT_EQ(Resolve(*t, backends), expected) << "order round " << round;
  }
}

// Balance with M >= 100 N: with equal weights each backend takes one entry per round,
// so counts differ by at most one and max/mean <= 1 + N/M <= 1.01.
TEST(MaglevTest, BalancedWithinOnePercentAtHundredEntriesPerBackend) {
  for (auto [n, m] : std::vector<std::pair<int, uint32_t>>{{100, 10007}, {655, 65537}, {3, 307}}) {
    auto backends = MakeBackends(n);
    auto t = BuildMaglevTable(backends, m);
    ASSERT_TRUE(t.ok());
    ASSERT_EQ(t->size(), m);
    const auto counts = Counts(*t, backends);
    ASSERT_EQ(int(counts.size()), n);
    int max = 0;
    for (const auto& [addr, c] : counts) max = std::max(max, c);
    const double mean = double(m) / n;
    EXPECT_LE(max / mean, 1.01) << "n=" << n << " m=" << m;
  }
}

TEST(MaglevTest, WeightsAreRespected) {
  auto backends = MakeBackends(4);
  backends[0].weight = 4;
  backends[1].weight = 2;
  backends[2].weight = 1;
  backends[3].weight = 1;
  auto t = BuildMaglevTable(backends, 65537);
  ASSERT_TRUE(t.ok());
  const auto counts = Counts(*t, backends);
  const double unit = 65537.0 / 8;
  EXPECT_NEAR(counts.at(backends[0].address) / unit, 4.0, 0.04);
  EXPECT_NEAR(counts.at(backends[1].address) / unit, 2.0, 0.02);
  EXPECT_NEAR(counts.at(backends[2].address) / unit, 1.0, 0.01);
  EXPECT_NEAR(counts.at(backends[3].address) / unit, 1.0, 0.01);
}

TEST(MaglevTest, ZeroWeightTakesNothingAndAllZeroIsEmpty) {
  auto backends = MakeBackends(3);
  backends[1].weight = 0;
  auto t = BuildMaglevTable(backends, 307);
  ASSERT_TRUE(t.ok());
  EXPECT_THAT(*t, ::testing::Not(::testing::Contains(uint16_t{1})));
  for (auto& b : backends) b.weight = 0;
  auto empty = BuildMaglevTable(backends, 307);
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
}

// Removing one of N backends must move that backend's entries and only a small share of
// the others (Maglev §3.4 and Fig. 12 trade a little disruption for balance). Measured
// over five removal positions: at most 0.63% of the other entries move at N=1000 and
// at most 0.60% at N=100 (M=65537); 1% is asserted.
TEST(MaglevTest, RemovingOneBackendMovesLittleElse) {
  constexpr uint32_t kM = 65537;
  for (int n : {1000, 100}) {
    double worst = 0;
    for (int removed_index : {0, n / 4, n / 2, 3 * n / 4, n - 1}) {
      auto backends = MakeBackends(n);
      auto before = BuildMaglevTable(backends, kM);
      ASSERT_TRUE(before.ok());
      const auto before_addr = Resolve(*before, backends);
      const IpAddress removed = backends[removed_index].address;
      backends.erase(backends.begin() + removed_index);
      auto after = BuildMaglevTable(backends, kM);
      ASSERT_TRUE(after.ok());
      const auto after_addr = Resolve(*after, backends);
      int others = 0, moved = 0;
      for (uint32_t i = 0; i < kM; ++i) {
        if (before_addr[i] == removed) {
          EXPECT_NE(after_addr[i], removed);
          continue;
        }
        ++others;
        moved += before_addr[i] != after_addr[i];
      }
      worst = std::max(worst, double(moved) / others);
    }
    std::printf("n=%d m=%u: at most %.4f%% of other entries moved\n", n, kM, 100 * worst);
    EXPECT_LE(worst, 0.01) << "n=" << n;
  }
}

TEST(MaglevTest, RejectsBadInput) {
  auto backends = MakeBackends(3);
  EXPECT_EQ(BuildMaglevTable(backends, 65536).status().code(),
            absl::StatusCode::kInvalidArgument);  // not prime
  EXPECT_EQ(BuildMaglevTable(backends, 2).status().code(), absl::StatusCode::kInvalidArgument);
  backends.push_back(backends[1]);
  auto dup = BuildMaglevTable(backends, 307);
  EXPECT_EQ(dup.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(dup.status().message()), ::testing::HasSubstr("backends[3]"));
}

// Every LB node, of every version, must build the same table from the same backends, or
// flows break when ECMP moves them between nodes during an upgrade. This pins the table
// (through a hash of its bytes) for a fixed set: a change that alters it is a change of
// the fleet-wide contract, not an update of this test.
TEST(MaglevTest, GoldenTable) {
  auto backends = MakeBackends(10);
  backends[3].weight = 2;
  auto t = BuildMaglevTable(backends, 1009);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(StableHash64(t->data(), t->size() * sizeof(uint16_t), 0), 14950467993239828044ull);
  EXPECT_EQ((*t)[0], 0);
}

TEST(MaglevTest, IsPrime) {
  EXPECT_TRUE(IsPrime(2));
  EXPECT_TRUE(IsPrime(65537));
  EXPECT_TRUE(IsPrime(655373));
  EXPECT_TRUE(IsPrime(kMaxMaglevTableSize));
  EXPECT_FALSE(IsPrime(1));
  EXPECT_FALSE(IsPrime(65535));
  EXPECT_FALSE(IsPrime(4294967295u));
}

}  // namespace
}  // namespace lb::dataplane
