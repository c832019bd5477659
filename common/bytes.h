// Big-endian loads and stores of host-order values, for packet headers and wire formats.
// One byte swap and one unaligned access each; no DPDK.
#pragma once

#include <cstdint>
#include <cstring>

namespace lb {

inline uint16_t Load16(const uint8_t* p) { return uint16_t(p[0] << 8 | p[1]); }
inline uint32_t Load32(const uint8_t* p) { return uint32_t(Load16(p)) << 16 | Load16(p + 2); }

inline void Store16(uint8_t* p, uint16_t v) {
  const uint16_t be = __builtin_bswap16(v);  // not rte_cpu_to_be_16: its asm defeats constant folding
  std::memcpy(p, &be, 2);
}
inline void Store32(uint8_t* p, uint32_t v) {
  const uint32_t be = __builtin_bswap32(v);
  std::memcpy(p, &be, 4);
}

}  // namespace lb
