// libFuzzer target: flow-sync datagrams as a receiving node meets them, through the codec
// and the replay window. The input is a sequence of datagrams, each `flags` (bit 0: tag it
// with the sender's key, as a node with the secret would; bits 1-7: how far the receiver's
// clock moves first, in 10 ms), a 2-byte big-endian length, and the datagram's bytes
// before the tag. Whatever comes, decoding returns a message or an error; a decoded
// message encodes back to the same; the window takes a stamp at most once, only newer
// than the last taken, and only near the receiver's clock.
#include <cstdint>
#include <vector>

#include "dataplane/flow_sync_wire.h"
#include "tests/fuzz/check.h"

namespace {

using lb::fuzz::Check;
namespace fs = lb::dataplane::flow_sync;

constexpr uint64_t kSkewUs = 5'000'000;
constexpr uint64_t kStartUs = 1'700'000'000'000'000;  // the receiver's clock at the start

const lb::SipKey& SenderKey() {
  static const lb::SipKey key =
      fs::SenderKey(fs::KeyFromSecret("the fuzzer's flow-hash secret..."), *lb::IpAddress::Parse("10.80.0.12"));
  return key;
}

void Tag(std::vector<uint8_t>& d) {
  const uint64_t tag = lb::SipHash<2, 4>(SenderKey(), d.data(), d.size());
  for (int i = 7; i >= 0; --i) d.push_back(uint8_t(tag >> (8 * i)));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fs::ReplayGuard guard(kSkewUs);
  uint64_t now = kStartUs, last_taken = 0;
  std::vector<uint8_t> datagram, again;
  for (size_t off = 0; off + 3 <= size;) {
    const uint8_t flags = data[off];
    const size_t len = size_t(data[off + 1]) << 8 | data[off + 2];
    off += 3;
    if (off + len > size) break;
    datagram.assign(data + off, data + off + len);
    off += len;
    now += uint64_t(flags >> 1) * 10'000;
    if (flags & 1) Tag(datagram);

    auto m = fs::Decode(SenderKey(), datagram);
    if (!m.ok()) continue;
    // What decodes encodes back to the same (when it fits one datagram of ours).
    if (datagram.size() <= fs::kMaxDatagram) {
      Check(fs::Encode(SenderKey(), m->type, m->stamp, m->flows, again) == m->flows.size(), "a decoded message fits");
      auto back = fs::Decode(SenderKey(), again);
      Check(back.ok() && back->type == m->type && back->stamp == m->stamp && back->flows == m->flows,
            "a decoded message encodes back to itself");
    }
    switch (guard.Check(m->stamp, now)) {
      case fs::ReplayGuard::Verdict::kFresh:
        Check(m->stamp > last_taken, "a stamp is taken only when newer than the last");
        Check(m->stamp + kSkewUs >= now && m->stamp <= now + kSkewUs, "a stamp is taken only near the clock");
        last_taken = m->stamp;
        Check(guard.Check(m->stamp, now) == fs::ReplayGuard::Verdict::kReplayed, "a stamp is taken once");
        break;
      case fs::ReplayGuard::Verdict::kReplayed:
        Check(m->stamp <= last_taken, "a replay is not newer than the last taken");
        break;
      case fs::ReplayGuard::Verdict::kOutOfWindow:
        Check(m->stamp + kSkewUs < now || m->stamp > now + kSkewUs, "out of window means out of the window");
        break;
    }
  }
  return 0;
}
