// libFuzzer target over ReceivedFrame (dataplane/offload.h): each input is what an
// AF_PACKET socket gives lbd, a virtio_net_hdr (10 bytes), a VLAN tag byte pair and flag
// (3 bytes: tag present when the first is odd), then the frame.
//
// Besides the sanitizers' checks (the frame is an exact-size heap copy, so any overread
// is seen) it asserts what must hold for any input the kernel could describe:
//  - a frame is refused with a reason, or every packet it makes fits its length;
//  - a GSO frame's segments parse, their IP lengths match them, their IPv4 header and
//    TCP/UDP checksums verify, and their payloads add up to the frame's.
#include <rte_eal.h>
#include <rte_ip.h>
#include <rte_mbuf.h>

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "dataplane/dpdk/eal.h"
#include "dataplane/offload.h"
#include "dataplane/parse.h"
#include "tests/fuzz/check.h"
#include "tests/fuzz/fuzz_eal.h"

namespace {

using namespace lb;
using namespace lb::dataplane;
using lb::fuzz::Check;

rte_mempool* g_pool;

// The TCP/UDP checksum of the datagram `p` describes at `d` verifies: the pseudo-header
// and the L4 bytes sum to all ones.
bool L4ChecksumValid(const uint8_t* d, const ParsedPacket& p) {
  const uint8_t* ip = d + p.l3_offset;
  uint32_t sum = p.is_v4 ? rte_ipv4_phdr_cksum(reinterpret_cast<const rte_ipv4_hdr*>(ip), 0)
                         : rte_ipv6_phdr_cksum(reinterpret_cast<const rte_ipv6_hdr*>(ip), 0);
  sum += rte_raw_cksum(d + p.l4_offset, p.l3_offset + p.ip_len - p.l4_offset);
  sum = (sum & 0xffff) + (sum >> 16);
  return ((sum & 0xffff) + (sum >> 16)) == 0xffff;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** argv) {
  g_pool = lb::fuzz::InitEalWithPool((*argv)[0], 64, 63);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  constexpr size_t kPrefix = sizeof(VnetHeader) + 3;
  if (size < kPrefix) return 0;
  VnetHeader vnet;
  std::memcpy(&vnet, data, sizeof(vnet));
  std::optional<VlanTag> vlan;
  if (data[10] & 1) vlan = VlanTag{0x8100, uint16_t(data[11] << 8 | data[12])};
  const size_t len = size - kPrefix;
  auto frame = std::make_unique<uint8_t[]>(len + (len == 0));
  std::memcpy(frame.get(), data + kPrefix, len);

  const ReceivedFrame f = ReceivedFrame::Make(frame.get(), uint32_t(len), vnet, vlan);
  if (f.error()) return 0;
  Check(f.segments() >= 1, "a frame makes a packet");
  uint32_t payload = 0;
  bool all_written = true;
  for (uint32_t i = 0; i < f.segments(); ++i) {
    rte_mbuf* m = rte_pktmbuf_alloc(g_pool);
    if (m == nullptr) std::abort();
    const uint32_t seg_len = f.SegmentLength(i);
    if (seg_len > rte_pktmbuf_tailroom(m)) {  // the port drops it as oversize
      rte_pktmbuf_free(m);
      all_written = false;
      continue;
    }
    f.WriteSegment(i, m);
    Check(m->data_len == seg_len, "a packet is as long as SegmentLength says");
    if (f.gso()) {
      const auto* d = rte_pktmbuf_mtod(m, const uint8_t*);
      ParsedPacket p;
      Check(Parse(d, m->data_len, p) == ParseStatus::kOk, "a segment parses");
      Check(p.kind == PacketKind::kTcp || p.kind == PacketKind::kUdp, "a segment is TCP or UDP");
      Check(uint32_t(p.l3_offset) + p.ip_len == m->data_len, "a segment's IP length matches it");
      Check(!p.is_v4 || rte_raw_cksum(d + p.l3_offset, p.l4_offset - p.l3_offset) == 0xffff,
            "a segment's IPv4 header checksum verifies");
      Check(L4ChecksumValid(d, p), "a segment's TCP/UDP checksum verifies");
      const uint32_t l4_len = p.kind == PacketKind::kTcp ? (d[p.l4_offset + 12] >> 4) * 4u : 8u;
      payload += m->data_len - p.l4_offset - l4_len;
    }
    rte_pktmbuf_free(m);
  }
  ParsedPacket p;
  if (f.gso() && all_written && Parse(frame.get(), uint32_t(len), p) == ParseStatus::kOk) {
    const uint32_t l4_len = p.kind == PacketKind::kTcp ? (frame[p.l4_offset + 12] >> 4) * 4u : 8u;
    Check(payload == p.l3_offset + p.ip_len - p.l4_offset - l4_len, "the segments' payloads add up to the frame's");
  }
  return 0;
}
