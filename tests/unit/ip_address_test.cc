#include "common/ip_address.h"

#include <gtest/gtest.h>

namespace lb::dataplane {
namespace {

TEST(IpAddressTest, ParsesAndFormatsBothFamilies) {
  auto v4 = IpAddress::Parse("10.1.0.10");
  ASSERT_TRUE(v4.has_value());
  EXPECT_TRUE(v4->IsV4());
  EXPECT_EQ(v4->V4HostOrder(), 0x0a01000au);
  EXPECT_EQ(v4->ToString(), "10.1.0.10");
  auto v6 = IpAddress::Parse("2001:db8::1");
  ASSERT_TRUE(v6.has_value());
  EXPECT_FALSE(v6->IsV4());
  EXPECT_EQ(v6->ToString(), "2001:db8::1");
  // The mapped form is the IPv4 address itself: one representation per address.
  EXPECT_EQ(IpAddress::Parse("::ffff:10.1.0.10"), v4);
}

TEST(IpAddressTest, RejectsGarbage) {
  for (const char* bad : {"", "10.1.0", "10.1.0.256", "1::2::3", "host", "10.1.0.10 ",
                          "0123456789012345678901234567890123456789012345678901"}) {
    EXPECT_FALSE(IpAddress::Parse(bad).has_value()) << bad;
  }
}

TEST(IpPrefixTest, ParsesChecksHostBitsAndContains) {
  auto p = IpPrefix::Parse("10.1.0.0/24");
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->length, 24);
  EXPECT_TRUE(p->Contains(*IpAddress::Parse("10.1.0.200")));
  EXPECT_FALSE(p->Contains(*IpAddress::Parse("10.1.1.1")));
  EXPECT_FALSE(p->Contains(*IpAddress::Parse("::a01:1")));
  EXPECT_EQ(p->ToString(), "10.1.0.0/24");
  EXPECT_FALSE(IpPrefix::Parse("10.1.0.1/24").has_value());  // host bits set
  EXPECT_FALSE(IpPrefix::Parse("10.1.0.0/33").has_value());
  EXPECT_FALSE(IpPrefix::Parse("10.1.0.0/").has_value());
  EXPECT_FALSE(IpPrefix::Parse("10.1.0.0/2x").has_value());
  auto v6 = IpPrefix::Parse("2001:db8:1::/48");
  ASSERT_TRUE(v6.has_value());
  EXPECT_TRUE(v6->Contains(*IpAddress::Parse("2001:db8:1:ffff::1")));
  EXPECT_FALSE(v6->Contains(*IpAddress::Parse("2001:db8:2::1")));
}

}  // namespace
}  // namespace lb::dataplane
