#include "common/hash.h"

#include <gtest/gtest.h>

#include <cstring>
#include <optional>
#include <random>
#include <unordered_map>

#include "common/flow_key.h"

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
  const FlowHasher hasher;
  EXPECT_EQ(hasher.Hash(k), 4159442199u);
  EXPECT_EQ(hasher.ServiceHash(k, HashFields::kSourceIp, hasher.Hash(k)), 4013859831u);
  EXPECT_EQ(StableHash64("backend", 7, 1), 9498028220557565487ull);
  // The keyed hash too: nodes of different versions that hold one secret hash alike.
  const FlowHasher keyed = FlowHasher::Keyed("0123456789abcdef");
  EXPECT_EQ(keyed.Hash(k), 3680405574u);
  EXPECT_EQ(keyed.ServiceHash(k, HashFields::kSourceIp, keyed.Hash(k)), 3970585959u);
  EXPECT_EQ(keyed.Describe(), "keyed/c43c1544");
}

// The reference values of SipHash-2-4 (Aumasson and Bernstein, 2012, appendix A and the
// reference implementation's vectors): key 00 01 .. 0f, messages 00 01 .. of length 0 and 15.
TEST(SipHashTest, MatchesThePapersVectors) {
  uint8_t key_bytes[16], message[15];
  for (int i = 0; i < 16; ++i) key_bytes[i] = uint8_t(i);
  for (int i = 0; i < 15; ++i) message[i] = uint8_t(i);
  const SipKey key{internal::LoadLittleEndian64(key_bytes), internal::LoadLittleEndian64(key_bytes + 8)};
  EXPECT_EQ((SipHash<2, 4>(key, message, 0)), 0x726fdb47dd0e0e31ull);
  EXPECT_EQ((SipHash<2, 4>(key, message, 15)), 0xa129ca6149be45e5ull);
}

FlowKey RandomKey(std::mt19937_64& rng) {
  FlowKey k;
  k.src = IpAddress::FromV4(uint32_t(rng()));
  k.dst = IpAddress::FromV4(0x0a01000a);
  k.src_port_be = uint16_t(rng());
  k.dst_port_be = 0x3500;
  k.protocol = 17;
  return k;
}

FlowKey Xor(const FlowKey& a, const FlowKey& b) {
  uint8_t x[sizeof(FlowKey)], y[sizeof(FlowKey)];
  std::memcpy(x, &a, sizeof(x));
  std::memcpy(y, &b, sizeof(y));
  for (size_t i = 0; i < sizeof(x); ++i) x[i] ^= y[i];
  FlowKey k;
  std::memcpy(&k, x, sizeof(k));
  return k;
}

// What an attacker does with the public hash: find once, offline, a difference `d`
// between two source address-and-port pairs whose CRCs are equal (a birthday search
// over 2^18 keys). CRC is linear, so then every flow k collides with k ^ d, whatever the
// seed: a client can open as many flows as it likes that all land on the backend (and
// in the flow-table bucket) of one flow of its choice. Under the keyed hash the same
// difference is worth nothing.
TEST(FlowHasherTest, ChosenCollisionsOfThePublicHashDoNotCarryOverToTheKeyedOne) {
  const FlowHasher public_hash;
  std::mt19937_64 rng(7);
  std::unordered_map<uint32_t, FlowKey> seen;
  std::optional<FlowKey> difference;
  for (int i = 0; i < (1 << 18) && !difference; ++i) {
    const FlowKey k = RandomKey(rng);
    const auto [it, fresh] = seen.emplace(public_hash.Hash(k), k);
    if (!fresh && !(it->second == k)) difference = Xor(it->second, k);
  }
  ASSERT_TRUE(difference.has_value()) << "no CRC collision among 2^18 keys";

  const FlowHasher keyed = FlowHasher::Keyed("a cluster secret of 32 bytes....");
  int public_collisions = 0, other_seed_collisions = 0, keyed_collisions = 0;
  for (int i = 0; i < 1000; ++i) {
    const FlowKey k = RandomKey(rng);
    const FlowKey twin = Xor(k, *difference);
    public_collisions += public_hash.Hash(k) == public_hash.Hash(twin);
    other_seed_collisions += Crc32c(&k, sizeof(k), 0x12345678) == Crc32c(&twin, sizeof(twin), 0x12345678);
    keyed_collisions += keyed.Hash(k) == keyed.Hash(twin);
  }
  EXPECT_EQ(public_collisions, 1000);
  EXPECT_EQ(other_seed_collisions, 1000);
  EXPECT_EQ(keyed_collisions, 0);
}

TEST(FlowHasherTest, OneSecretOneHashAnotherSecretAnother) {
  const FlowHasher a = FlowHasher::Keyed("the cluster secret, node one...");
  const FlowHasher b = FlowHasher::Keyed("the cluster secret, node one...");
  const FlowHasher other = FlowHasher::Keyed("the cluster secret, node one..!");
  EXPECT_TRUE(a.keyed());
  EXPECT_FALSE(FlowHasher{}.keyed());
  EXPECT_EQ(FlowHasher{}.Describe(), "crc32c");
  EXPECT_EQ(a.Describe(), b.Describe());
  EXPECT_NE(a.Describe(), other.Describe());
  std::mt19937_64 rng(11);
  int differ = 0;
  for (int i = 0; i < 1000; ++i) {
    const FlowKey k = RandomKey(rng);
    EXPECT_EQ(a.Hash(k), b.Hash(k));
    differ += a.Hash(k) != other.Hash(k);
  }
  EXPECT_GT(differ, 990);
}

// sessionAffinity: ClientIP hashes the source address alone, keyed or not.
TEST(FlowHasherTest, ServiceHashReadsOnlyItsFields) {
  std::mt19937_64 rng(3);
  for (const FlowHasher& h : {FlowHasher{}, FlowHasher::Keyed("0123456789abcdef")}) {
    FlowKey k = RandomKey(rng);
    FlowKey other_port = k;
    other_port.src_port_be ^= 0x0101;
    FlowKey other_dport = other_port;
    other_dport.dst_port_be ^= 0x0101;
    EXPECT_EQ(h.ServiceHash(k, HashFields::kSourceIp, h.Hash(k)),
              h.ServiceHash(other_dport, HashFields::kSourceIp, h.Hash(other_dport)));
    EXPECT_EQ(h.ServiceHash(k, HashFields::kSourceIpDestPort, h.Hash(k)),
              h.ServiceHash(other_port, HashFields::kSourceIpDestPort, h.Hash(other_port)));
    EXPECT_NE(h.ServiceHash(k, HashFields::kSourceIpDestPort, h.Hash(k)),
              h.ServiceHash(other_dport, HashFields::kSourceIpDestPort, h.Hash(other_dport)));
    EXPECT_NE(h.Hash(k), h.Hash(other_port));
  }
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
