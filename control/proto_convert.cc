#include "control/proto_convert.h"

#include "absl/strings/str_format.h"

namespace lb::control {

absl::StatusOr<IpAddress> ParseAddress(const std::string& text, const std::string& field) {
  auto a = IpAddress::Parse(text);
  if (!a) {
    return absl::InvalidArgumentError(absl::StrFormat("%s: \"%s\" is not an IPv4 or IPv6 address", field, text));
  }
  return *a;
}

absl::StatusOr<uint16_t> ParsePort(uint32_t port, const std::string& field) {
  if (port > 65535) {
    return absl::InvalidArgumentError(absl::StrFormat("%s: %d is not a port (0..65535)", field, port));
  }
  return uint16_t(port);
}

absl::StatusOr<ServiceId> FromProto(const lb::v1::ServiceKey& key, const std::string& field) {
  auto vip = ParseAddress(key.vip(), field + ".vip");
  if (!vip.ok()) return vip.status();
  if (key.protocol() != lb::v1::TCP && key.protocol() != lb::v1::UDP) {
    return absl::InvalidArgumentError(absl::StrFormat("%s.protocol: must be TCP or UDP", field));
  }
  auto port = ParsePort(key.port(), field + ".port");
  if (!port.ok()) return port.status();
  return ServiceId{*vip, uint8_t(key.protocol()), *port};
}

absl::StatusOr<BackendState> FromProto(lb::v1::BackendState state, const std::string& field) {
  switch (state) {
    case lb::v1::BACKEND_STATE_UNSPECIFIED:
    case lb::v1::ACTIVE:
      return BackendState::kActive;
    case lb::v1::DRAINING:
      return BackendState::kDraining;
    case lb::v1::DOWN:
      return BackendState::kDown;
    default:
      return absl::InvalidArgumentError(absl::StrFormat("%s: unknown state %d", field, int(state)));
  }
}

absl::StatusOr<BackendConfig> FromProto(const lb::v1::Backend& b, const std::string& field) {
  BackendConfig out;
  auto address = ParseAddress(b.address(), field + ".address");
  if (!address.ok()) return address.status();
  auto port = ParsePort(b.port(), field + ".port");
  if (!port.ok()) return port.status();
  auto state = FromProto(b.state(), field + ".state");
  if (!state.ok()) return state.status();
  out.address = *address;
  out.port = *port;
  out.weight = b.weight() == 0 ? 1 : b.weight();
  out.state = *state;
  return out;
}

absl::StatusOr<ServiceConfig> FromProto(const lb::v1::Service& s, const std::string& field) {
  auto id = FromProto(s.key(), field + ".key");
  if (!id.ok()) return id.status();
  ServiceConfig out;
  out.vip = id->vip;
  out.protocol = id->protocol;
  out.port = id->port;
  switch (s.mode()) {
    case lb::v1::FORWARDING_MODE_UNSPECIFIED:
    case lb::v1::DSR_IPIP:
      out.mode = ForwardingMode::kDsrIpip;
      break;
    case lb::v1::DSR_GUE:
      out.mode = ForwardingMode::kDsrGue;
      break;
    case lb::v1::NAT:
      out.mode = ForwardingMode::kNat;
      break;
    default:
      return absl::InvalidArgumentError(absl::StrFormat("%s.mode: unknown mode %d", field, int(s.mode())));
  }
  switch (s.hash_fields()) {
    case lb::v1::HASH_FIELDS_UNSPECIFIED:
    case lb::v1::FIVE_TUPLE:
      out.hash_fields = HashFields::kFiveTuple;
      break;
    case lb::v1::SOURCE_IP:
      out.hash_fields = HashFields::kSourceIp;
      break;
    case lb::v1::SOURCE_IP_DEST_PORT:
      out.hash_fields = HashFields::kSourceIpDestPort;
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrFormat("%s.hash_fields: unknown value %d", field, int(s.hash_fields())));
  }
  out.table_size = s.table_size();
  for (int i = 0; i < s.source_ranges_size(); ++i) {
    const auto p = IpPrefix::Parse(s.source_ranges(i));
    if (!p) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s.source_ranges[%d]: \"%s\" is not a CIDR prefix (host bits zero)", field, i, s.source_ranges(i)));
    }
    out.source_ranges.push_back(*p);
  }
  for (int i = 0; i < s.backends_size(); ++i) {
    auto b = FromProto(s.backends(i), absl::StrFormat("%s.backends[%d]", field, i));
    if (!b.ok()) return b.status();
    out.backends.push_back(*b);
  }
  return out;
}

