// Renders BIRD 2's configuration for an LB node. Pure: any thread.
//
// The node announces its VIP prefixes as static routes via lbd's exception interface,
// exported to its BGP peers through a filter that lets only those prefixes out; nothing
// is imported. BGP and BFD run over the exception interface, so they share the
// dataplane's fate: when lbd dies, the interface goes and the peers' BFD sessions fail.
// `announce` false renders the same sessions with no routes: the VIPs are withdrawn.
#pragma once

#include <string>

#include "control/bird/node_config.h"

namespace lb::control::bird {

struct RenderState {
  bool announce = false;
  std::string reason;  // why, for the header comment: "lbd healthy", "drained", ...
};

std::string RenderBirdConfig(const NodeConfig& config, const RenderState& state);

}  // namespace lb::control::bird
