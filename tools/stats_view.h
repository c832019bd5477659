// What `lbctl stats` prints: the counters of one GetStats answer, and the live view of
// `lbctl stats --watch`, rates per second between two answers (like `top`). Pure
// functions of the answers, so that they are tested without lbd. Any thread.
#pragma once

#include <cstdint>
#include <string>

#include "lb/v1/lb.pb.h"

namespace lb::tools {

// "10.1.0.10:53/udp", "[2001:db8::1]:443/tcp", "10.1.0.10:*/tcp".
std::string ServiceName(const lb::v1::ServiceKey& key);
// "active", "draining", "down".
std::string StateName(lb::v1::BackendState state);

// 1234567 -> "1.23M" (k, M, G, T: powers of 1000), below 1000 as it is.
std::string Human(double value);

// The per-service and per-backend tables of one answer: the `limit` busiest services, and
// the `limit` busiest of the backends the request asked for.
std::string RenderTraffic(const lb::v1::Stats& stats, uint32_t limit);

struct WatchFrame {
  double seconds = 1;       // between `before` and `after`
  uint32_t rows = 10;       // services and backends shown at most, the busiest first
  std::string title;        // the first line (lbd's address, the time)
  int64_t now_unix_ms = 0;  // when `after` was taken: how long ago flow-sync peers were heard
};

// Flow sync per peer: when it was last heard (relative to `now_unix_ms`), what it sent.
std::string RenderFlowSyncPeers(const lb::v1::FlowSyncStats& sync, int64_t now_unix_ms);

// One frame of the live view: the node's packets, flows and drops per second, drops by
// reason, and per service and per backend: packets, bits, new flows and drops per second.
// A counter that went back (the service was re-created, lbd restarted) counts from zero.
std::string RenderWatch(const lb::v1::Stats& before, const lb::v1::Stats& after, const WatchFrame& frame);

}  // namespace lb::tools
