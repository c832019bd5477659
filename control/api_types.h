// The control API's domain types, shared by lbd's control core and by every program
// that converts them to and from lb.v1 (lbctl, lb-k8s-watcher): plain values without
// DPDK. Any thread.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "common/config.h"
#include "common/ip_address.h"

namespace lb::control {

// A service's identity: its frontend.
struct ServiceId {
  IpAddress vip;
  uint8_t protocol = 0;
  uint16_t port = 0;
  auto operator<=>(const ServiceId&) const = default;
  std::string ToString() const;  // "10.1.0.10:53/udp", "[2001:db8::1]:80/tcp", ".../tcp (all ports)"
};

struct Service {
  uint64_t id = 0;  // assigned on creation, stable while the service exists
  ServiceConfig config;
};

// What Apply did with one service.
struct ServiceOutcome {
  enum class Kind { kCreated, kUpdated, kUnchanged, kDeleted, kRefused };
  Kind kind = Kind::kUnchanged;
  ServiceId id;
  int32_t index = -1;   // in the request; -1 for a deleted service
  absl::Status status;  // kRefused: why, with the field first ("services[3].table_size: ...")
};

ServiceId IdOf(const ServiceConfig& s);

}  // namespace lb::control
