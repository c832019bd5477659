// The LB nodes' site configuration: one file (the ConfigMap's site.yaml) for every LB node
// in every rack, and what it means for one node. What every node shares (the VIP CIDRs,
// the BGP settings) is written once; what differs (the uplink's address, its rack's gateway
// and ToRs, the SNAT address) is chosen by the node's name. lb-node-config renders the
// node's part into the files lbd, lb-bird-gen and lb-k8s-watcher read (docs/k8s.md, "The
// site configuration"). Pure: no I/O, any thread.
#pragma once

#include <map>
#include <string>

#include "absl/status/statusor.h"

namespace lb::control::node {

// The files of one node, by name: lbd.eal (EAL options), lbd.flags, watcher.flags (gflags
// flag files) and bird-gen.yaml (lb-bird-gen's node configuration).
using NodeFiles = std::map<std::string, std::string>;

// Parses and validates `site_yaml` and renders node `node_name`'s files. Errors name the
// field ("racks.rack-a.gateway: ...") or say that the node is not in the file.
absl::StatusOr<NodeFiles> RenderNodeFiles(const std::string& site_yaml, const std::string& node_name);

}  // namespace lb::control::node
