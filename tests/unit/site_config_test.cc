// The site configuration: one file for every LB node, rendered per node.
#include "control/node/site_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "control/bird/node_config.h"

namespace lb::control::node {
namespace {

using ::testing::HasSubstr;

// Two racks, a node in each (the shape docs/k8s.md shows).
constexpr char kSite[] = R"(
vip_cidrs: [10.1.0.0/24]
backend_cidrs: [10.244.0.0/16, 10.80.0.0/24]
port: 0000:3b:00.0
bgp:
  local_as: 65010
  bfd: {min_rx_ms: 100, min_tx_ms: 100, multiplier: 3}
racks:
  rack-a:
    gateway: 10.90.1.1
    peers: [{name: tor_a, address: 10.90.1.1, as: 65000}]
  rack-b:
    gateway: 10.90.2.1
    peers: [{name: tor_b1, address: 10.90.2.1, as: 65000}, {name: tor_b2, address: 10.90.2.254, as: 65000}]
nodes:
  lb-a1: {rack: rack-a, address: 10.90.1.2/24, snat_address: 10.93.0.1, management: 10.80.0.11}
  lb-b1: {rack: rack-b, address: 10.90.2.2/24, snat_address: 10.93.0.2, management: 10.80.0.12, port: "af_packet:eth1"}
)";

TEST(SiteConfigTest, EachNodeGetsItsRacksGatewayAndPeersAndItsOwnAddresses) {
  auto a = RenderNodeFiles(kSite, "lb-a1");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->at("lbd.eal"), "-a 0000:3b:00.0\n");
  EXPECT_EQ(a->at("lbd.flags"),
            "--port=0000:3b:00.0\n--tap_addresses=10.90.1.2/24\n--gateway=10.90.1.1\n--control_peers=10.90.1.1\n"
            "--encap_source_v4=10.90.1.2/32\n--vip_cidrs=10.1.0.0/24,10.93.0.1/32,10.93.0.2/32\n"
            "--backend_cidrs=10.244.0.0/16,10.80.0.0/24\n"
            "--snat_addresses=10.93.0.1\n--flow_sync_peers=10.80.0.11=10.93.0.1,10.80.0.12=10.93.0.2\n");
  EXPECT_EQ(
      a->at("watcher.flags"),
      "--vip_cidrs=10.1.0.0/24\n--node_addresses=10.90.1.2,10.93.0.1,10.80.0.11,10.90.2.2,10.93.0.2,10.80.0.12\n");
  auto gen = bird::ParseNodeConfig(a->at("bird-gen.yaml"));
  ASSERT_TRUE(gen.ok()) << gen.status() << "\n" << a->at("bird-gen.yaml");
  EXPECT_EQ(gen->router_id.ToString(), "10.90.1.2");
  EXPECT_EQ(gen->local_as, 65010u);
  ASSERT_TRUE(gen->bfd.has_value());
  ASSERT_EQ(gen->peers.size(), 1u);
  EXPECT_EQ(gen->peers[0].address.ToString(), "10.90.1.1");
  ASSERT_EQ(gen->prefixes.size(), 3u);
  EXPECT_EQ(gen->prefixes[0].prefix.ToString(), "10.1.0.0/24");
  EXPECT_EQ(gen->prefixes[1].prefix.ToString(), "10.93.0.1/32");
  EXPECT_EQ(gen->prefixes[1].prepend, 0u) << "its own SNAT address";
  EXPECT_EQ(gen->prefixes[2].prefix.ToString(), "10.93.0.2/32");
  EXPECT_EQ(gen->prefixes[2].prepend, 2u) << "the other's, as a backup";

