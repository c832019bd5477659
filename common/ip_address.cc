#include "common/ip_address.h"

#include <arpa/inet.h>

#include <charconv>

namespace lb {

std::optional<IpAddress> IpAddress::Parse(std::string_view text) {
  if (text.empty() || text.size() >= INET6_ADDRSTRLEN) return std::nullopt;
  char buf[INET6_ADDRSTRLEN] = {};
  text.copy(buf, text.size());
  uint8_t raw[16];
  if (inet_pton(AF_INET, buf, raw) == 1) return FromV4Bytes(raw);
  if (inet_pton(AF_INET6, buf, raw) == 1) {
    // "::ffff:1.2.3.4" is accepted and means the IPv4 address.
    return FromV6Bytes(raw);
  }
  return std::nullopt;
}

std::string IpAddress::ToString() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (IsV4()) {
    inet_ntop(AF_INET, V4Bytes(), buf, sizeof(buf));
  } else {
    inet_ntop(AF_INET6, bytes.data(), buf, sizeof(buf));
  }
  return buf;
}

namespace {

// Bit index in `bytes` where a prefix of `a`'s family starts.
int FamilyOffsetBits(const IpAddress& a) { return a.IsV4() ? 96 : 0; }

bool BitSet(const IpAddress& a, int bit) { return (a.bytes[bit / 8] >> (7 - bit % 8)) & 1; }

}  // namespace

std::optional<IpPrefix> IpPrefix::Parse(std::string_view text) {
  const size_t slash = text.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  auto addr = IpAddress::Parse(text.substr(0, slash));
  if (!addr) return std::nullopt;
  const std::string_view len_text = text.substr(slash + 1);
  unsigned len = 0;
  auto [end, ec] = std::from_chars(len_text.data(), len_text.data() + len_text.size(), len);
  if (ec != std::errc() || end != len_text.data() + len_text.size() || len_text.empty()) {
    return std::nullopt;
  }
  const unsigned max = addr->IsV4() ? 32 : 128;
  if (len > max) return std::nullopt;
  IpPrefix p{*addr, uint8_t(len)};
  for (int bit = FamilyOffsetBits(*addr) + int(len); bit < 128; ++bit) {
    if (BitSet(*addr, bit)) return std::nullopt;  // host bits set
  }
  return p;
}

bool IpPrefix::Contains(const IpAddress& a) const {
  if (a.IsV4() != address.IsV4()) return false;
  const int start = FamilyOffsetBits(a);
  for (int bit = start; bit < start + length; ++bit) {
    if (BitSet(a, bit) != BitSet(address, bit)) return false;
  }
  return true;
}

std::string IpPrefix::ToString() const { return address.ToString() + "/" + std::to_string(length); }

std::string_view IpAddress::SpecialPurpose() const {
  if (IsZero()) return "unspecified";
  if (IsV4()) {
    const uint32_t a = V4HostOrder();
    if ((a >> 24) == 127) return "loopback";       // 127.0.0.0/8
    if ((a >> 28) == 0xe) return "multicast";      // 224.0.0.0/4
    if (a == 0xffffffffu) return "broadcast";      // 255.255.255.255
    if ((a >> 16) == 0xa9fe) return "link-local";  // 169.254.0.0/16
    if ((a >> 24) == 0) return "unspecified";      // 0.0.0.0/8 ("this network")
    return {};
  }
  static constexpr uint8_t kLoopback[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  if (std::memcmp(bytes.data(), kLoopback, 16) == 0) return "loopback";    // ::1
  if (bytes[0] == 0xff) return "multicast";                                // ff00::/8
  if (bytes[0] == 0xfe && (bytes[1] & 0xc0) == 0x80) return "link-local";  // fe80::/10
  return {};
}

}  // namespace lb
