#include "dataplane/flow_sync_wire.h"

#include <netinet/in.h>

#include <cstring>

#include "absl/strings/str_format.h"
#include "common/bytes.h"

namespace lb::dataplane::flow_sync {
namespace {

constexpr uint8_t kMagic[4] = {'L', 'B', 'F', 'S'};
constexpr uint8_t kClientV6 = 1, kBackendV6 = 2, kNatSession = 4;
constexpr size_t kRecordFixed = 12;

uint8_t* PutAddress(uint8_t* p, const IpAddress& a) {
  const size_t n = a.IsV4() ? 4 : 16;
  std::memcpy(p, a.bytes.data() + (16 - n), n);
  return p + n;
}
const uint8_t* GetAddress(const uint8_t* p, bool v6, IpAddress& a) {
  a = v6 ? IpAddress::FromV6Bytes(p) : IpAddress::FromV4Bytes(p);
  return p + (v6 ? 16 : 4);
}

// A record's length: a NAT session's adds the SNAT address, of the backend's family.
size_t LengthOf(bool client_v6, bool backend_v6, bool nat) {
  return kRecordFixed + (client_v6 ? 32 : 8) + (backend_v6 ? 16 : 4) * (nat ? 2 : 1);
}

uint64_t Tag(const SipKey& key, const uint8_t* data, size_t len) { return SipHash<2, 4>(key, data, len); }

}  // namespace

SipKey KeyFromSecret(std::string_view secret) {
  // Labels of their own: the flow hash's keys come from the same secret.
  constexpr uint64_t kLabel0 = 0x6c62666c6f777379ull, kLabel1 = 0x6e632d6b65792d31ull;  // "lbflowsy" "nc-key-1"
  return {SipHash<2, 4>({kLabel0, kLabel1}, secret.data(), secret.size()),
          SipHash<2, 4>({kLabel1, kLabel0}, secret.data(), secret.size())};
}

SipKey SenderKey(const SipKey& cluster_key, const IpAddress& sender) {
  // Two labelled hashes of the address (16 bytes, IPv4 mapped), under the cluster's key.
  uint8_t input[17];
  std::memcpy(input, sender.bytes.data(), 16);
  input[16] = 0;
  const uint64_t k0 = SipHash<2, 4>(cluster_key, input, sizeof(input));
  input[16] = 1;
  return {k0, SipHash<2, 4>(cluster_key, input, sizeof(input))};
}

size_t RecordLength(const SyncedFlow& f) { return LengthOf(!f.key.src.IsV4(), !f.backend.IsV4(), f.nat); }

size_t Encode(const SipKey& key, MessageType type, uint64_t stamp, std::span<const SyncedFlow> flows,
              std::vector<uint8_t>& out) {
  out.assign(kMaxDatagram, 0);
  uint8_t* p = out.data();
  std::memcpy(p, kMagic, 4);
  p[4] = kVersion;
  p[5] = uint8_t(type);
  Store32(p + 8, uint32_t(stamp >> 32));
  Store32(p + 12, uint32_t(stamp));
  size_t len = kHeaderLen, count = 0;
  if (type == MessageType::kFlows) {
    for (const SyncedFlow& f : flows) {
      if (len + RecordLength(f) + kTagLen > kMaxDatagram || count == UINT16_MAX) break;
      uint8_t* r = out.data() + len;
      r[0] =
          uint8_t((f.key.src.IsV4() ? 0 : kClientV6) | (f.backend.IsV4() ? 0 : kBackendV6) | (f.nat ? kNatSession : 0));
      r[1] = f.key.protocol;
      r[2] = f.state;
      std::memcpy(r + 4, &f.key.src_port_be, 2);  // already in network order
      std::memcpy(r + 6, &f.key.dst_port_be, 2);
      Store16(r + 8, f.backend_port);
      if (f.nat) Store16(r + 10, f.snat_port);
      uint8_t* a = PutAddress(r + kRecordFixed, f.key.src);
      a = PutAddress(a, f.key.dst);
      a = PutAddress(a, f.backend);
      if (f.nat) a = PutAddress(a, f.snat);
      len = size_t(a - out.data());
      ++count;
    }
  }
  Store16(out.data() + 6, uint16_t(count));
  const uint64_t tag = Tag(key, out.data(), len);
  Store32(out.data() + len, uint32_t(tag >> 32));
  Store32(out.data() + len + 4, uint32_t(tag));
  out.resize(len + kTagLen);
  return count;
}

absl::StatusOr<Message> Decode(const SipKey& key, std::span<const uint8_t> d) {
  if (d.size() < kHeaderLen + kTagLen || std::memcmp(d.data(), kMagic, 4) != 0) {
    return absl::InvalidArgumentError("not a flow-sync datagram");
  }
  // Before the tag, whose key differs between versions: a node of another version is
  // named as such (a rolling upgrade across versions pauses flow sync).
  if (d[4] != kVersion) return absl::InvalidArgumentError(absl::StrFormat("version %d, expected %d", d[4], kVersion));
  const size_t body = d.size() - kTagLen;
  const uint64_t tag = uint64_t(Load32(d.data() + body)) << 32 | Load32(d.data() + body + 4);
  if (tag != Tag(key, d.data(), body)) {
    return absl::PermissionDeniedError(
        "bad tag: not from this node of the cluster (another flow-hash secret, or another sender's datagram)");
  }
  Message m;
  m.type = MessageType(d[5]);
  if (m.type != MessageType::kFlows && m.type != MessageType::kDumpRequest) {
    return absl::InvalidArgumentError(absl::StrFormat("unknown message type %d", d[5]));
  }
  m.stamp = uint64_t(Load32(d.data() + 8)) << 32 | Load32(d.data() + 12);
  const uint16_t count = Load16(d.data() + 6);
  if (m.type == MessageType::kDumpRequest && count != 0) return absl::InvalidArgumentError("a dump request with flows");
  m.flows.reserve(count);
  size_t off = kHeaderLen;
  for (uint16_t i = 0; i < count; ++i) {
    if (off + kRecordFixed > body) return absl::InvalidArgumentError("record past the end");
    const uint8_t* r = d.data() + off;
    const bool client_v6 = r[0] & kClientV6, backend_v6 = r[0] & kBackendV6, nat = r[0] & kNatSession;
    const size_t len = LengthOf(client_v6, backend_v6, nat);
    if (off + len > body) return absl::InvalidArgumentError("record past the end");
    if ((r[0] & ~(kClientV6 | kBackendV6 | kNatSession)) != 0 || (r[1] != IPPROTO_TCP && r[1] != IPPROTO_UDP) ||
        (!nat && Load16(r + 10) != 0)) {
      return absl::InvalidArgumentError("malformed record");
    }
    SyncedFlow f;
    f.key.protocol = r[1];
    f.state = r[2];
    std::memcpy(&f.key.src_port_be, r + 4, 2);
    std::memcpy(&f.key.dst_port_be, r + 6, 2);
    f.backend_port = Load16(r + 8);
    const uint8_t* a = GetAddress(r + kRecordFixed, client_v6, f.key.src);
    a = GetAddress(a, client_v6, f.key.dst);
    a = GetAddress(a, backend_v6, f.backend);
    if (nat) {
      f.nat = true;
      f.snat_port = Load16(r + 10);
      GetAddress(a, backend_v6, f.snat);
    }
    // An IPv4-mapped address in an IPv6 field is an IPv4 address: one family per field, as
    // Encode writes them (else the client and the VIP could differ in family).
    if (client_v6 && (f.key.src.IsV4() || f.key.dst.IsV4())) return absl::InvalidArgumentError("malformed record");
    if (backend_v6 && (f.backend.IsV4() || (nat && f.snat.IsV4()))) {
      return absl::InvalidArgumentError("malformed record");
    }
    m.flows.push_back(f);
    off += len;
  }
  if (off != body) return absl::InvalidArgumentError("bytes after the last record");
  return m;
}

ReplayGuard::Verdict ReplayGuard::Check(uint64_t stamp, uint64_t now_us) {
  if (stamp + max_skew_us_ < now_us || stamp > now_us + max_skew_us_) return Verdict::kOutOfWindow;
  if (stamp <= last_) return Verdict::kReplayed;
  last_ = stamp;
  return Verdict::kFresh;
}

}  // namespace lb::dataplane::flow_sync
