// FlowKey: the 5-tuple that identifies a connection, in a fixed 40-byte layout that is
// hashed and compared as raw bytes. Plain value type: any thread.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include "common/hash.h"
#include "common/ip_address.h"

namespace lb {

struct FlowKey {
  IpAddress src;
  IpAddress dst;
  // Ports in network byte order, as on the wire, so that the hash of a key is the same on
  // hosts of either endianness. 0 for protocols without ports and for fragments.
  uint16_t src_port_be = 0;
  uint16_t dst_port_be = 0;
  uint8_t protocol = 0;  // IPPROTO_*
  uint8_t pad[3] = {};   // always zero, so that byte comparison is value comparison

  bool operator==(const FlowKey& o) const { return std::memcmp(this, &o, sizeof(*this)) == 0; }

  // Sets both ports from `ports` (a TCP or UDP header's first four bytes, as on the wire)
  // and the protocol, clearing the padding, with one 8-byte store. The parser writes a key
  // and the flow hashes read it back at once, in 8-byte words: a load that spans several
  // smaller stores cannot be served from the store buffer and waits for them to reach the
  // cache (on the common path that stall cost 8 ns a packet, lbbench).
  void SetPortsAndProtocol(const uint8_t* ports, uint8_t proto) {
    static_assert(offsetof(FlowKey, src_port_be) == 32 && offsetof(FlowKey, dst_port_be) == 34 &&
                  offsetof(FlowKey, protocol) == 36);
    uint32_t wire;
    std::memcpy(&wire, ports, sizeof(wire));
    const uint64_t tail = std::endian::native == std::endian::little ? uint64_t(wire) | uint64_t(proto) << 32
                                                                     : uint64_t(wire) << 32 | uint64_t(proto) << 24;
    std::memcpy(reinterpret_cast<uint8_t*>(this) + offsetof(FlowKey, src_port_be), &tail, sizeof(tail));
  }
};
static_assert(sizeof(FlowKey) == 40);

// Which packet fields a service feeds into Maglev (the flow table always keys on the
// whole 5-tuple).
enum class HashFields : uint8_t {
  kFiveTuple,         // default
  kSourceIp,          // Kubernetes sessionAffinity: ClientIP
  kSourceIpDestPort,  // the client sticks to one backend per service port
};

// The flow hash: it picks a packet's flow-table bucket and its Maglev entry. ECMP moves
// flows between LB nodes, so every node of a cluster must hash alike: which hash is a
// fleet-wide choice (docs/security.md, "Flow hash").
//  - Public (the default): CRC32C under kFlowHashSeed, pinned by golden values. Anyone
//    can compute it, so anyone can choose 5-tuples that land on one backend or one
//    bucket. CRC is linear, so a secret seed would not help: two keys whose CRCs are
//    equal under one seed are equal under every seed (hash_test shows it).
//  - Keyed: KeyedHash40 (multiply-fold, non-linear) under 384 key bits derived from the
//    cluster's secret (lbd --flow_hash_secret_file).
// A plain value, fixed for a worker's life (its flow table is bucketed by it).
class FlowHasher {
 public:
  FlowHasher() = default;
  static FlowHasher Keyed(std::string_view secret) {
    FlowHasher h;
    h.keyed_ = KeyedHash40::FromSecret(secret);
    h.fingerprint_ = SecretFingerprint(secret);
    return h;
  }

  bool keyed() const { return keyed_.has_value(); }
  // "crc32c", or "keyed/" and the secret's fingerprint (equal on every node that holds
  // the same secret).
  std::string Describe() const {
    if (!keyed_) return "crc32c";
    char buf[24];
    std::snprintf(buf, sizeof(buf), "keyed/%08x", fingerprint_);
    return buf;
  }

  uint32_t Hash(const FlowKey& k) const {
    if (!keyed_) return FlowHash(&k, sizeof(k));
    const uint64_t h = (*keyed_)(&k);
    return uint32_t(h ^ (h >> 32));
  }

  // The hash Maglev uses for `k` under `fields`. `five_tuple_hash` is Hash(k), already
  // computed for the flow table.
  uint32_t ServiceHash(const FlowKey& k, HashFields fields, uint32_t five_tuple_hash) const {
    switch (fields) {
      case HashFields::kFiveTuple:
        return five_tuple_hash;
      case HashFields::kSourceIp:
        if (keyed_) return Hash(FlowKey{.src = k.src});
        return FlowHash(&k.src, sizeof(k.src));
      case HashFields::kSourceIpDestPort: {
        if (keyed_) return Hash(FlowKey{.src = k.src, .dst_port_be = k.dst_port_be});
        uint8_t buf[sizeof(k.src) + sizeof(k.dst_port_be)];
        std::memcpy(buf, &k.src, sizeof(k.src));
        std::memcpy(buf + sizeof(k.src), &k.dst_port_be, sizeof(k.dst_port_be));
        return FlowHash(buf, sizeof(buf));
      }
    }
    return five_tuple_hash;
  }

 private:
  std::optional<KeyedHash40> keyed_;
  uint32_t fingerprint_ = 0;
};

}  // namespace lb
