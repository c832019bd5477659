// Prometheus text exposition (format 0.0.4) helpers, shared by lbd's and lb-k8s-watcher's
// /metrics. Pure: any thread.
#pragma once

#include <string>
#include <string_view>

namespace lb::control {

// Appends the "# HELP" and "# TYPE" lines of metric `name`.
void AppendMetricHeader(std::string& out, std::string_view name, std::string_view type, std::string_view help);

// Appends `lb_build_info{program="...",version="..."} 1` (the node_exporter convention of
// a constant 1 with the build as labels), so that dashboards can compare the nodes' builds.
void AppendBuildInfo(std::string& out, std::string_view program);

}  // namespace lb::control
