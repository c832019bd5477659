// Conversions between the lb.v1 wire types and the domain types of the control core.
// Parsing validates the wire form (addresses, enum values, port ranges) and names the
// offending field under `field`; the domain rules are the control core's. Pure: any
// thread.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "control/api_types.h"
#include "lb/v1/lb.pb.h"

namespace lb::control {

absl::StatusOr<ServiceId> FromProto(const lb::v1::ServiceKey& key, const std::string& field);
absl::StatusOr<ServiceConfig> FromProto(const lb::v1::Service& service, const std::string& field);
absl::StatusOr<BackendConfig> FromProto(const lb::v1::Backend& backend, const std::string& field);
absl::StatusOr<BackendState> FromProto(lb::v1::BackendState state, const std::string& field);
absl::StatusOr<IpAddress> ParseAddress(const std::string& text, const std::string& field);
absl::StatusOr<uint16_t> ParsePort(uint32_t port, const std::string& field);

lb::v1::ServiceKey ToProto(const ServiceId& id);
lb::v1::Backend ToProto(const BackendConfig& backend);
lb::v1::Service ToProto(const Service& service);
lb::v1::BackendState ToProto(BackendState state);
lb::v1::ServiceResult ToProto(const ServiceOutcome& outcome);

}  // namespace lb::control
