// The BGP settings of one LB node, as lb-bird-gen reads them (YAML), and their
// validation. Pure: any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/ip_address.h"

namespace lb::control::bird {

struct AnnouncedPrefix {
  IpPrefix prefix;
  uint32_t prepend = 0;  // extra copies of the local AS on the path: a backup announcement
};

struct BfdSettings {
  uint32_t min_rx_ms = 100;
  uint32_t min_tx_ms = 100;
  uint32_t multiplier = 3;
};

struct Peer {
  std::string name;  // BIRD protocol name: [a-z][a-z0-9_]*
  IpAddress address;
  uint32_t as = 0;
  std::string password;                    // empty: none (TCP MD5)
  uint32_t multihop = 0;                   // 0: directly connected on the interface
  std::optional<IpAddress> local_address;  // session source; BIRD needs it for multihop + BFD
  bool bfd = true;                         // when the node has BFD settings
};

struct NodeConfig {
  IpAddress router_id;  // IPv4
  uint32_t local_as = 0;
  std::string interface = "lb0";  // lbd's exception interface: static routes and BFD on it
  std::vector<AnnouncedPrefix> prefixes;
  std::vector<std::pair<uint16_t, uint16_t>> communities;  // standard, added on export
  std::optional<uint32_t> local_pref;                      // iBGP peers only
  bool graceful_restart = true;
  std::optional<BfdSettings> bfd;
  std::vector<Peer> peers;
};

// Parses and validates YAML (see docs/bird.md); errors name the field, as in
// "peers[1].address: \"x\" is not an IP address".
// Reads a peer's `password_file` (a Kubernetes Secret mounted as a file): its contents
// less one trailing newline.
using PasswordReader = std::function<absl::StatusOr<std::string>(const std::string& path)>;
absl::StatusOr<std::string> ReadPasswordFile(const std::string& path);

absl::StatusOr<NodeConfig> ParseNodeConfig(const std::string& yaml,
                                           const PasswordReader& read_password = ReadPasswordFile);

}  // namespace lb::control::bird
