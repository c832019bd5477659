#include "common/hash.h"

namespace lb {
namespace {

uint64_t Mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace

KeyedHash40::KeyedHash40(uint64_t seed) {
  // splitmix64's sequence: distinct, well-mixed words from any seed.
  for (uint64_t& k : k_) {
    seed += 0x9e3779b97f4a7c15ull;
    k = Mix64(seed);
  }
}

// A PRF under public keys extracts uniform, unrelated words from a secret with enough
// entropy: key word i under ("lbd-flow", i), the fingerprint under ("lbd-flow", "-fingerp").
constexpr uint64_t kDerivationKey = 0x6c62642d666c6f77ull;  // "lbd-flow"

KeyedHash40 KeyedHash40::FromSecret(std::string_view secret) {
  KeyedHash40 h;
  for (uint64_t i = 0; i < 6; ++i) h.k_[i] = SipHash<2, 4>({kDerivationKey, i}, secret.data(), secret.size());
  return h;
}

uint32_t SecretFingerprint(std::string_view secret) {
  return uint32_t(SipHash<2, 4>({kDerivationKey, 0x2d66696e67657270ull}, secret.data(), secret.size()) >> 32);
}

uint64_t StableHash64(const void* data, size_t len, uint64_t seed) {
  const auto* p = static_cast<const uint8_t*>(data);
  uint64_t h = Mix64(seed ^ (len * 0x9e3779b97f4a7c15ull));
  while (len > 0) {
    uint64_t word = 0;
    const size_t n = len < 8 ? len : 8;
    for (size_t i = 0; i < n; ++i) word |= uint64_t(p[i]) << (8 * i);  // little-endian
    h = Mix64(h ^ word) + 0x9e3779b97f4a7c15ull;
    p += n;
    len -= n;
  }
  return Mix64(h);
}

}  // namespace lb
