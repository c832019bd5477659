#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "control/bird/announce_gate.h"
#include "control/bird/bird_status.h"
#include "control/bird/node_config.h"
#include "control/bird/render.h"

namespace lb::control::bird {
namespace {

using ::testing::HasSubstr;

std::string Testdata(const std::string& name) {
  const char* root = std::getenv("LB_SOURCE_ROOT");
  return std::string(root != nullptr ? root : ".") + "/tests/unit/testdata/bird/" + name;
}

std::string Read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Compares with a golden file; LB_UPDATE_GOLDEN=1 rewrites it instead (then review the
// diff, and check it with `bird -p -c FILE`, as the integration suite does).
void ExpectGolden(const std::string& actual, const std::string& golden) {
  if (std::getenv("LB_UPDATE_GOLDEN") != nullptr) {
    std::ofstream(Testdata(golden)) << actual;
    return;
  }
  EXPECT_EQ(actual, Read(Testdata(golden))) << "golden file " << golden;
}

NodeConfig Load(const std::string& name) {
  auto c = ParseNodeConfig(Read(Testdata(name)));
  EXPECT_TRUE(c.ok()) << c.status();
  return c.value_or(NodeConfig{});
}

TEST(BirdRenderTest, Basic) { ExpectGolden(RenderBirdConfig(Load("basic.yaml"), {true, "lbd healthy"}), "basic.conf"); }
TEST(BirdRenderTest, EverySetting) {
  ExpectGolden(RenderBirdConfig(Load("full.yaml"), {true, "lbd healthy"}), "full.conf");
}
TEST(BirdRenderTest, Withdrawn) {
  ExpectGolden(RenderBirdConfig(Load("full.yaml"), {false, "drained by the operator"}), "withdrawn.conf");
}

TEST(BirdRenderTest, WithdrawnKeepsSessionsButNoRoutes) {
  const std::string on = RenderBirdConfig(Load("full.yaml"), {true, "x"});
  const std::string off = RenderBirdConfig(Load("full.yaml"), {false, "x"});
  EXPECT_THAT(on, HasSubstr("route 10.100.0.0/25 via \"lb0\";"));
  EXPECT_THAT(off, ::testing::Not(HasSubstr("route ")));
  EXPECT_THAT(off, HasSubstr("protocol bgp tor_a"));
  EXPECT_THAT(off, HasSubstr("import none;"));
}

struct BadConfig {
  std::string yaml;
  std::string error;
};

TEST(NodeConfigTest, InvalidSettingsAreRefusedWithTheField) {
  const std::string peer = "peers: [{name: tor, address: 10.90.0.1, as: 65000}]\n";
  const std::string base = "router_id: 10.90.0.2\nlocal_as: 65010\nvip_prefixes: [10.100.0.0/24]\n";
  const std::vector<BadConfig> cases = {
      {"[1, 2]", "must be a YAML mapping"},
      {"local_as: 65010\nvip_prefixes: [10.1.0.0/24]\n" + peer, "router_id: required"},
      {"router_id: 2001:db8::1\nlocal_as: 1\nvip_prefixes: [10.1.0.0/24]\n" + peer, "router_id: must be an IPv4"},
      {"router_id: 10.0.0.1\nlocal_as: 0\nvip_prefixes: [10.1.0.0/24]\n" + peer, "local_as: 0 is not a usable AS"},
      {"router_id: 10.0.0.1\nlocal_as: 1\n" + peer, "vip_prefixes: required"},
      {"router_id: 10.0.0.1\nlocal_as: 1\nvip_prefixes: [10.1.0.1/24]\n" + peer,
       "vip_prefixes[0]: \"10.1.0.1/24\" is not a CIDR prefix"},
      {"router_id: 10.0.0.1\nlocal_as: 1\nvip_prefixes: [{prefix: 10.1.0.0/24, prepend: 9}]\n" + peer,
       "vip_prefixes[0].prepend: at most 8"},
      {base + "communities: ['70000:1']\n" + peer, "communities[0]: \"70000:1\" is not a standard community"},
      {base + "bfd: {min_rx_ms: 1}\n" + peer, "bfd: intervals of at least 10 ms"},
      {base, "peers: required"},
      {base + "peers: [{name: Tor, address: 10.90.0.1, as: 65000}]\n", "peers[0].name: \"Tor\" must match"},
      {base + "peers: [{name: a, address: 10.90.0.1, as: 1}, {name: a, address: 10.90.0.3, as: 1}]\n",
       "peers[1].name: \"a\" is used twice"},
      {base + "peers: [{name: a, address: nowhere, as: 1}]\n", "peers[0].address: \"nowhere\" is not an IP address"},
      {base + "peers: [{name: a, address: 10.90.0.1}]\n", "peers[0].as: required"},
      {base + "peers: [{name: a, address: 10.90.0.1, as: 1, password: 'a\"b'}]\n",
       "peers[0].password: must not contain"},
      {base + "peers: [{name: a, address: 'fd00::1', as: 1}]\n",
       "peers[0].address: an IPv6 peer, but no IPv6 VIP prefix"},
      {base + "colour: blue\n" + peer, "colour: unknown setting"},
      {base + "bfd: {}\npeers: [{name: a, address: 192.0.2.1, as: 1, multihop: 2}]\n",
       "peers[0].local_address: required for a multihop peer with BFD"},
      // Wrong shapes: an error naming the field, never an exception.
      {base + "bfd: true\n" + peer, "bfd: must be a mapping"},
      {base + "peers: [tor]\n", "peers[0]: must be a mapping"},
      {base + "communities: {a: b}\n" + peer, "communities: must be a list"},
      {"router_id: 10.0.0.1\nlocal_as: 1\nvip_prefixes: [[10.1.0.0/24]]\n" + peer, "vip_prefixes[0]: must be a prefix"},
      {base + "peers: [{name: a, address: 10.90.0.1, as: [1]}]\n", "peers[0].as"},
      {base + "bfd: {min_rx_ms: {a: 1}}\n" + peer, "bfd.min_rx_ms"},
      {base + "peers: [{name: a, address: 10.90.0.1, as: 1, password: \"a\\x01b\"}]\n",
       "peers[0].password: must not contain"},
      {base + "peers: [{name: a, address: 10.90.0.1, as: 1, password: x, password_file: /y}]\n",
       "give password or password_file, not both"},
  };
  for (const auto& c : cases) {
    const auto parsed = ParseNodeConfig(c.yaml);
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << c.yaml;
    EXPECT_THAT(std::string(parsed.status().message()), HasSubstr(c.error)) << c.yaml;
  }
}

// A peer's password may come from a file (a mounted Secret) instead of the ConfigMap.
TEST(NodeConfigTest, PasswordFromAFile) {
  const std::string yaml =
      "router_id: 10.90.0.2\nlocal_as: 65010\nvip_prefixes: [10.100.0.0/24]\n"
      "peers: [{name: tor, address: 10.90.0.1, as: 65000, password_file: /secrets/tor}]\n";
  auto reader = [](const std::string& path) -> absl::StatusOr<std::string> {
    if (path == "/secrets/tor") return std::string("s3cret");
    return absl::NotFoundError("cannot read " + path);
  };
  auto c = ParseNodeConfig(yaml, reader);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->peers[0].password, "s3cret");
  auto missing = ParseNodeConfig(yaml, [](const std::string& path) -> absl::StatusOr<std::string> {
    return absl::NotFoundError("cannot read " + path);
  });
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("peers[0].password_file: cannot read /secrets/tor"));
  auto control = ParseNodeConfig(
      yaml, [](const std::string&) -> absl::StatusOr<std::string> { return std::string("a\nprotocol static evil {"); });
  EXPECT_THAT(std::string(control.status().message()), HasSubstr("must not contain"));
}

// A reason (lbd's health problems, a drain file's path) cannot end its comment line and
// smuggle configuration into bird.conf.
TEST(BirdRenderTest, ReasonsCannotBreakOutOfTheirComment) {
  const std::string conf =
      RenderBirdConfig(Load("basic.yaml"), {false, "lbd unhealthy: x\nprotocol static evil { ipv4; }\r"});
  EXPECT_EQ(conf.find("\nprotocol static evil"), std::string::npos) << conf;
  EXPECT_THAT(conf, HasSubstr("x?protocol static evil { ipv4; }?"));
}

TEST(AnnounceGateTest, SlowToAnnounceQuickerToWithdraw) {
  AnnounceGate gate(/*up_after=*/3, /*down_after=*/2);
  EXPECT_FALSE(gate.Update(true));
  EXPECT_FALSE(gate.Update(true));
  EXPECT_TRUE(gate.Update(true)) << "third healthy check in a row";
  EXPECT_TRUE(gate.Update(false)) << "one bad check is not enough";
  EXPECT_TRUE(gate.Update(true));
  EXPECT_TRUE(gate.Update(false));
  EXPECT_FALSE(gate.Update(false)) << "two in a row withdraw";
}

TEST(AnnounceGateTest, AFlappingDataplaneDoesNotFlapBgp) {
  AnnounceGate gate(3, 2);
  int changes = 0;
  bool last = false;
  for (int i = 0; i < 100; ++i) {
    const bool announce = gate.Update(i % 2 == 0);  // healthy, unhealthy, healthy, ...
    changes += announce != last;
    last = announce;
  }
  EXPECT_EQ(changes, 0) << "never three healthy checks in a row: stays withdrawn";
}

}  // namespace
}  // namespace lb::control::bird

