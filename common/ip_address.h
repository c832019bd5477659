// IpAddress and IpPrefix: one 16-byte value for IPv4 and IPv6 addresses.
//
// IPv4 addresses are held as IPv4-mapped IPv6 addresses (::ffff:a.b.c.d, RFC 4291
// §2.5.5.2), so that tables, flow keys and hashes need no separate family field and
// every address has exactly one representation. Plain value types: any thread.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

namespace lb {

struct IpAddress {
  std::array<uint8_t, 16> bytes{};

  // `octets` points at 4 bytes in network order.
  static IpAddress FromV4Bytes(const void* octets) {
    IpAddress a;
    a.bytes[10] = 0xff;
    a.bytes[11] = 0xff;
    std::memcpy(&a.bytes[12], octets, 4);
    return a;
  }
  // `host_order` as in 0x0a000001 for 10.0.0.1.
  static IpAddress FromV4(uint32_t host_order) {
    const uint8_t o[4] = {uint8_t(host_order >> 24), uint8_t(host_order >> 16), uint8_t(host_order >> 8),
                          uint8_t(host_order)};
    return FromV4Bytes(o);
  }
  // `octets` points at 16 bytes in network order.
  static IpAddress FromV6Bytes(const void* octets) {
    IpAddress a;
    std::memcpy(a.bytes.data(), octets, 16);
    return a;
  }
  // Parses dotted-quad IPv4 or RFC 4291 text IPv6; nullopt when it is neither.
  static std::optional<IpAddress> Parse(std::string_view text);

  bool IsV4() const {
    static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return std::memcmp(bytes.data(), kMapped, sizeof(kMapped)) == 0;
  }
  bool IsZero() const { return *this == IpAddress{} || *this == FromV4(0); }
  const uint8_t* V4Bytes() const { return &bytes[12]; }
  uint32_t V4HostOrder() const {
    return uint32_t(bytes[12]) << 24 | uint32_t(bytes[13]) << 16 | uint32_t(bytes[14]) << 8 | bytes[15];
  }
  std::string ToString() const;

  // Why this address can be neither a VIP nor a backend: "loopback", "multicast",
  // "broadcast", "unspecified", "link-local" (RFC 6890's special-purpose blocks that are
  // never a unicast host across a router, including IPv4-mapped forms); empty if none.
  std::string_view SpecialPurpose() const;

  // Two 8-byte compares, always inlined: the defaulted comparison of the array becomes a
  // memcmp that the compiler calls out of line when the caller is big (the worker's burst
  // loop compares a VIP per packet: +30 instructions a packet, callgrind).
  friend bool operator==(const IpAddress& a, const IpAddress& b) {
    uint64_t a0, a1, b0, b1;
    std::memcpy(&a0, a.bytes.data(), 8);
    std::memcpy(&a1, a.bytes.data() + 8, 8);
    std::memcpy(&b0, b.bytes.data(), 8);
    std::memcpy(&b1, b.bytes.data() + 8, 8);
    return ((a0 ^ b0) | (a1 ^ b1)) == 0;
  }
  friend auto operator<=>(const IpAddress&, const IpAddress&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const IpAddress& a) {
    return H::combine(std::move(h), a.bytes);
  }
};

// A CIDR prefix. `length` counts bits of the address's own family (0..32 for IPv4).
struct IpPrefix {
  IpAddress address;
  uint8_t length = 0;

  // Parses "10.1.0.0/24" or "2001:db8::/64"; host bits must be zero.
  static std::optional<IpPrefix> Parse(std::string_view text);
  bool Contains(const IpAddress& a) const;
  // False for the unset prefix (::/0 or 0.0.0.0/0 as configured by default).
  bool IsSet() const { return !address.IsZero() || length != 0; }
  std::string ToString() const;
  friend bool operator==(const IpPrefix&, const IpPrefix&) = default;
};

}  // namespace lb
