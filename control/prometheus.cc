#include "control/prometheus.h"

#include "absl/strings/str_format.h"
#include "control/version.h"

namespace lb::control {

void AppendMetricHeader(std::string& out, std::string_view name, std::string_view type, std::string_view help) {
  absl::StrAppendFormat(&out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void AppendBuildInfo(std::string& out, std::string_view program) {
  AppendMetricHeader(out, "lb_build_info", "gauge", "Always 1; the labels name the program and its build.");
  absl::StrAppendFormat(&out, "lb_build_info{program=\"%s\",version=\"%s\"} 1\n", program, BuildVersion());
}

}  // namespace lb::control