namespace lb::control::bird {
namespace {

// What BIRD 2.0.12 answered with lb-bird-gen's timeformat: captured from two BIRDs, one
// peer Established with BFD, one never reached; then the first peer shut down.
std::string Birdc(const std::string& name) { return Read(Testdata("../birdc/" + name)); }

absl::Time At(const char* text) {
  absl::Time t;
  std::string error;
  EXPECT_TRUE(absl::ParseTime("%Y-%m-%d %H:%M:%S", text, absl::UTCTimeZone(), &t, &error)) << error;
  return t;
}

TEST(BirdStatusTest, BgpSessionsUpAndNeverReached) {
  const auto sessions = ParseBgpSessions(Birdc("show_protocols_all_up.txt"), absl::UTCTimeZone());
  ASSERT_EQ(sessions.size(), 2u) << "the BGP protocols only (not device, BFD, static)";
  EXPECT_EQ(sessions[0].name, "tor");
  EXPECT_TRUE(sessions[0].established());
  EXPECT_EQ(sessions[0].state, "up");
  EXPECT_EQ(sessions[0].neighbor, "10.77.0.2");
  EXPECT_EQ(sessions[0].since, At("2026-12-07 02:07:45"));
  EXPECT_EQ(sessions[0].routes_exported, 1u);
  EXPECT_EQ(sessions[0].last_error, "");
  EXPECT_EQ(sessions[1].name, "tor2");
  EXPECT_FALSE(sessions[1].established());
  EXPECT_EQ(sessions[1].bgp_state, "Connect");
  EXPECT_EQ(sessions[1].neighbor, "10.77.0.9");
  EXPECT_EQ(sessions[1].routes_exported, 0u);
}

TEST(BirdStatusTest, ASessionTakenDown) {
  const auto sessions = ParseBgpSessions(Birdc("show_protocols_all_down.txt"), absl::UTCTimeZone());
  ASSERT_GE(sessions.size(), 1u);
  EXPECT_FALSE(sessions[0].established());
  EXPECT_EQ(sessions[0].bgp_state, "Active");
  EXPECT_EQ(sessions[0].last_error, "Received: Administrative shutdown");
  EXPECT_EQ(sessions[0].since, At("2026-12-07 02:07:49"));
  EXPECT_EQ(sessions[0].routes_exported, 0u);
}

TEST(BirdStatusTest, BfdSessions) {
  const auto up = ParseBfdSessions(Birdc("show_bfd_sessions_up.txt"), absl::UTCTimeZone());
  ASSERT_EQ(up.size(), 1u);
  EXPECT_EQ(up[0].address, "10.77.0.2");
  EXPECT_EQ(up[0].interface, "va");
  EXPECT_TRUE(up[0].up());
  EXPECT_EQ(up[0].since, At("2026-12-07 02:07:41"));
  const auto down = ParseBfdSessions(Birdc("show_bfd_sessions_down.txt"), absl::UTCTimeZone());
  ASSERT_EQ(down.size(), 1u);
  EXPECT_FALSE(down[0].up());
  EXPECT_TRUE(ParseBfdSessions("BIRD 2.0.12 ready.\nThere is no BFD protocol running\n", absl::UTCTimeZone()).empty());
  EXPECT_TRUE(ParseBgpSessions("garbage\n  BGP state: x\n", absl::UTCTimeZone()).empty());
}

}  // namespace
}  // namespace lb::control::bird
