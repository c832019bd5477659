// ReceivedFrame: frames as the kernel hands them to an AF_PACKET socket with
// PACKET_VNET_HDR (partial checksums, GSO frames, VLAN tags taken off) become the packets
// that were, or would have been, on the wire. Expected packets are built independently by
// tests/helpers/packet_builder (its own checksums), and compared byte for byte.
#include "dataplane/offload.h"

#include <rte_mbuf.h>

#include <gtest/gtest.h>

#include <vector>

#include "tests/dataplane/fixtures.h"

namespace lb::testing {
rte_mempool* TestPool();
}

namespace lb::dataplane::test {
namespace {

constexpr uint8_t kPsh = 0x08, kCwr = 0x80;

class OffloadTest : public ::testing::Test {
 protected:
  void TearDown() override {
    for (rte_mbuf* m : mbufs_) rte_pktmbuf_free(m);
  }

  // Every packet the frame makes, as bytes.
  std::vector<Bytes> Unpack(const ReceivedFrame& f) {
    std::vector<Bytes> out;
    for (uint32_t i = 0; i < f.segments(); ++i) {
      rte_mbuf* m = rte_pktmbuf_alloc(lb::testing::TestPool());
      mbufs_.push_back(m);
      EXPECT_GE(rte_pktmbuf_tailroom(m), f.SegmentLength(i));
      f.WriteSegment(i, m);
      EXPECT_EQ(m->data_len, f.SegmentLength(i));
      const uint8_t* d = rte_pktmbuf_mtod(m, const uint8_t*);
      out.emplace_back(d, d + m->data_len);
    }
    return out;
  }

