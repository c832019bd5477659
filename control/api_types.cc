#include "control/api_types.h"

#include <netinet/in.h>

#include "absl/strings/str_format.h"

namespace lb::control {
namespace {

std::string ProtocolName(uint8_t protocol) {
  switch (protocol) {
    case IPPROTO_TCP:
      return "tcp";
    case IPPROTO_UDP:
      return "udp";
    default:
      return std::to_string(protocol);
  }
}

}  // namespace

std::string ServiceId::ToString() const {
  const std::string address = vip.IsV4() ? vip.ToString() : "[" + vip.ToString() + "]";
  return absl::StrFormat("%s:%s/%s", address, port == 0 ? "*" : std::to_string(port), ProtocolName(protocol));
}

ServiceId IdOf(const ServiceConfig& s) { return {s.vip, s.protocol, s.port}; }

}  // namespace lb::control
