// BIRD as an operator sees it, from birdc's answers: the BGP sessions (`show protocols
// all`) and the BFD sessions (`show bfd sessions`). BIRD 2's text, with the protocol times
// as lb-bird-gen renders them (`timeformat protocol iso long`: "2026-12-07 02:07:45", in
// BIRD's local time). Lines that are not understood are skipped: a newer BIRD that adds
// lines loses nothing that is parsed. Pure: any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/time/time.h"

namespace lb::control::bird {

struct BgpSession {
  std::string name;                 // the protocol's name (the peer's in lb-bird-gen's config)
  std::string state;                // the protocol's: up, start, stop, down
  std::string bgp_state;            // Established, Active, Connect, Idle, OpenSent, OpenConfirm
  std::optional<absl::Time> since;  // when `state` last changed
  std::string neighbor;             // the neighbour's address (without "%interface")
  std::string last_error;           // "" when none
  uint64_t routes_exported = 0;     // over its channels: the prefixes announced to the peer
  uint64_t routes_imported = 0;
  bool established() const { return bgp_state == "Established"; }
};

struct BfdSession {
  std::string address, interface;
  std::string state;  // Up, Down, Init, AdminDown
  std::optional<absl::Time> since;
  bool up() const { return state == "Up"; }
};

std::vector<BgpSession> ParseBgpSessions(std::string_view show_protocols_all, absl::TimeZone zone);
std::vector<BfdSession> ParseBfdSessions(std::string_view show_bfd_sessions, absl::TimeZone zone);

}  // namespace lb::control::bird
