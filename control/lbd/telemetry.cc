#include "control/lbd/telemetry.h"

#include <glog/logging.h>

#include "absl/strings/str_join.h"
#include "control/metrics.h"
#include "control/prometheus.h"
#include "control/version.h"
#include "dataplane/dpdk/services.h"

namespace lb::control {

std::unique_ptr<HttpEndpoint> StartMetrics(const std::string& address, uint32_t top_backends, ControlCore* core) {
  auto endpoint = HttpEndpoint::Start(address, [core, top_backends](std::string_view method, std::string_view path) {
    if (method == "GET" && path == "/metrics") {
      std::string body = RenderPrometheus(core->GetStats({.top_backends = top_backends}), core->GetHealth());
      AppendBuildInfo(body, "lbd");
      return HttpReply{.body = std::move(body)};
    }
    if (method == "GET" && path == "/healthz") {
      const Health h = core->GetHealth();
      if (h.healthy) return HttpReply{.content_type = "text/plain", .body = "ok\n"};
      return HttpReply{.status = 503, .content_type = "text/plain", .body = absl::StrJoin(h.problems, "\n") + "\n"};
    }
    return HttpReply{.status = 404, .body = "lbd serves GET /metrics and GET /healthz\n"};
  });
  if (!endpoint.ok()) LOG(FATAL) << "--metrics_address: " << endpoint.status().message();
  LOG(INFO) << "metrics on http://" << address << "/metrics";
  return *std::move(endpoint);
}

void RegisterDpdkTelemetry(const std::atomic<ControlCore*>* core) {
  // Acquire: a reply that sees the core sees it constructed.
  dataplane::dpdk::RegisterTelemetryCommand(
      "/lb/stats", "lbd counters summed over workers", [core]() -> std::optional<dataplane::dpdk::TelemetryDict> {
        ControlCore* c = core->load(std::memory_order_acquire);
        if (c == nullptr) return std::nullopt;  // starting or stopping
        const Stats stats = c->GetStats();
        dataplane::dpdk::TelemetryDict d;
        for (size_t i = 0; i < dataplane::kNumEvents; ++i) {
          d.emplace_back(std::string(dataplane::kEventInfo[i].name), stats.events[i]);
        }
        for (size_t i = 0; i < dataplane::kNumDropReasons; ++i) {
          d.emplace_back("drop_" + std::string(dataplane::kDropReasonInfo[i].name), stats.drops[i]);
        }
        d.emplace_back("flows", stats.flows);
        d.emplace_back("generation", stats.generation);
        return d;
      });
  dataplane::dpdk::RegisterTelemetryCommand(
      "/lb/health", "lbd health", [core]() -> std::optional<dataplane::dpdk::TelemetryDict> {
        ControlCore* c = core->load(std::memory_order_acquire);
        if (c == nullptr) return std::nullopt;
        const Health h = c->GetHealth();
        return dataplane::dpdk::TelemetryDict{{"healthy", h.healthy}, {"workers_alive", h.workers_alive}};
      });
}

}  // namespace lb::control
