#include "control/k8s/objects.h"

#include <cctype>

#include "absl/strings/ascii.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

namespace lb::control::k8s {
namespace {

using nlohmann::json;

// Typed access to optional fields: a field of the wrong type is an error naming it.
class Reader {
 public:
  explicit Reader(std::string where) : where_(std::move(where)) {}

  std::string String(const json& parent, const char* key, const std::string& field) {
    const json* v = Find(parent, key, json::value_t::string, field);
    return v == nullptr ? std::string() : v->get<std::string>();
  }
  std::optional<bool> Bool(const json& parent, const char* key, const std::string& field) {
    const json* v = Find(parent, key, json::value_t::boolean, field);
    return v == nullptr ? std::nullopt : std::optional<bool>(v->get<bool>());
  }
  std::optional<uint32_t> Port(const json& parent, const char* key, const std::string& field) {
    if (!parent.contains(key) || parent[key].is_null()) return std::nullopt;
    const json& v = parent[key];
    if (!v.is_number_integer() || v.get<int64_t>() < 1 || v.get<int64_t>() > 65535) {
      Fail(field + "." + key, "not a port number");
      return std::nullopt;
    }
    return uint32_t(v.get<int64_t>());
  }
  const json& Array(const json& parent, const char* key, const std::string& field) {
    static const json kEmpty = json::array();
    const json* v = Find(parent, key, json::value_t::array, field);
    return v == nullptr ? kEmpty : *v;
  }
  const json& Object(const json& parent, const char* key, const std::string& field) {
    static const json kEmpty = json::object();
    const json* v = Find(parent, key, json::value_t::object, field);
    return v == nullptr ? kEmpty : *v;
  }
  std::vector<std::string> Strings(const json& parent, const char* key, const std::string& field) {
    std::vector<std::string> out;
    const json& a = Array(parent, key, field);
    for (size_t i = 0; i < a.size(); ++i) {
      if (a[i].is_string()) {
        out.push_back(a[i].get<std::string>());
      } else {
        Fail(absl::StrFormat("%s.%s[%d]", field, key, i), "not a string");
      }
    }
    return out;
  }
  // `object`'s metadata, its namespace and name read into `ns` and `name`.
  const json& Metadata(const json& object, std::string* ns, std::string* name) {
    const json& meta = Object(object, "metadata", "");
    *ns = String(meta, "namespace", "metadata");
    *name = String(meta, "name", "metadata");
    return meta;
  }
  // `parsed`, or the first error; an object without a name is one.
  template <typename T>
  absl::StatusOr<T> Result(T parsed) {
    if (parsed.name.empty()) Fail("metadata.name", "missing");
    if (!error_.ok()) return error_;
    return parsed;
  }
  void Fail(const std::string& field, const std::string& why) {
    if (error_.ok()) error_ = absl::InvalidArgumentError(absl::StrFormat("%s: %s: %s", where_, field, why));
  }
  const absl::Status& error() const { return error_; }

 private:
  const json* Find(const json& parent, const char* key, json::value_t type, const std::string& field) {
    if (!parent.is_object() || !parent.contains(key) || parent[key].is_null()) return nullptr;
    const json& v = parent[key];
    if (v.type() != type) {
      Fail(field + "." + key, absl::StrFormat("expected %s, got %s", json(type).type_name(), v.type_name()));
      return nullptr;
    }
    return &v;
  }

