// The build's version, the same string in every program of the project: `--version`, the
// start-up log line, and the `lb_build_info` metric, so an operator can see that every LB
// node runs the same build. Any thread.
#pragma once

#include <string_view>

namespace lb::control {

// "0.1.0" for a build outside git; "0.1.0+d4e3325" (the commit, "-dirty" when the tree
// had uncommitted changes) for a build from a checkout.
std::string_view BuildVersion();

}  // namespace lb::control