  std::vector<rte_mbuf*> mbufs_;
};

VnetHeader Gso(uint8_t type, uint16_t gso_size, uint16_t csum_start, uint16_t csum_offset) {
  return {.flags = VnetHeader::kNeedsChecksum,
          .gso_type = type,
          .hdr_len = 0,
          .gso_size = gso_size,
          .csum_start = csum_start,
          .csum_offset = csum_offset};
}

TEST_F(OffloadTest, AFrameWithoutOffloadStateIsCopiedAsItIs) {
  const Bytes frame = In4(pb::Ipv4("192.0.2.1", "10.0.0.1", IPPROTO_UDP, pb::Udp(1000, 53, Payload(20))), 0, 60);
  const ReceivedFrame f = ReceivedFrame::Make(frame.data(), uint32_t(frame.size()), {}, std::nullopt);
  ASSERT_FALSE(f.error());
  EXPECT_FALSE(f.gso());
  EXPECT_EQ(Unpack(f), std::vector<Bytes>{frame});  // padding and all
}

TEST_F(OffloadTest, PartialChecksumsAreCompleted) {
  struct Case {
    const char* name;
    Bytes complete;
    bool v4;
    uint8_t protocol;
  };
  const Case cases[] = {
      {"tcp4", In4(pb::Ipv4("192.0.2.1", "10.0.0.1", IPPROTO_TCP, TcpSeq(7, kAck, Payload(333)))), true, IPPROTO_TCP},
      {"udp4", In4(pb::Ipv4("192.0.2.1", "10.0.0.1", IPPROTO_UDP, pb::Udp(1000, 53, Payload(41)))), true, IPPROTO_UDP},
      {"tcp6", In6(pb::Ipv6("2001:db8::1", "fd00::1", IPPROTO_TCP, TcpSeq(7, kAck, Payload(100)))), false, IPPROTO_TCP},
      {"udp6", In6(pb::Ipv6("2001:db8::1", "fd00::1", IPPROTO_UDP, pb::Udp(1000, 53, Payload(9)))), false, IPPROTO_UDP},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const size_t l3 = 14, l4 = l3 + (c.v4 ? 20 : 40), field = c.protocol == IPPROTO_TCP ? 16 : 6;
    Bytes partial = c.complete;
    MakePartial(partial, l3, l4, field, c.v4);
    ASSERT_NE(partial, c.complete);
    const VnetHeader vnet{
        .flags = VnetHeader::kNeedsChecksum, .csum_start = uint16_t(l4), .csum_offset = uint16_t(field)};
    const ReceivedFrame f = ReceivedFrame::Make(partial.data(), uint32_t(partial.size()), vnet, std::nullopt);
    ASSERT_FALSE(f.error());
    EXPECT_EQ(Unpack(f), std::vector<Bytes>{c.complete});
  }
}

TEST_F(OffloadTest, ATcp4GsoFrameBecomesTheSegmentsTheSenderMeant) {
  const Bytes payload = Payload(5000);
  constexpr uint16_t kMss = 1448;
  constexpr uint32_t kSeq = 0xfffff000;  // wraps within the frame
  pb::Ipv4Options ip{.df = true, .id = 0xfffe, .l4_checksum = false};
  Bytes frame =
      In4(pb::Ipv4("192.0.2.1", "10.0.0.1", IPPROTO_TCP, TcpSeq(kSeq, kAck | kPsh | kFin | kCwr, payload), ip));
  MakePartial(frame, 14, 34, 16, true);
  const ReceivedFrame f =
      ReceivedFrame::Make(frame.data(), uint32_t(frame.size()), Gso(VnetHeader::kGsoTcpV4, kMss, 34, 16), std::nullopt);
  ASSERT_FALSE(f.error());
  EXPECT_TRUE(f.gso());
  ASSERT_EQ(f.segments(), 4u);
  const std::vector<Bytes> expected = Tcp4Segments(kSeq, kAck | kPsh | kFin | kCwr, payload, kMss, 0xfffe);
  const std::vector<Bytes> got = Unpack(f);
  ASSERT_EQ(got.size(), expected.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i], expected[i]) << "segment " << i << "\n" << pb::Hex(got[i]);
}

TEST_F(OffloadTest, ATcp6GsoFrameBecomesSegments) {
  const Bytes payload = Payload(3000);
  constexpr uint16_t kMss = 1428;
  Bytes frame =
      In6(pb::Ipv6("2001:db8::1", "fd00::1", IPPROTO_TCP, TcpSeq(1, kAck | kPsh, payload), {.l4_checksum = false}));
  MakePartial(frame, 14, 54, 16, false);
  const ReceivedFrame f =
      ReceivedFrame::Make(frame.data(), uint32_t(frame.size()), Gso(VnetHeader::kGsoTcpV6, kMss, 54, 16), std::nullopt);
  ASSERT_FALSE(f.error());
  ASSERT_EQ(f.segments(), 3u);
  std::vector<Bytes> expected;
  for (uint32_t i = 0; i < 3; ++i) {
    const uint8_t flags = uint8_t(kAck | (i == 2 ? kPsh : 0));
    expected.push_back(
        In6(pb::Ipv6("2001:db8::1", "fd00::1", IPPROTO_TCP, TcpSeq(1 + i * kMss, flags, Chunk(payload, i, kMss)))));
  }
  EXPECT_EQ(Unpack(f), expected);
}

TEST_F(OffloadTest, AUdpGsoFrameBecomesDatagramsWithTheirOwnHeaders) {
  const Bytes payload = Payload(2500);
  constexpr uint16_t kSize = 1200;
  Bytes frame =
      In4(pb::Ipv4("192.0.2.1", "10.0.0.1", IPPROTO_UDP, pb::Udp(4433, 443, payload), {.l4_checksum = false}));
  MakePartial(frame, 14, 34, 6, true);
  const ReceivedFrame f =
      ReceivedFrame::Make(frame.data(), uint32_t(frame.size()), Gso(VnetHeader::kGsoUdpL4, kSize, 34, 6), std::nullopt);
  ASSERT_FALSE(f.error());
  ASSERT_EQ(f.segments(), 3u);
  std::vector<Bytes> expected;
  for (uint32_t i = 0; i < 3; ++i) {
    expected.push_back(In4(pb::Ipv4("192.0.2.1", "10.0.0.1", IPPROTO_UDP, pb::Udp(4433, 443, Chunk(payload, i, kSize)),
                                    {.id = uint16_t(i)})));
  }
  EXPECT_EQ(Unpack(f), expected);
}

TEST_F(OffloadTest, TheVlanTagTheKernelTookOffIsPutBack) {
  const Bytes complete = In4(pb::Ipv4("192.0.2.1", "10.0.0.1", IPPROTO_UDP, pb::Udp(1000, 53, Payload(30))), 0);
  Bytes partial = complete;
  MakePartial(partial, 14, 34, 6, true);
  const VnetHeader vnet{.flags = VnetHeader::kNeedsChecksum, .csum_start = 34, .csum_offset = 6};
  const ReceivedFrame f = ReceivedFrame::Make(partial.data(), uint32_t(partial.size()), vnet, VlanTag{0x8100, 42});
  ASSERT_FALSE(f.error());
  const Bytes tagged = In4(pb::Ipv4("192.0.2.1", "10.0.0.1", IPPROTO_UDP, pb::Udp(1000, 53, Payload(30))), 42);
  EXPECT_EQ(Unpack(f), std::vector<Bytes>{tagged});
}

TEST_F(OffloadTest, AGsoFrameWithoutPayloadIsOnePacket) {
  Bytes frame = In4(pb::Ipv4("192.0.2.1", "10.0.0.1", IPPROTO_TCP, TcpSeq(5, kAck, {})));
  const ReceivedFrame f =
      ReceivedFrame::Make(frame.data(), uint32_t(frame.size()), Gso(VnetHeader::kGsoTcpV4, 1448, 34, 16), std::nullopt);
  ASSERT_FALSE(f.error());
  EXPECT_EQ(Unpack(f), std::vector<Bytes>{frame});
}

TEST_F(OffloadTest, WhatCannotBeSegmentedIsRefusedWithItsReason) {
  const Bytes tcp4 = In4(pb::Ipv4("192.0.2.1", "10.0.0.1", IPPROTO_TCP, TcpSeq(1, kAck, Payload(3000))));
  const Bytes udp4 = In4(pb::Ipv4("192.0.2.1", "10.0.0.1", IPPROTO_UDP, pb::Udp(1, 2, Payload(3000))));
  const Bytes tcp6_ext = In6(pb::Ipv6("2001:db8::1", "fd00::1", IPPROTO_TCP, TcpSeq(1, kAck, Payload(3000)),
                                      {.extensions = {{IPPROTO_DSTOPTS, Bytes(6)}}}));
  Bytes bad_offset = tcp4;
  bad_offset[34 + 12] = 0x20;  // a TCP data offset of 8 bytes
  struct Case {
    const char* name;
    Bytes frame;
    VnetHeader vnet;
    DropReason reason;
  };
  const Case cases[] = {
      {"UFO", udp4, Gso(VnetHeader::kGsoUdp, 1400, 34, 6), DropReason::kGsoUnsupported},
      {"TCPv6 GSO on IPv4", tcp4, Gso(VnetHeader::kGsoTcpV6, 1400, 34, 16), DropReason::kGsoUnsupported},
      {"TCP GSO on UDP", udp4, Gso(VnetHeader::kGsoTcpV4, 1400, 34, 16), DropReason::kGsoUnsupported},
      {"IPv6 extension headers", tcp6_ext, Gso(VnetHeader::kGsoTcpV6, 1400, 62, 16), DropReason::kGsoUnsupported},
      {"unknown GSO type", tcp4, Gso(0x44, 1400, 34, 16), DropReason::kGsoUnsupported},
      {"gso_size 0", tcp4, Gso(VnetHeader::kGsoTcpV4, 0, 34, 16), DropReason::kMalformed},
      {"bad TCP data offset", bad_offset, Gso(VnetHeader::kGsoTcpV4, 1400, 34, 16), DropReason::kMalformed},
      {"IP datagram beyond the frame", Bytes(tcp4.begin(), tcp4.end() - 1), Gso(VnetHeader::kGsoTcpV4, 1400, 34, 16),
       DropReason::kTruncated},
      {"checksum field beyond the datagram",
       tcp4,
       {.flags = VnetHeader::kNeedsChecksum, .csum_start = uint16_t(tcp4.size() - 1), .csum_offset = 0},
       DropReason::kMalformed},
      {"checksum start in the MAC header",
       tcp4,
       {.flags = VnetHeader::kNeedsChecksum, .csum_start = 4, .csum_offset = 0},
       DropReason::kMalformed},
      {"no Ethernet header", Bytes(tcp4.begin(), tcp4.begin() + 10), Gso(VnetHeader::kGsoTcpV4, 1400, 34, 16),
       DropReason::kTruncated},
      {"no Ethernet header, nothing to do", Bytes(tcp4.begin(), tcp4.begin() + 10), {}, DropReason::kTruncated},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const ReceivedFrame f = ReceivedFrame::Make(c.frame.data(), uint32_t(c.frame.size()), c.vnet, std::nullopt);
    ASSERT_TRUE(f.error());
    EXPECT_EQ(*f.error(), c.reason);
  }
}

// Segments must be what a worker parses: one 802.1Q tag at most. A tag in the frame under
// the one the kernel took off (QinQ: offload_fuzz found it), or an 802.1ad tag, would make
// segments no worker takes as TCP or UDP.
TEST_F(OffloadTest, AGsoFrameWithMoreThanOneTagIsRefused) {
  const Bytes untagged = In4(pb::Ipv4("192.0.2.1", "10.0.0.1", IPPROTO_UDP, pb::Udp(1, 2, Payload(3000))));
  const Bytes tagged = In4(pb::Ipv4("192.0.2.1", "10.0.0.1", IPPROTO_UDP, pb::Udp(1, 2, Payload(3000))), 7);
  const VnetHeader gso_untagged = Gso(VnetHeader::kGsoUdpL4, 1400, 34, 6);
  const VnetHeader gso_tagged = Gso(VnetHeader::kGsoUdpL4, 1400, 38, 6);
  struct Case {
    const char* name;
    const Bytes* frame;
    VnetHeader vnet;
    std::optional<VlanTag> vlan;
    bool refused;
  };
  const Case cases[] = {
      {"an 802.1Q tag in the frame under the kernel's", &tagged, gso_tagged, VlanTag{0x8100, 42}, true},
      {"an 802.1ad tag from the kernel", &untagged, gso_untagged, VlanTag{0x88a8, 42}, true},
      {"one 802.1Q tag in the frame", &tagged, gso_tagged, std::nullopt, false},
      {"one 802.1Q tag from the kernel", &untagged, gso_untagged, VlanTag{0x8100, 42}, false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const ReceivedFrame f = ReceivedFrame::Make(c.frame->data(), uint32_t(c.frame->size()), c.vnet, c.vlan);
    EXPECT_EQ(f.error().has_value(), c.refused);
    if (c.refused && f.error()) {
      EXPECT_EQ(*f.error(), DropReason::kGsoUnsupported);
    }
  }
}

}  // namespace
}  // namespace lb::dataplane::test