lb::v1::ServiceKey ToProto(const ServiceId& id) {
  lb::v1::ServiceKey key;
  key.set_vip(id.vip.ToString());
  key.set_protocol(lb::v1::Protocol(id.protocol));
  key.set_port(id.port);
  return key;
}

lb::v1::BackendState ToProto(BackendState state) {
  switch (state) {
    case BackendState::kActive:
      return lb::v1::ACTIVE;
    case BackendState::kDraining:
      return lb::v1::DRAINING;
    case BackendState::kDown:
      return lb::v1::DOWN;
  }
  return lb::v1::BACKEND_STATE_UNSPECIFIED;
}

lb::v1::Backend ToProto(const BackendConfig& b) {
  lb::v1::Backend out;
  out.set_address(b.address.ToString());
  out.set_port(b.port);
  out.set_weight(b.weight);
  out.set_state(ToProto(b.state));
  return out;
}

lb::v1::Service ToProto(const Service& s) {
  lb::v1::Service out;
  *out.mutable_key() = ToProto(IdOf(s.config));
  out.set_mode(s.config.mode == ForwardingMode::kDsrGue ? lb::v1::DSR_GUE
               : s.config.mode == ForwardingMode::kNat  ? lb::v1::NAT
                                                        : lb::v1::DSR_IPIP);
  switch (s.config.hash_fields) {
    case HashFields::kFiveTuple:
      out.set_hash_fields(lb::v1::FIVE_TUPLE);
      break;
    case HashFields::kSourceIp:
      out.set_hash_fields(lb::v1::SOURCE_IP);
      break;
    case HashFields::kSourceIpDestPort:
      out.set_hash_fields(lb::v1::SOURCE_IP_DEST_PORT);
      break;
  }
  out.set_table_size(s.config.table_size);
  out.set_effective_table_size(EffectiveTableSize(s.config));
  for (const auto& b : s.config.backends) *out.add_backends() = ToProto(b);
  for (const IpPrefix& p : s.config.source_ranges) out.add_source_ranges(p.ToString());
  out.set_id(s.id);
  return out;
}

lb::v1::ServiceResult ToProto(const ServiceOutcome& o) {
  lb::v1::ServiceResult out;
  *out.mutable_key() = ToProto(o.id);
  switch (o.kind) {
    case ServiceOutcome::Kind::kCreated:
      out.set_outcome(lb::v1::CREATED);
      break;
    case ServiceOutcome::Kind::kUpdated:
      out.set_outcome(lb::v1::UPDATED);
      break;
    case ServiceOutcome::Kind::kUnchanged:
      out.set_outcome(lb::v1::UNCHANGED);
      break;
    case ServiceOutcome::Kind::kDeleted:
      out.set_outcome(lb::v1::DELETED);
      break;
    case ServiceOutcome::Kind::kRefused:
      out.set_outcome(lb::v1::REFUSED);
      break;
  }
  out.set_index(o.index);
  if (!o.status.ok()) {
    out.set_code(int32_t(o.status.code()));
    // Every refusal reads "FIELD: REASON" (ValidateService, ControlCore).
    const absl::string_view message = o.status.message();
    const size_t colon = message.find(": ");
    out.set_field(std::string(colon == absl::string_view::npos ? "" : message.substr(0, colon)));
    out.set_reason(std::string(colon == absl::string_view::npos ? message : message.substr(colon + 2)));
  }
  return out;
}

}  // namespace lb::control
