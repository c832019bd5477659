// Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable Software
// Network Load Balancer", NSDI 2016, §3.4), with weights.
//
// BuildMaglevTable() is pure: the table is computed as data by the control thread and
// then published in a snapshot that workers only read. It depends on the *set* of
// (address, port, weight) only, never on the order the backends are given in, so every
// LB node with the same configuration builds the same table and picks the same backend
// for a flow: that is what lets ECMP move flows between nodes without breaking them.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "common/ip_address.h"

namespace lb {

inline constexpr uint32_t kMaxMaglevTableSize = 16777213;  // largest prime below 2^24
// Table entries are 16-bit indexes into the service's backend list.
inline constexpr uint32_t kMaxMaglevBackends = 65535;

struct MaglevBackend {
  IpAddress address;
  uint16_t port = 0;
  uint32_t weight = 1;  // 0: takes no entries
};

bool IsPrime(uint32_t n);

// The table size of a service that does not choose one: the smallest of a fixed ladder
// of primes (1021, 4093, 16381, 65537, 262139, 1048573, 4194301, 16777213; each about
// four times the last) that is at least 100 x `backends` (the paper's M >> N, §3.4: with
// M >= 100 N each backend's share is within about 1% of the others'). It depends on the
// number of backends configured, in any state, so that draining one changes nothing and
// every node computes the same size from the same input. Growing past a rung rebuilds
// the table at the next size, which moves most flows that no flow table holds.
uint32_t MaglevTableSizeFor(size_t backends);
inline constexpr uint32_t kMaglevTableSizes[] = {1021,   4093,    16381,   65537,
                                                 262139, 1048573, 4194301, kMaxMaglevTableSize};

// Returns a table of `table_size` entries, each an index into `backends` (as given).
// Backends with weight 0 get no entries; with no weighted backend the table is empty.
// Each backend gets a share of entries proportional to its weight; with equal weights the
// counts differ by at most one. Errors: table_size not prime or above
// kMaxMaglevTableSize, more than kMaxMaglevBackends backends, more weighted backends than
// entries, or two backends with the same (address, port).
absl::StatusOr<std::vector<uint16_t>> BuildMaglevTable(std::span<const MaglevBackend> backends, uint32_t table_size);

}  // namespace lb
