// libFuzzer target: what the Kubernetes API server sends, as lb-k8s-watcher reads it. The
// input is JSON (bytes that do not parse are skipped); it is read as a Service and as an
// EndpointSlice, the object's fields are read as the informer reads them, and whatever
// parses is mapped together with a fixed Service, as a reconcile would. Invariants: no
// exception escapes and nothing crashes; every mapped service validates in lbd's terms as
// far as its addresses go (a VIP from the announced CIDRs, backends of its family).
#include <cstdio>
#include <cstdlib>
#include <string>

#include <nlohmann/json.hpp>

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
  MappingOptions options;
  options.vip_cidrs = {*lb::IpPrefix::Parse("10.1.0.0/24"), *lb::IpPrefix::Parse("fd00:10::/120")};
  options.external_ips.mode = ExternalIpPolicy::Mode::kAll;
  options.accept_unmanaged_slices = true;
  LastGoodSettings last_good;
  const DesiredState d = MapClusterState(services, slices, options, &last_good);
  Check(d.services.size() == d.owners.size(), "an owner per service");
  for (const auto& s : d.services) {
    Check(options.vip_cidrs[0].Contains(s.vip) || options.vip_cidrs[1].Contains(s.vip),
          "VIPs from the announced CIDRs");
    for (const auto& b : s.backends) Check(b.address.IsV4() == s.vip.IsV4(), "backends of the VIP's family");
  }
  return 0;
}