  std::string where_;
  absl::Status error_;
};

std::string Where(const char* kind, const json& object) {
  const json& meta = object.is_object() && object.contains("metadata") ? object["metadata"] : json::object();
  const std::string ns = StringField(meta, "namespace"), name = StringField(meta, "name");
  return absl::StrFormat("%s %s/%s", kind, ns.empty() ? "?" : ns, name.empty() ? "?" : name);
}

// A Service's or EndpointSlice's port protocol; the API's default is TCP.
std::string ProtocolOf(Reader& r, const json& port, const std::string& field) {
  std::string protocol = r.String(port, "protocol", field);
  return protocol.empty() ? "TCP" : protocol;
}

}  // namespace

absl::StatusOr<KService> ParseService(const json& object) {
  Reader r(Where("Service", object));
  KService s;
  const json& meta = r.Metadata(object, &s.ns, &s.name);
  s.uid = r.String(meta, "uid", "metadata");
  s.resource_version = r.String(meta, "resourceVersion", "metadata");
  s.creation_timestamp = r.String(meta, "creationTimestamp", "metadata");
  for (const auto& [k, v] : r.Object(meta, "annotations", "metadata").items()) {
    if (v.is_string()) s.annotations[k] = v.get<std::string>();
  }
  const json& spec = r.Object(object, "spec", "");
  s.type = r.String(spec, "type", "spec");
  if (s.type.empty()) s.type = "ClusterIP";
  s.external_ips = r.Strings(spec, "externalIPs", "spec");
  if (spec.contains("loadBalancerClass") && spec["loadBalancerClass"].is_string()) {
    s.load_balancer_class = spec["loadBalancerClass"].get<std::string>();
  }
  s.load_balancer_ip = r.String(spec, "loadBalancerIP", "spec");
  s.ip_families = r.Strings(spec, "ipFamilies", "spec");
  s.client_ip_affinity = r.String(spec, "sessionAffinity", "spec") == "ClientIP";
  s.source_ranges = r.Strings(spec, "loadBalancerSourceRanges", "spec");
  if (auto it = s.annotations.find("service.beta.kubernetes.io/load-balancer-source-ranges");
      s.source_ranges.empty() && it != s.annotations.end()) {
    for (absl::string_view part : absl::StrSplit(it->second, ',', absl::SkipWhitespace())) {
      s.source_ranges.emplace_back(absl::StripAsciiWhitespace(part));
    }
  }
  const json& ports = r.Array(spec, "ports", "spec");
  for (size_t i = 0; i < ports.size(); ++i) {
    const std::string field = absl::StrFormat("spec.ports[%d]", i);
    ServicePort p;
    p.name = r.String(ports[i], "name", field);
    p.protocol = ProtocolOf(r, ports[i], field);
    p.port = r.Port(ports[i], "port", field).value_or(0);
    if (p.port == 0) r.Fail(field + ".port", "missing");
    if (ports[i].contains("targetPort")) {
      const json& t = ports[i]["targetPort"];
      p.target_port = t.is_string() ? t.get<std::string>() : t.dump();
    }
    s.ports.push_back(std::move(p));
  }
  const json& lb = r.Object(r.Object(object, "status", ""), "loadBalancer", "status");
  const json& ingress = r.Array(lb, "ingress", "status.loadBalancer");
  for (size_t i = 0; i < ingress.size(); ++i) {
    const std::string ip = r.String(ingress[i], "ip", absl::StrFormat("status.loadBalancer.ingress[%d]", i));
    if (!ip.empty()) s.ingress_ips.push_back(ip);
  }
  return r.Result(std::move(s));
}

std::string Printable(const std::string& text, size_t max) {
  std::string out = text.substr(0, max);
  for (char& ch : out) {
    if (std::iscntrl(static_cast<unsigned char>(ch))) ch = '?';
  }
  return text.size() > max ? out + "..." : out;
}

std::string StringField(const json& parent, const char* key) {
  if (!parent.is_object()) return {};
  const auto it = parent.find(key);
  return it != parent.end() && it->is_string() ? it->get<std::string>() : std::string();
}

absl::StatusOr<KEndpointSlice> ParseEndpointSlice(const json& object) {
  Reader r(Where("EndpointSlice", object));
  KEndpointSlice e;
  const json& meta = r.Metadata(object, &e.ns, &e.name);
  const json& labels = r.Object(meta, "labels", "metadata");
  e.service_name = r.String(labels, "kubernetes.io/service-name", "metadata.labels");
  e.managed_by = r.String(labels, "endpointslice.kubernetes.io/managed-by", "metadata.labels");
  e.address_type = r.String(object, "addressType", "");
  const json& ports = r.Array(object, "ports", "");
  for (size_t i = 0; i < ports.size(); ++i) {
    const std::string field = absl::StrFormat("ports[%d]", i);
    SlicePort p;
    p.name = r.String(ports[i], "name", field);
    p.protocol = ProtocolOf(r, ports[i], field);
    p.port = r.Port(ports[i], "port", field);
    e.ports.push_back(std::move(p));
  }
  const json& endpoints = r.Array(object, "endpoints", "");
  for (size_t i = 0; i < endpoints.size(); ++i) {
    const std::string field = absl::StrFormat("endpoints[%d]", i);
    Endpoint ep;
    ep.addresses = r.Strings(endpoints[i], "addresses", field);
    const json& c = r.Object(endpoints[i], "conditions", field);
    ep.ready = r.Bool(c, "ready", field + ".conditions");
    ep.serving = r.Bool(c, "serving", field + ".conditions");
    ep.terminating = r.Bool(c, "terminating", field + ".conditions");
    ep.node_name = r.String(endpoints[i], "nodeName", field);
    const json& target = r.Object(endpoints[i], "targetRef", field);
    ep.target_kind = r.String(target, "kind", field + ".targetRef");
    ep.target_namespace = r.String(target, "namespace", field + ".targetRef");
    ep.target_name = r.String(target, "name", field + ".targetRef");
    e.endpoints.push_back(std::move(ep));
  }
  return r.Result(std::move(e));
}

absl::StatusOr<KPod> ParsePod(const json& object) {
  Reader r(Where("Pod", object));
  KPod p;
  const json& meta = r.Metadata(object, &p.ns, &p.name);
  p.uid = r.String(meta, "uid", "metadata");
  const json& spec = r.Object(object, "spec", "");
  p.node_name = r.String(spec, "nodeName", "spec");
  p.host_network = r.Bool(spec, "hostNetwork", "spec").value_or(false);
  const json& status = r.Object(object, "status", "");
  const json& ips = r.Array(status, "podIPs", "status");
  for (size_t i = 0; i < ips.size(); ++i) {
    const std::string ip = r.String(ips[i], "ip", absl::StrFormat("status.podIPs[%d]", i));
    if (!ip.empty()) p.pod_ips.push_back(ip);
  }
  if (const std::string ip = r.String(status, "podIP", "status"); p.pod_ips.empty() && !ip.empty())
    p.pod_ips.push_back(ip);
  return r.Result(std::move(p));
}

absl::StatusOr<KLease> ParseLease(const json& object) {
  Reader r(Where("Lease", object));
  KLease l;
  r.Metadata(object, &l.ns, &l.name);
  const json& spec = r.Object(object, "spec", "");
  l.holder = r.String(spec, "holderIdentity", "spec");
  l.renew_time = r.String(spec, "renewTime", "spec");
  if (spec.contains("leaseDurationSeconds")) {
    const json& d = spec["leaseDurationSeconds"];
    if (d.is_number_integer() && d.get<int64_t>() > 0 && d.get<int64_t>() <= 86400) {
      l.duration_s = uint32_t(d.get<int64_t>());
    } else if (!d.is_null()) {
      r.Fail("spec.leaseDurationSeconds", "not a duration of 1..86400 seconds");
    }
  }
  return r.Result(std::move(l));
}

}  // namespace lb::control::k8s
