// A service's source ranges (dataplane/source_filter.h): exactly the addresses within the
// prefixes, of both families, however they overlap; checked against a prefix-by-prefix scan.
#include "dataplane/source_filter.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

namespace lb::dataplane {
namespace {

IpPrefix P(const char* text) { return *IpPrefix::Parse(text); }
IpAddress A(const char* text) { return *IpAddress::Parse(text); }

TEST(SourceFilterTest, AdmitsExactlyThePrefixes) {
  const std::vector<IpPrefix> ranges = {P("192.0.2.0/24"), P("198.51.100.7/32"), P("2001:db8::/32"), P("10.0.0.0/8"),
                                        P("10.1.0.0/16")};
  auto f = SourceFilter::Build(ranges);
  EXPECT_EQ(f->ranges(), 4u) << "10.1.0.0/16 lies within 10.0.0.0/8";
  for (const char* in : {"192.0.2.0", "192.0.2.255", "198.51.100.7", "2001:db8::1", "2001:db8:ffff:ffff::1", "10.0.0.0",
                         "10.255.255.255"}) {
    EXPECT_TRUE(f->Admits(A(in))) << in;
  }
  for (const char* out : {"192.0.1.255", "192.0.3.0", "198.51.100.6", "198.51.100.8", "2001:db9::", "11.0.0.0",
                          "9.255.255.255", "::ffff:0:0", "::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"}) {
    EXPECT_FALSE(f->Admits(A(out))) << out;
  }
}

TEST(SourceFilterTest, TheWholeSpaceAndTouchingRangesMerge) {
  auto all4 = SourceFilter::Build(std::vector<IpPrefix>{P("0.0.0.0/0")});
  EXPECT_TRUE(all4->Admits(A("255.255.255.255")));
  EXPECT_TRUE(all4->Admits(A("0.0.0.0")));
  EXPECT_FALSE(all4->Admits(A("2001:db8::1"))) << "an IPv4 /0 is IPv4's whole space only";
  auto all6 = SourceFilter::Build(std::vector<IpPrefix>{P("::/0"), P("2001:db8::/32")});
  EXPECT_EQ(all6->ranges(), 1u);
  EXPECT_TRUE(all6->Admits(A("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
  EXPECT_TRUE(all6->Admits(A("::")));
  EXPECT_FALSE(all6->Admits(A("10.0.0.1"))) << "an IPv6 prefix, ::/0 too, admits no IPv4 client (Kubernetes)";
  auto touching = SourceFilter::Build(std::vector<IpPrefix>{P("10.0.1.0/24"), P("10.0.0.0/24"), P("10.0.2.0/23")});
  EXPECT_EQ(touching->ranges(), 1u);
  EXPECT_TRUE(touching->Admits(A("10.0.3.255")));
  EXPECT_FALSE(touching->Admits(A("10.0.4.0")));
  auto touching6 = SourceFilter::Build(std::vector<IpPrefix>{P("2001:db8:0:1::/64"), P("2001:db8::/64")});
  EXPECT_EQ(touching6->ranges(), 1u) << "across the halves' boundary";
  EXPECT_TRUE(touching6->Admits(A("2001:db8:0:1:ffff:ffff:ffff:ffff")));
  EXPECT_FALSE(touching6->Admits(A("2001:db8:0:2::")));
  EXPECT_FALSE(SourceFilter::Build({})->Admits(A("10.0.0.1"))) << "no ranges admit nobody (the record holds none then)";
}

TEST(SourceFilterTest, AgreesWithAScanOfThePrefixes) {
  std::mt19937 rng(7);
  for (int round = 0; round < 50; ++round) {
    std::vector<IpPrefix> ranges;
    for (int i = 0; i < 40; ++i) {
      const uint8_t length = uint8_t(8 + rng() % 25);
      // Host bits zero, as a prefix has them.
      const uint32_t v4 = (0x0a000000u | (rng() & 0xffffffu)) & (~0u << (32 - length));
      ranges.push_back({IpAddress::FromV4(v4), length});
    }
    auto f = SourceFilter::Build(ranges);
    for (int i = 0; i < 2000; ++i) {
      const IpAddress a = IpAddress::FromV4(0x0a000000u | (rng() & 0xffffffu));
      bool scan = false;
      for (const IpPrefix& p : ranges) scan |= p.Contains(a);
      ASSERT_EQ(f->Admits(a), scan) << a.ToString();
    }
  }
}

TEST(SourceFilterTest, AgreesWithAScanOfIpv6Prefixes) {
  std::mt19937_64 rng(11);
  // Addresses of 2001:db8::/32 whose low bits are mostly zero, so that prefixes overlap.
  auto random6 = [&] {
    IpAddress a = A("2001:db8::");
    for (int b = 4; b < 16; ++b) a.bytes[b] = (rng() % 4 == 0) ? uint8_t(rng()) : 0;
    return a;
  };
  for (int round = 0; round < 50; ++round) {
    std::vector<IpPrefix> ranges;
    for (int i = 0; i < 40; ++i) {
      IpPrefix p{random6(), uint8_t(33 + rng() % 96)};
      for (int bit = p.length; bit < 128; ++bit) p.address.bytes[bit / 8] &= uint8_t(~(0x80u >> (bit % 8)));
      ranges.push_back(p);
    }
    auto f = SourceFilter::Build(ranges);
    for (int i = 0; i < 2000; ++i) {
      const IpAddress a = random6();
      bool scan = false;
      for (const IpPrefix& p : ranges) scan |= p.Contains(a);
      ASSERT_EQ(f->Admits(a), scan) << a.ToString();
    }
  }
}

}  // namespace
}  // namespace lb::dataplane
