#include "control/prometheus.h"

#include "absl/strings/str_format.h"

namespace lb::control {

void AppendMetricHeader(std::string& out, std::string_view name, std::string_view type, std::string_view help) {
  absl::StrAppendFormat(&out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

}  // namespace lb::control
