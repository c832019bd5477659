// Prometheus text exposition (format 0.0.4) of lbd's stats and health. Pure: any thread.
#pragma once

#include <string>
#include <string_view>

#include "control/control_core.h"

namespace lb::control {

std::string RenderPrometheus(const Stats& stats, const Health& health);

// Appends the "# HELP" and "# TYPE" lines of metric `name` (also for lb-k8s-watcher's).
void AppendMetricHeader(std::string& out, std::string_view name, std::string_view type, std::string_view help);

}  // namespace lb::control
