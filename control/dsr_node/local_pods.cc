#include "control/dsr_node/local_pods.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_format.h"

namespace lb::control::dsr_node {
namespace {

using k8s::KEndpointSlice;
using k8s::KPod;
using k8s::KService;

// Whether `s` is a DSR Service of ours (its settings, or the last good ones).
bool AsksForDsr(const KService& s, const LocalPolicy& policy, k8s::LastGoodSettings* last_good) {
  if (s.type != "LoadBalancer" || s.load_balancer_class != policy.load_balancer_class) return false;
  k8s::ServiceSettings settings;
  if (auto parsed = k8s::ParseAnnotations(s.annotations); parsed.ok()) {
    settings = *parsed;
    (*last_good)[s.Key()] = settings;
  } else if (auto it = last_good->find(s.Key()); it != last_good->end()) {
    settings = it->second;
  } else {
    return false;
  }
  return settings.mode != ForwardingMode::kNat;
}

std::vector<IpAddress> VipsOf(const KService& s, const LocalPolicy& policy) {
  std::vector<IpAddress> vips;
  std::vector<std::string> texts = s.ingress_ips;
  if (policy.external_ips.Allows(s.ns)) texts.insert(texts.end(), s.external_ips.begin(), s.external_ips.end());
  for (const std::string& text : texts) {
    if (auto ip = IpAddress::Parse(text); ip && ip->SpecialPurpose().empty() && !ip->IsZero()) vips.push_back(*ip);
  }
  return vips;
}

template <typename T>
void SortUnique(std::vector<T>& v) {
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
}

}  // namespace

LocalPods LocalDsrPods(const std::vector<KService>& services, const std::vector<KEndpointSlice>& slices,
                       const std::vector<KPod>& pods, const LocalPolicy& policy, k8s::LastGoodSettings* last_good) {
  LocalPods out;
  std::map<std::string, const KPod*> local_pods;
  for (const KPod& p : pods) {
    if (p.node_name == policy.node_name) local_pods[p.Key()] = &p;
  }
  std::map<std::pair<std::string, std::string>, std::vector<IpAddress>> dsr_vips;  // (ns, name) -> VIPs
  for (const KService& s : services) {
    if (!AsksForDsr(s, policy, last_good)) continue;
    if (auto vips = VipsOf(s, policy); !vips.empty()) dsr_vips[{s.ns, s.name}] = std::move(vips);
  }
  for (const KEndpointSlice& slice : slices) {
    const auto service = dsr_vips.find({slice.ns, slice.service_name});
    if (service == dsr_vips.end()) continue;
    if (slice.managed_by != k8s::kEndpointSliceController && !policy.accept_unmanaged_slices) {
      out.notes.push_back(absl::StrFormat("EndpointSlice %s/%s skipped: not managed by the EndpointSlice controller",
                                          slice.ns, k8s::Printable(slice.name)));
      continue;
    }
    for (const k8s::Endpoint& e : slice.endpoints) {
      if (e.node_name != policy.node_name || e.addresses.empty()) continue;
      const std::string where = absl::StrFormat("EndpointSlice %s/%s: endpoint %s", slice.ns,
                                                k8s::Printable(slice.name), k8s::Printable(e.addresses.front()));
      if (e.target_kind != "Pod" || (!e.target_namespace.empty() && e.target_namespace != slice.ns)) {
        out.notes.push_back(where + " skipped: its targetRef is not a Pod of the Service's namespace");
        continue;
      }
      const auto pod = local_pods.find(slice.ns + "/" + e.target_name);
      const auto address = IpAddress::Parse(e.addresses.front());
      if (pod == local_pods.end() || !address) {
        out.notes.push_back(where + " skipped: no such Pod on this node (yet)");
        continue;
      }
      if (pod->second->host_network) {
        out.notes.push_back(where +
                            " skipped: the Pod is on the host's network; DSR needs a network namespace of its own");
        continue;
      }
      const auto& ips = pod->second->pod_ips;
      if (std::none_of(ips.begin(), ips.end(),
                       [&](const std::string& ip) { return IpAddress::Parse(ip) == address; })) {
        out.notes.push_back(where + " skipped: not an address of Pod " + pod->first);
        continue;
      }
      PodVips& entry = out.pods[pod->first];
      entry.pod = pod->first;
      entry.addresses.push_back(*address);
      entry.vips.insert(entry.vips.end(), service->second.begin(), service->second.end());
    }
  }
  for (auto& [key, entry] : out.pods) {
    SortUnique(entry.addresses);
    SortUnique(entry.vips);
  }
  std::set<std::string> present;
  for (const KService& s : services) present.insert(s.Key());
  std::erase_if(*last_good, [&](const auto& entry) { return !present.contains(entry.first); });
  return out;
}

}  // namespace lb::control::dsr_node
