#include "control/lbd/host_interface.h"

#include "control/lbd/neighbors.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <unistd.h>

namespace lb::control {
namespace {

namespace fs = std::filesystem;

// A /proc/sys of files: what the host had before lbd (forwarding on, as on every
// Kubernetes node).
class KernelStackGuardTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("host_interface_test." + std::to_string(getpid()));
    fs::create_directories(root_ / "net/ipv4/conf/wire");
    fs::create_directories(root_ / "net/ipv6/conf/wire");
    Write("net/ipv4/conf/wire/forwarding", "1");
    Write("net/ipv4/conf/wire/arp_ignore", "0");
    Write("net/ipv4/conf/wire/rp_filter", "2");
    Write("net/ipv6/conf/wire/disable_ipv6", "0");
  }
  void TearDown() override { fs::remove_all(root_); }

  void Write(const std::string& path, const std::string& value) { std::ofstream(root_ / path) << value << "\n"; }
  std::string Read(const std::string& path) {
    std::ifstream in(root_ / path);
    std::string v;
    in >> v;
    return v;
  }

  fs::path root_;
};

TEST_F(KernelStackGuardTest, SetsTheInterfacesSettingsAndRestoresThem) {
  {
    auto guard = KernelStackGuard::Take("wire", root_.string());
    ASSERT_TRUE(guard.ok()) << guard.status();
    EXPECT_EQ(Read("net/ipv4/conf/wire/forwarding"), "0");
    EXPECT_EQ(Read("net/ipv4/conf/wire/arp_ignore"), "8");
    EXPECT_EQ(Read("net/ipv4/conf/wire/rp_filter"), "1");
    EXPECT_EQ(Read("net/ipv6/conf/wire/disable_ipv6"), "1");
  }
  EXPECT_EQ(Read("net/ipv4/conf/wire/forwarding"), "1");
  EXPECT_EQ(Read("net/ipv4/conf/wire/arp_ignore"), "0");
  EXPECT_EQ(Read("net/ipv4/conf/wire/rp_filter"), "2");
  EXPECT_EQ(Read("net/ipv6/conf/wire/disable_ipv6"), "0");
}

// Writing net.ipv4.ip_forward=1 sets every interface's forwarding back to 1.
TEST_F(KernelStackGuardTest, EnforcePutsBackWhatOtherSoftwareChanged) {
  auto guard = KernelStackGuard::Take("wire", root_.string());
  ASSERT_TRUE(guard.ok()) << guard.status();
  EXPECT_EQ((*guard)->Enforce(), 0);
  Write("net/ipv4/conf/wire/forwarding", "1");
  EXPECT_EQ((*guard)->Enforce(), 1);
  EXPECT_EQ(Read("net/ipv4/conf/wire/forwarding"), "0");
}

TEST_F(KernelStackGuardTest, RefusesUnknownInterfacesAndBadNames) {
  EXPECT_EQ(KernelStackGuard::Take("eth9", root_.string()).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(KernelStackGuard::Take("../all", root_.string()).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(KernelStackGuard::Take("", root_.string()).status().code(), absl::StatusCode::kInvalidArgument);
}

// A kernel without IPv6: the IPv4 settings alone.
TEST_F(KernelStackGuardTest, WorksWithoutIpv6) {
  fs::remove_all(root_ / "net/ipv6");
  auto guard = KernelStackGuard::Take("wire", root_.string());
  ASSERT_TRUE(guard.ok()) << guard.status();
  EXPECT_EQ(Read("net/ipv4/conf/wire/forwarding"), "0");
}

TEST(InterfaceAddressTest, KeepsTheHostBitsAndChecksTheLength) {
  const auto v4 = InterfaceAddress::Parse("10.90.0.2/24");
  ASSERT_TRUE(v4.has_value());
  EXPECT_EQ(v4->address.ToString(), "10.90.0.2");
  EXPECT_EQ(v4->length, 24);
  const auto v6 = InterfaceAddress::Parse("fd00::2/64");
  ASSERT_TRUE(v6.has_value());
  EXPECT_EQ(v6->length, 64);
  for (const char* bad : {"10.90.0.2", "10.90.0.2/33", "10.90.0.2/", "10.90.0.2/2x", "fd00::2/129", "x/24"}) {
    EXPECT_FALSE(InterfaceAddress::Parse(bad).has_value()) << bad;
  }
}

}  // namespace
}  // namespace lb::control
