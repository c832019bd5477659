// Hash functions whose values are part of the appliance's contract.
//
// Every LB node must pick the same backend for the same packet, so the flow hash and the
// Maglev permutation hash must give the same value on every node, every build and every
// CPU: CRC32C (Castagnoli, RFC 3720 App. B.4) with a fixed seed, finished with
// MurmurHash3's fmix32 so that every output bit depends on every input bit (Maglev reads
// the high bits). tests/unit/hash_test.cc pins golden values. Pure functions: any thread.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#if defined(__SSE4_2__)
#include <nmmintrin.h>
#endif

namespace lb {

inline constexpr uint32_t kFlowHashSeed = 0x9e3779b9;

namespace internal {

inline uint32_t Crc32cByteSoftware(uint32_t crc, uint8_t byte) {
  crc ^= byte;
  for (int i = 0; i < 8; ++i) crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1u)));
  return crc;
}

}  // namespace internal

// CRC32C over `len` bytes. On x86 with SSE4.2 it uses the crc32 instruction, eight bytes
// at a time; elsewhere a bitwise loop with the same result.
inline uint32_t Crc32c(const void* data, size_t len, uint32_t crc) {
  const auto* p = static_cast<const uint8_t*>(data);
#if defined(__SSE4_2__)
  uint64_t c = crc;
#pragma GCC unroll 8  // keys are short and of constant length: no loop left
  for (; len >= 8; len -= 8, p += 8) {
    uint64_t word;
    std::memcpy(&word, p, 8);
    c = _mm_crc32_u64(c, word);
  }
  crc = uint32_t(c);
  // The tail in at most three steps (4, 2, 1 bytes): the same CRC as byte by byte.
  if (len & 4) {
    uint32_t word;
    std::memcpy(&word, p, 4);
    crc = _mm_crc32_u32(crc, word);
    p += 4;
  }
  if (len & 2) {
    uint16_t half;
    std::memcpy(&half, p, 2);
    crc = _mm_crc32_u16(crc, half);
    p += 2;
  }
  if (len & 1) crc = _mm_crc32_u8(crc, *p);
#else
  for (; len > 0; --len, ++p) crc = internal::Crc32cByteSoftware(crc, *p);
#endif
  return crc;
}

// MurmurHash3 fmix32 finaliser: a bijection with full avalanche.
inline uint32_t Fmix32(uint32_t h) {
  h ^= h >> 16;
  h *= 0x85ebca6b;
  h ^= h >> 13;
  h *= 0xc2b2ae35;
  h ^= h >> 16;
  return h;
}

// The hash that selects flow-table buckets and Maglev entries.
inline uint32_t FlowHash(const void* data, size_t len) { return Fmix32(Crc32c(data, len, kFlowHashSeed)); }

// Maps a uniform 32-bit hash onto [0, range) without a division (Lemire, "A fast
// alternative to the modulo reduction", 2016).
inline uint32_t ReduceToRange(uint32_t hash, uint32_t range) { return uint32_t((uint64_t(hash) * range) >> 32); }

// A keyed 64-bit hash of five 64-bit words (a FlowKey), for flow-table fingerprints.
// Unlike FlowHash it is no contract: each table draws its own secret, so that nobody
// outside can craft a flow whose fingerprint equals another's. Multiply-fold rounds (as
// in wyhash): a 64x64->128-bit product folded by XOR mixes every bit of both operands.
class KeyedHash40 {
 public:
  // Keys from a 64-bit random seed (a table's own secret).
  explicit KeyedHash40(uint64_t seed);
  // Keys from a secret of any length (a cluster's, shared by its nodes).
  static KeyedHash40 FromSecret(std::string_view secret);

  uint64_t operator()(const void* data) const {
    const auto* p = static_cast<const uint8_t*>(data);
    const uint64_t h =
        MulFold(Word(p) ^ k_[0], Word(p + 8) ^ k_[1]) ^ MulFold(Word(p + 16) ^ k_[2], Word(p + 24) ^ k_[3]);
    return MulFold(h ^ Word(p + 32) ^ k_[4], k_[5]);
  }

 private:
  // One 8-byte load per word, as the parser stores a key (FlowKey::SetPortsAndProtocol);
  // a copy in wider loads would span two of its stores and wait for them.
  static uint64_t Word(const uint8_t* p) {
    uint64_t w;
    std::memcpy(&w, p, sizeof(w));
    return w;
  }
  static uint64_t MulFold(uint64_t a, uint64_t b) {
    const unsigned __int128 p = static_cast<unsigned __int128>(a) * b;
    return uint64_t(p) ^ uint64_t(p >> 64);
  }

  KeyedHash40() = default;

  uint64_t k_[6];
};

// SipHash (Aumasson and Bernstein, 2012) with `C` compression and `D` finalisation
// rounds over little-endian words: a keyed pseudorandom function. SipHash<2, 4> is the
// paper's SipHash-2-4. Here it derives keys from secrets, off the hot path: on it,
// SipHash-1-3 over a FlowKey cost 37% of lbbench's rate (bench/lbbench --flow_hash).
struct SipKey {
  uint64_t k0 = 0, k1 = 0;
};

namespace internal {

inline uint64_t LoadLittleEndian64(const uint8_t* p) {
  uint64_t w;
  std::memcpy(&w, p, sizeof(w));
  if constexpr (std::endian::native == std::endian::big) w = __builtin_bswap64(w);
  return w;
}

struct SipState {
  uint64_t v0, v1, v2, v3;

  void Round() {
    v0 += v1;
    v1 = std::rotl(v1, 13);
    v1 ^= v0;
    v0 = std::rotl(v0, 32);
    v2 += v3;
    v3 = std::rotl(v3, 16);
    v3 ^= v2;
    v0 += v3;
    v3 = std::rotl(v3, 21);
    v3 ^= v0;
    v2 += v1;
    v1 = std::rotl(v1, 17);
    v1 ^= v2;
    v2 = std::rotl(v2, 32);
  }
  template <int C>
  void Absorb(uint64_t m) {
    v3 ^= m;
    for (int i = 0; i < C; ++i) Round();
    v0 ^= m;
  }
};

}  // namespace internal

template <int C, int D>
inline uint64_t SipHash(const SipKey& key, const void* data, size_t len) {
  const auto* p = static_cast<const uint8_t*>(data);
  internal::SipState s{key.k0 ^ 0x736f6d6570736575ull, key.k1 ^ 0x646f72616e646f6dull, key.k0 ^ 0x6c7967656e657261ull,
                       key.k1 ^ 0x7465646279746573ull};
  uint64_t last = uint64_t(len) << 56;
  for (; len >= 8; len -= 8, p += 8) s.Absorb<C>(internal::LoadLittleEndian64(p));
  for (size_t i = 0; i < len; ++i) last |= uint64_t(p[i]) << (8 * i);
  s.Absorb<C>(last);
  s.v2 ^= 0xff;
  for (int i = 0; i < D; ++i) s.Round();
  return s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
}

// A 32-bit fingerprint of a secret: tells whether two nodes hold the same one without
// revealing it.
uint32_t SecretFingerprint(std::string_view secret);

// A 64-bit hash of a byte string for control-plane use (Maglev offsets and skips):
// splitmix64's finaliser over little-endian 8-byte words. Stable across builds.
uint64_t StableHash64(const void* data, size_t len, uint64_t seed);

}  // namespace lb
