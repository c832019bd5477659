// What lbd tells the world about itself besides the API: Prometheus metrics and a health
// check over HTTP (GET /metrics, GET /healthz), and DPDK telemetry commands (/lb/stats,
// /lb/health) for dpdk-telemetry.py. docs/lbd.md lists them.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "control/control_core.h"
#include "control/http_endpoint.h"

namespace lb::control {

// Serves GET /metrics and GET /healthz of `core` on `address` (host:port), with the
// `top_backends` busiest backends one by one. Exits (LOG(FATAL)) when it cannot bind.
std::unique_ptr<HttpEndpoint> StartMetrics(const std::string& address, uint32_t top_backends, ControlCore* core);

// Registers /lb/stats and /lb/health with DPDK telemetry. They answer from `*core` (any
// thread; null while lbd starts or stops: then they answer nothing).
void RegisterDpdkTelemetry(const std::atomic<ControlCore*>* core);

}  // namespace lb::control
