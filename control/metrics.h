// Prometheus text exposition (format 0.0.4) of lbd's stats and health. Pure: any thread.
#pragma once

#include <string>
#include <string_view>

#include "control/control_core.h"
#include "control/prometheus.h"

namespace lb::control {

std::string RenderPrometheus(const Stats& stats, const Health& health);

}  // namespace lb::control
