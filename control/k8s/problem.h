// A problem with one Kubernetes Service that its owner should see: the watcher reports
// it as a Warning Event on the Service. Pure data.
#pragma once

#include <compare>
#include <string>

namespace lb::control::k8s {

struct Problem {
  std::string service;  // "namespace/name"
  std::string reason;   // the Event's reason: "InvalidAnnotation", "AddressConflict", ...
  std::string message;
  friend auto operator<=>(const Problem&, const Problem&) = default;
};

}  // namespace lb::control::k8s
