#include "tests/helpers/packet_builder.h"

#include <arpa/inet.h>

#include <cstdio>
#include <cstdlib>

namespace lb::testing {
namespace {

void Put16(Bytes& b, size_t at, uint16_t v) {
  b[at] = uint8_t(v >> 8);
  b[at + 1] = uint8_t(v);
}

uint32_t Sum(const uint8_t* data, size_t len, uint32_t sum) {
  for (size_t i = 0; i + 1 < len; i += 2) sum += uint32_t(data[i]) << 8 | data[i + 1];
  if (len % 2) sum += uint32_t(data[len - 1]) << 8;
  return sum;
}

uint16_t Fold(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return uint16_t(sum);
}

// Offset of the checksum in an L4 header of `proto`, or -1.
int ChecksumOffset(uint8_t proto) {
  switch (proto) {
    case 6:
      return 16;
    case 17:
      return 6;
    case 1:
    case 58:
      return 2;
    default:
      return -1;
  }
}

void FillL4Checksum(Bytes& l4, uint8_t proto, uint32_t pseudo_sum) {
  const int off = ChecksumOffset(proto);
  if (off < 0 || l4.size() < size_t(off) + 2) return;
  Put16(l4, off, 0);
  uint16_t c = uint16_t(~Fold(Sum(l4.data(), l4.size(), pseudo_sum)));
  if (proto == 17 && c == 0) c = 0xffff;
  Put16(l4, off, c);
}

}  // namespace

uint16_t InternetChecksum(const uint8_t* data, size_t len, uint32_t sum) {
  return uint16_t(~Fold(Sum(data, len, sum)));
}

Bytes ParseAddress(std::string_view text) {
  const std::string s(text);
  Bytes out(16);
  if (inet_pton(AF_INET, s.c_str(), out.data()) == 1) {
    out.resize(4);
    return out;
  }
  if (inet_pton(AF_INET6, s.c_str(), out.data()) == 1) return out;
  std::fprintf(stderr, "bad address in test: %s\n", s.c_str());
  std::abort();
}

Bytes Tcp(uint16_t sport, uint16_t dport, uint8_t flags, const Bytes& payload) {
  Bytes b(20);
  Put16(b, 0, sport);
  Put16(b, 2, dport);
  b[4] = 0x01;  // sequence number 0x01000000
  b[12] = 5 << 4;
  b[13] = flags;
  Put16(b, 14, 65535);
  b.insert(b.end(), payload.begin(), payload.end());
  return b;
}

Bytes Udp(uint16_t sport, uint16_t dport, const Bytes& payload) {
  Bytes b(8);
  Put16(b, 0, sport);
  Put16(b, 2, dport);
  Put16(b, 4, uint16_t(8 + payload.size()));
  b.insert(b.end(), payload.begin(), payload.end());
  return b;
}

Bytes Icmp(uint8_t type, uint8_t code, uint32_t rest, const Bytes& body) {
  Bytes b(8);
  b[0] = type;
  b[1] = code;
  Put16(b, 4, uint16_t(rest >> 16));
  Put16(b, 6, uint16_t(rest));
  b.insert(b.end(), body.begin(), body.end());
  return b;
}

Bytes Gue(uint8_t proto) { return Bytes{0, proto, 0, 0}; }

Bytes Ipv4(std::string_view src, std::string_view dst, uint8_t proto, const Bytes& l4, const Ipv4Options& o) {
  const Bytes s = ParseAddress(src), d = ParseAddress(dst);
  const size_t hlen = 20 + o.ip_options.size();
  Bytes h(20);
  h[0] = uint8_t(0x40 | (hlen / 4));
  h[1] = o.tos;
  Put16(h, 2, uint16_t(hlen + l4.size()));
  Put16(h, 4, o.id);
  Put16(h, 6, uint16_t((o.df ? 0x4000 : 0) | (o.mf ? 0x2000 : 0) | o.frag_offset));
  h[8] = o.ttl;
  h[9] = proto;
  std::copy(s.begin(), s.end(), h.begin() + 12);
  std::copy(d.begin(), d.end(), h.begin() + 16);
  h.insert(h.end(), o.ip_options.begin(), o.ip_options.end());
  Put16(h, 10, InternetChecksum(h.data(), h.size()));
  Bytes payload = l4;
  if (o.l4_checksum && o.frag_offset == 0) {
    uint32_t pseudo = 0;
    if (proto != 1) {
      pseudo = Sum(s.data(), 4, 0);
      pseudo = Sum(d.data(), 4, pseudo);
      pseudo += proto + uint32_t(l4.size());
    }
    FillL4Checksum(payload, proto, pseudo);
  }
  return Concat(h, payload);
}

Bytes Ipv6Fragment(uint16_t offset, bool more, uint32_t id) {
  Bytes b(7);
  b[0] = 0;  // reserved
  const uint16_t v = uint16_t(offset << 3 | (more ? 1 : 0));
  b[1] = uint8_t(v >> 8);
  b[2] = uint8_t(v);
  b[3] = uint8_t(id >> 24);
  b[4] = uint8_t(id >> 16);
  b[5] = uint8_t(id >> 8);
  b[6] = uint8_t(id);
  return b;
}

Bytes Ipv6(std::string_view src, std::string_view dst, uint8_t proto, const Bytes& l4, const Ipv6Options& o) {
  const Bytes s = ParseAddress(src), d = ParseAddress(dst);
  Bytes ext;
  const uint8_t first = o.extensions.empty() ? proto : o.extensions[0].first;
  for (size_t i = 0; i < o.extensions.size(); ++i) {
    const auto& [type, body] = o.extensions[i];
    const uint8_t next = i + 1 < o.extensions.size() ? o.extensions[i + 1].first : proto;
    Bytes e{next};
    if (type == 44) {
      e.insert(e.end(), body.begin(), body.end());
    } else {
      const size_t unit = type == 51 ? 4 : 8;
      size_t len = 2 + body.size();
      len = (len + unit - 1) / unit * unit;
      e.push_back(uint8_t(type == 51 ? len / 4 - 2 : len / 8 - 1));
      e.insert(e.end(), body.begin(), body.end());
      e.resize(len, 0);
    }
    ext.insert(ext.end(), e.begin(), e.end());
  }
  Bytes h(40);
  const uint32_t vtf = 6u << 28 | uint32_t(o.traffic_class) << 20 | (o.flow_label & 0xfffff);
  Put16(h, 0, uint16_t(vtf >> 16));
  Put16(h, 2, uint16_t(vtf));
  Put16(h, 4, uint16_t(ext.size() + l4.size()));
  h[6] = first;
  h[7] = o.hop_limit;
  std::copy(s.begin(), s.end(), h.begin() + 8);
  std::copy(d.begin(), d.end(), h.begin() + 24);
  Bytes payload = l4;
  if (o.l4_checksum) {
    uint32_t pseudo = Sum(s.data(), 16, 0);
    pseudo = Sum(d.data(), 16, pseudo);
    pseudo += proto + uint32_t(l4.size());
    FillL4Checksum(payload, proto, pseudo);
  }
  return Concat(Concat(h, ext), payload);
}

Bytes Ether(const Mac& dst, const Mac& src, uint16_t ether_type, const Bytes& payload, uint16_t vlan, size_t pad_to) {
  Bytes b(dst.begin(), dst.end());
  b.insert(b.end(), src.begin(), src.end());
  if (vlan != 0) {
    b.push_back(0x81);
    b.push_back(0x00);
    b.push_back(uint8_t(vlan >> 8));
    b.push_back(uint8_t(vlan));
  }
  b.push_back(uint8_t(ether_type >> 8));
  b.push_back(uint8_t(ether_type));
  b.insert(b.end(), payload.begin(), payload.end());
  if (b.size() < pad_to) b.resize(pad_to, 0);
  return b;
}

Bytes Concat(const Bytes& a, const Bytes& b) {
  Bytes r = a;
  r.insert(r.end(), b.begin(), b.end());
  return r;
}

std::string Hex(const Bytes& b) {
  std::string s;
  char buf[4];
  for (size_t i = 0; i < b.size(); ++i) {
    std::snprintf(buf, sizeof(buf), "%02x", b[i]);
    s += buf;
    if (i % 2 == 1) s += ' ';
  }
  return s;
}

}  // namespace lb::testing