  auto b = RenderNodeFiles(kSite, "lb-b1");
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->at("lbd.eal"), "--no-pci\n") << "af_packet: no PCI device";
  EXPECT_THAT(b->at("lbd.flags"), HasSubstr("--port=af_packet:eth1\n--tap_addresses=10.90.2.2/24\n--gateway=10.90.2.1\n"
                                            "--control_peers=10.90.2.1,10.90.2.254\n"));
  EXPECT_THAT(b->at("lbd.flags"), HasSubstr("--snat_addresses=10.93.0.2\n"));
  gen = bird::ParseNodeConfig(b->at("bird-gen.yaml"));
  ASSERT_TRUE(gen.ok()) << gen.status();
  EXPECT_EQ(gen->router_id.ToString(), "10.90.2.2");
  EXPECT_EQ(gen->peers.size(), 2u);
  EXPECT_EQ(gen->prefixes[1].prefix.ToString(), "10.93.0.1/32");
  EXPECT_EQ(gen->prefixes[1].prepend, 2u);
}

TEST(SiteConfigTest, WithoutSnatOrManagementAddressesNoNatAndNoFlowSync) {
  std::string site = R"(
vip_cidrs: [10.1.0.0/24]
port: af_packet:wire
bgp: {local_as: 65010}
racks: {r: {gateway: 10.90.0.1, peers: [{name: tor, address: 10.90.0.1, as: 65000}]}}
nodes: {n1: {rack: r, address: 10.90.0.2/24}})";
  auto f = RenderNodeFiles(site, "n1");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_THAT(f->at("lbd.flags"), ::testing::Not(HasSubstr("--snat_addresses")));
  EXPECT_THAT(f->at("lbd.flags"), ::testing::Not(HasSubstr("--flow_sync_peers")));
  EXPECT_THAT(f->at("lbd.flags"), HasSubstr("--vip_cidrs=10.1.0.0/24\n"));
}

TEST(SiteConfigTest, MistakesNameTheField) {
  struct Case {
    std::string replace, with, error;
  };
  const std::vector<Case> cases = {
      {"lb-a1: {rack: rack-a,", "lb-a1: {rack: rack-c,", "nodes.lb-a1.rack: no rack \"rack-c\" under racks"},
      {"address: 10.90.1.2/24", "address: 10.90.1.2", "nodes.lb-a1.address: \"10.90.1.2\" is not ADDRESS/LENGTH"},
      {"gateway: 10.90.1.1", "gateway: tor-a", "racks.rack-a.gateway: \"tor-a\" is not an IP address"},
      {"snat_address: 10.93.0.2", "snat_address: 10.93.0.1", "nodes.lb-b1: 10.93.0.1 is another node's address too"},
      {"local_as: 65010", "local_as: 65010\n  router_id: 1.2.3.4", "bgp.router_id: comes from the node"},
      {"local_as: 65010", "local_as: 0", "local_as: 0 is not a usable AS number"},
      {"vip_cidrs: [10.1.0.0/24]", "vip_cidrs: [10.1.0.1/24]", "vip_cidrs[0]: \"10.1.0.1/24\" is not a CIDR prefix"},
      {", management: 10.80.0.12", "", "nodes: give every node a management address, or none"},
      {", snat_address: 10.93.0.2", "", "nodes: give every node an snat_address, or none"},
      {"port: 0000:3b:00.0\n", "", "nodes.lb-a1.port (or port, for every node): required"},
      {"racks:", "rack:", "rack: unknown setting"},
      {"10.244.0.0/16,", "10.244.0.1/16,", "backend_cidrs[0]: \"10.244.0.1/16\" is not a CIDR prefix"},
  };
  for (const Case& c : cases) {
    std::string site = kSite;
    const size_t at = site.find(c.replace);
    ASSERT_NE(at, std::string::npos) << c.replace;
    site.replace(at, c.replace.size(), c.with);
    auto f = RenderNodeFiles(site, "lb-a1");
    ASSERT_FALSE(f.ok()) << c.with;
    EXPECT_THAT(std::string(f.status().message()), HasSubstr(c.error)) << c.with;
  }
  auto missing = RenderNodeFiles(kSite, "lb-z9");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("node \"lb-z9\" is not under nodes"));
  EXPECT_FALSE(RenderNodeFiles("[1, 2", "lb-a1").ok());
  EXPECT_FALSE(RenderNodeFiles("- a\n- b\n", "lb-a1").ok());
}

}  // namespace
}  // namespace lb::control::node
