// Internet checksums (RFC 1071, RFC 1624): folding sums, and updating a checksum for the
// words a rewrite changed. Pure arithmetic on bytes: any thread, no DPDK.
#pragma once

#include <cstdint>
#include <cstring>

#include "common/bytes.h"

namespace lb::dataplane {

// Folds a 32-bit ones'-complement sum of 16-bit words to 16 bits, in the words' byte
// order (folding does not depend on it).
inline uint16_t Fold(uint32_t sum) {
  sum = (sum & 0xffff) + (sum >> 16);
  return uint16_t((sum & 0xffff) + (sum >> 16));
}

// The checksum of a sum: its fold, complemented.
inline uint16_t FinishChecksum(uint32_t sum) { return uint16_t(~Fold(sum)); }

// Stores the complement of a ones'-complement sum computed by DPDK's rte_raw_cksum*
// (which sum native-order words, so the result is stored as it is, not byte-swapped).
inline void StoreChecksum(uint8_t* at, uint32_t native_sum) {
  const uint16_t c = FinishChecksum(native_sum);
  std::memcpy(at, &c, 2);
}

// RFC 1624 eqn. 3 for any number of changed 16-bit words (big-endian): Add() each change,
// then ApplyTo() each checksum that covers them, one fold per checksum rather than one
// per word and checksum.
class ChecksumDelta {
 public:
  // An unchanged word adds 0xffff, ones'-complement minus zero: the checksum stays as it
  // was (it could only turn 0xffff into 0x0000, which no IP or TCP/UDP header has).
  void Add(uint16_t old_word, uint16_t new_word) { sum_ += uint32_t(uint16_t(~old_word)) + new_word; }
  void ApplyTo(uint8_t* cksum) const {
    Store16(cksum, FinishChecksum(uint16_t(~Load16(cksum)) + sum_));  // < 2^22: no overflow
  }

 private:
  uint32_t sum_ = 0;
};

// The checksum at `cksum` after one word of the data changed from `old_word` to `new_word`.
inline void UpdateChecksum(uint8_t* cksum, uint16_t old_word, uint16_t new_word) {
  ChecksumDelta d;
  d.Add(old_word, new_word);
  d.ApplyTo(cksum);
}

}  // namespace lb::dataplane
