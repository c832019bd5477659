// lbd's command-line flags (gflags, defined in flags.cc: `lbd --help` lists them with
// their meaning) and their conversion into the typed configuration the rest of lbd is
// built from. docs/lbd.md explains them by topic.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "common/config.h"
#include "control/lbd/api_server.h"
#include "control/lbd/runtime.h"

namespace lb::control {

// Everything lbd is started with, checked: what the control core, the runtime (ports,
// workers, flow sync) and the API server take, and the rest of start-up.
struct LbdConfig {
  NodeSettings settings;
  RuntimeOptions runtime;
  ApiServerOptions api;
  std::string metrics_address;        // empty: no HTTP endpoint
  uint32_t metrics_top_backends = 0;  // backends on /metrics one by one (StatsQuery::top_backends)
  std::string state_dir;              // empty: nothing survives a restart
  bool await_first_apply = false;
  bool drop_capabilities = true;
};

// The flags as an LbdConfig, or the first flag that is wrong and why. Reads the flow-hash
// secret file; makes --state_dir when missing.
absl::StatusOr<LbdConfig> ConfigFromFlags();

}  // namespace lb::control
