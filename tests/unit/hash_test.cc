#include "dataplane/hash.h"

#include <gtest/gtest.h>

#include <cstring>

#include "dataplane/flow_key.h"

namespace lb::dataplane {
namespace {

TEST(Crc32cTest, MatchesTheStandardCheckValue) {
  // RFC 3720 B.4 / the CRC catalogue: CRC-32C("123456789") = 0xE3069283.
  const char* check = "123456789";
  EXPECT_EQ(~Crc32c(check, 9, ~0u), 0xE3069283u);
  uint32_t soft = ~0u;
  for (int i = 0; i < 9; ++i) soft = internal::Crc32cByteSoftware(soft, uint8_t(check[i]));
  EXPECT_EQ(~soft, 0xE3069283u);
}

TEST(Crc32cTest, TailBytesAreHashed) {
  const uint8_t a[11] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
  uint8_t b[11];
  std::memcpy(b, a, sizeof(a));
  b[10] ^= 1;
  EXPECT_NE(Crc32c(a, sizeof(a), 0), Crc32c(b, sizeof(b), 0));
}

// The instruction path takes 8, 4, 2 and 1 bytes at a time: every split of a tail must
// give the bitwise definition's value.
TEST(Crc32cTest, EveryLengthMatchesTheBitwiseDefinition) {
  uint8_t data[24];
  for (int i = 0; i < 24; ++i) data[i] = uint8_t(i * 37 + 11);
  for (size_t len = 0; len <= sizeof(data); ++len) {
    uint32_t soft = kFlowHashSeed;
    for (size_t i = 0; i < len; ++i) soft = internal::Crc32cByteSoftware(soft, data[i]);
    EXPECT_EQ(Crc32c(data, len, kFlowHashSeed), soft) << len << " bytes";
  }
}

// Every LB node, of every version, must hash a flow the same way or flows break when
// ECMP moves them between nodes during an upgrade. These values are a contract: a change
// that alters them needs a fleet-wide plan, not an update of this test.
TEST(FlowHashTest, GoldenValues) {
  FlowKey k;
  k.src = IpAddress::FromV4(0xc0000201);  // 192.0.2.1
  k.dst = IpAddress::FromV4(0x0a01000a);  // 10.1.0.10
  k.src_port_be = 0x3930;                 // 12345 in network order (on a little-endian host)
  k.dst_port_be = 0x3500;                 // 53
  k.protocol = 17;
  EXPECT_EQ(HashFlowKey(k), 4159442199u);
  EXPECT_EQ(ServiceHash(k, HashFields::kSourceIp, HashFlowKey(k)), 4013859831u);
  EXPECT_EQ(StableHash64("backend", 7, 1), 9498028220557565487ull);
}

TEST(ReduceToRangeTest, CoversTheRangeEvenly) {
  const uint32_t range = 7;
  std::vector<int> hits(range);
  for (uint64_t h = 0; h < (1ull << 32); h += 65537) ++hits[ReduceToRange(uint32_t(h), range)];
  for (int c : hits) EXPECT_NEAR(c, 65536.0 / range, 2);
  EXPECT_EQ(ReduceToRange(0xffffffffu, range), range - 1);
}

}  // namespace
}  // namespace lb::dataplane
