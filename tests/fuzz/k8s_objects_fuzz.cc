// libFuzzer target: what the Kubernetes API server sends, as lb-k8s-watcher and
// lb-dsr-node read it. The input is JSON (bytes that do not parse are skipped); it is read
// as a Service, an EndpointSlice, a Pod and a Lease, the object's fields are read as the
// informer reads them, and whatever parses is mapped as a reconcile would: by the
// watcher (with the Lease gate) and by lb-dsr-node's policy. Invariants: no exception
// escapes and nothing crashes; every mapped service validates in lbd's terms as far as
// its addresses go (a VIP from the announced CIDRs, backends of its family); lb-dsr-node
// names only pods of its node.
#include <cstdio>
#include <cstdlib>
#include <string>

#include <nlohmann/json.hpp>

#include "control/dsr_node/local_pods.h"
#include "control/k8s/mapping.h"
#include "control/k8s/objects.h"
#include "tests/fuzz/check.h"

namespace {

using namespace lb;
using namespace lb::control::k8s;

using lb::fuzz::Check;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const nlohmann::json j = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;
  (void)StringField(j, "kind");
  if (j.is_object() && j.contains("metadata")) (void)StringField(j["metadata"], "resourceVersion");
  std::vector<KService> services;
  std::vector<KEndpointSlice> slices;
  if (auto s = ParseService(j); s.ok()) services.push_back(*std::move(s));
  if (auto e = ParseEndpointSlice(j); e.ok()) slices.push_back(*std::move(e));
  std::vector<KPod> pods;
  if (auto p = ParsePod(j); p.ok()) pods.push_back(*std::move(p));
  std::vector<KLease> leases;
  if (auto l = ParseLease(j); l.ok()) leases.push_back(*std::move(l));
  MappingOptions options;
  options.vip_cidrs = {*lb::IpPrefix::Parse("10.1.0.0/24"), *lb::IpPrefix::Parse("fd00:10::/120")};
  options.external_ips.mode = ExternalIpPolicy::Mode::kAll;
  options.accept_unmanaged_slices = true;
  options.dsr_nodes = LiveDsrNodes(leases, absl::UnixEpoch() + absl::Hours(24 * 365 * 57));
  LastGoodSettings last_good;
  const DesiredState d = MapClusterState(services, slices, options, &last_good);
  lb::control::dsr_node::LocalPolicy policy;
  policy.node_name = pods.empty() ? "node-1" : pods[0].node_name;
  policy.accept_unmanaged_slices = true;
  LastGoodSettings dsr_last_good;
  const auto local = lb::control::dsr_node::LocalDsrPods(services, slices, pods, policy, &dsr_last_good);
  for (const auto& [key, p] : local.pods) {
    Check(!pods.empty() && key == pods[0].Key() && !pods[0].host_network, "only a local, non-host-network Pod");
  }
  Check(d.services.size() == d.owners.size(), "an owner per service");
  for (const auto& s : d.services) {
    Check(options.vip_cidrs[0].Contains(s.vip) || options.vip_cidrs[1].Contains(s.vip),
          "VIPs from the announced CIDRs");
    for (const auto& b : s.backends) Check(b.address.IsV4() == s.vip.IsV4(), "backends of the VIP's family");
  }
  return 0;
}
