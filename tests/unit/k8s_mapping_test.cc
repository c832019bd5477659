// The watcher's policy: Kubernetes objects (JSON as the API server returns it) ->
// lbd services, VIP allocation, problems reported as Events.
#include <fstream>
#include <sstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "control/k8s/mapping.h"
#include "control/k8s/objects.h"
#include "control/k8s/vip_pool.h"

namespace lb::control::k8s {
namespace {

using nlohmann::json;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

IpAddress Ip(const char* text) { return *IpAddress::Parse(text); }
IpPrefix Prefix(const char* text) { return *IpPrefix::Parse(text); }

// A Service as `kubectl get svc -o json` shows it.
json ServiceJson(const std::string& name, const std::string& created, json spec_extra, json status = json::object()) {
  json spec = {
      {"clusterIP", "10.96.0.10"},
      {"clusterIPs", {"10.96.0.10"}},
      {"internalTrafficPolicy", "Cluster"},
      {"ipFamilies", {"IPv4"}},
      {"ipFamilyPolicy", "SingleStack"},
      {"ports", {{{"name", "dns"}, {"port", 53}, {"protocol", "UDP"}, {"targetPort", "dns"}}}},
      {"selector", {{"app", name}}},
      {"sessionAffinity", "None"},
      {"type", "ClusterIP"},
  };
  spec.update(spec_extra);
  return {{"apiVersion", "v1"},
          {"kind", "Service"},
          {"metadata",
           {{"creationTimestamp", created},
            {"labels", {{"app", name}}},
            {"name", name},
            {"namespace", "default"},
            {"resourceVersion", "1234"},
            {"uid", "9b4c5a3e-0000-4000-8000-" + std::string(12 - std::min<size_t>(12, name.size()), '0') +
                        name.substr(0, 12)}}},
          {"spec", spec},
          {"status", {{"loadBalancer", status}}}};
}

json EndpointJson(const std::string& address, json conditions) {
  return {{"addresses", {address}},
          {"conditions", conditions},
          {"nodeName", "node-1"},
          {"targetRef", {{"kind", "Pod"}, {"name", "pod-" + address}, {"namespace", "default"}, {"uid", "x"}}},
          {"zone", "zone-a"}};
}

// Lists as std::vector: a braced list of one json value would be that value (not an
// array) under some compilers.
json SliceJson(const std::string& service, const std::string& name, std::vector<json> endpoints,
               std::vector<json> ports, const std::string& family = "IPv4") {
  return {{"addressType", family},
          {"apiVersion", "discovery.k8s.io/v1"},
          {"endpoints", json(endpoints)},
          {"kind", "EndpointSlice"},
          {"metadata",
           {{"generateName", service + "-"},
            {"labels",
             {{"endpointslice.kubernetes.io/managed-by", "endpointslice-controller.k8s.io"},
              {"kubernetes.io/service-name", service}}},
            {"name", name},
            {"namespace", "default"},
            {"resourceVersion", "2345"}}},
          {"ports", json(ports)}};
}

const json kReady = {{"ready", true}, {"serving", true}, {"terminating", false}};
const json kTerminatingServing = {{"ready", false}, {"serving", true}, {"terminating", true}};
const json kTerminatingGone = {{"ready", false}, {"serving", false}, {"terminating", true}};
const json kNotReady = {{"ready", false}, {"serving", false}, {"terminating", false}};

class MappingTest : public ::testing::Test {
 protected:
  void AddService(const json& j) {
    auto s = ParseService(j);
    ASSERT_TRUE(s.ok()) << s.status();
    services_.push_back(*s);
  }
  void AddSlice(const json& j) {
    auto e = ParseEndpointSlice(j);
    ASSERT_TRUE(e.ok()) << e.status();
    slices_.push_back(*e);
  }
  DesiredState Map() { return MapClusterState(services_, slices_, options_, &last_good_); }
  std::vector<std::string> Reasons(const DesiredState& d) {
    std::vector<std::string> out;
    for (const Problem& p : d.problems) out.push_back(p.service + " " + p.reason);
    return out;
  }

  std::vector<KService> services_;
  std::vector<KEndpointSlice> slices_;
  // externalIPs served (the rules below are about them); the default policy is tested
  // on its own.
  MappingOptions options_{.vip_cidrs = {Prefix("10.1.0.0/28"), Prefix("fd00:10::/124")},
                          .external_ips = {.mode = ExternalIpPolicy::Mode::kAll}};
  LastGoodSettings last_good_;
};

// In another namespace.
json InNamespace(json service, const std::string& ns) {
  service["metadata"]["namespace"] = ns;
  return service;
}

TEST_F(MappingTest, ExternalIpsAreServedOnlyByPolicy) {
  AddService(ServiceJson("dns", "2026-01-01T00:00:00Z", {{"externalIPs", {"10.1.0.1"}}}));
  AddService(InNamespace(ServiceJson("web", "2026-01-01T00:00:00Z", {{"externalIPs", {"10.1.0.2"}}}), "team-a"));
  options_.external_ips = {};  // the default: none
  DesiredState d = Map();
  EXPECT_TRUE(d.services.empty());
  EXPECT_THAT(Reasons(d), ElementsAre("default/dns ExternalIPNotAllowed", "team-a/web ExternalIPNotAllowed"));
  options_.external_ips = *ParseExternalIpPolicy("namespaces=team-a,team-b");
  d = Map();
  ASSERT_EQ(d.services.size(), 1u);
  EXPECT_EQ(d.services[0].vip, Ip("10.1.0.2"));
  EXPECT_FALSE(ParseExternalIpPolicy("some").ok());
  EXPECT_FALSE(ParseExternalIpPolicy("namespaces=").ok());
  EXPECT_EQ(ParseExternalIpPolicy("all")->mode, ExternalIpPolicy::Mode::kAll);
}

// The CVE-2020-8554 pattern: a newer Service in another namespace names, as an externalIP,
// the address recorded in an older LoadBalancer Service's status. The older keeps it (its
// status is not rewritten), the newer is refused without learning the other's name.
TEST_F(MappingTest, AnExternalIpNeverTakesARecordedLoadBalancerAddress) {
  AddService(ServiceJson("lb", "2026-01-01T00:00:00Z",
                         {{"type", "LoadBalancer"}, {"loadBalancerClass", "lbd.io/dpdk-l4"}},
                         {{"ingress", {{{"ip", "10.1.0.3"}}}}}));
  AddService(InNamespace(ServiceJson("thief", "2026-01-02T00:00:00Z", {{"externalIPs", {"10.1.0.3"}}}), "evil"));
  const DesiredState d = Map();
  ASSERT_EQ(d.services.size(), 1u);
  EXPECT_EQ(d.services[0].vip, Ip("10.1.0.3"));
  EXPECT_EQ(d.owners[0], "default/lb");
  EXPECT_TRUE(d.status_updates.empty()) << "the recorded address stays";
  EXPECT_THAT(Reasons(d), ElementsAre("evil/thief AddressConflict"));
  EXPECT_THAT(d.problems[0].message, Not(HasSubstr("default/lb")));
}

TEST_F(MappingTest, NodeAndSpecialAddressesAreNeverVips) {
  options_.node_addresses = {Ip("10.1.0.9")};
  AddService(ServiceJson("a", "2026-01-01T00:00:00Z", {{"externalIPs", {"10.1.0.9"}}}));
  AddService(
      ServiceJson("lb", "2026-01-02T00:00:00Z", {{"type", "LoadBalancer"}, {"loadBalancerClass", "lbd.io/dpdk-l4"}}));
  const DesiredState d = Map();
  ASSERT_EQ(d.services.size(), 1u);
  EXPECT_EQ(d.owners[0], "default/lb");
  EXPECT_NE(d.services[0].vip, Ip("10.1.0.9"));
  EXPECT_THAT(Reasons(d), ElementsAre("default/a InvalidExternalIP"));
}

// A slice written by hand (not the EndpointSlice controller's) could point a Service at
// any address: skipped unless allowed. Of an endpoint's addresses only the first is used.
TEST_F(MappingTest, OnlyControllerSlicesAndFirstAddresses) {
  AddService(ServiceJson("dns", "2026-01-01T00:00:00Z", {{"externalIPs", {"10.1.0.1"}}}));
  json two = EndpointJson("10.244.0.1", kReady);
  two["addresses"] = {"10.244.0.1", "10.244.0.99"};
  AddSlice(SliceJson("dns", "dns-a", {two}, {{{"name", "dns"}, {"port", 53}, {"protocol", "UDP"}}}));
  json forged = SliceJson("dns", "dns-forged", {EndpointJson("10.0.0.1", kReady)},
                          {{{"name", "dns"}, {"port", 53}, {"protocol", "UDP"}}});
  forged["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] = "me";
  AddSlice(forged);
  DesiredState d = Map();
  ASSERT_EQ(d.services.size(), 1u);
  ASSERT_EQ(d.services[0].backends.size(), 1u);
  EXPECT_EQ(d.services[0].backends[0].address, Ip("10.244.0.1"));
  EXPECT_THAT(d.notes, Contains(HasSubstr("EndpointSlice default/dns-forged skipped")));
  options_.accept_unmanaged_slices = true;
  d = Map();
  ASSERT_EQ(d.services[0].backends.size(), 2u);
  EXPECT_EQ(d.services[0].backends[0].address, Ip("10.0.0.1"));
}

TEST_F(MappingTest, ExternalIpServiceWithNamedTargetPortAndEndpointStates) {
  AddService(ServiceJson("dns", "2026-01-01T00:00:00Z", {{"externalIPs", {"10.1.0.1"}}}));
  AddSlice(SliceJson("dns", "dns-a",
                     {EndpointJson("10.244.0.1", kReady), EndpointJson("10.244.0.2", kTerminatingServing),
                      EndpointJson("10.244.0.3", kTerminatingGone), EndpointJson("10.244.0.4", kNotReady)},
                     {{{"name", "dns"}, {"port", 53}, {"protocol", "UDP"}}}));
  // The same endpoint in a second slice while the controller moves it: its best state counts.
  AddSlice(SliceJson("dns", "dns-b", {EndpointJson("10.244.0.2", kReady)},
                     {{{"name", "dns"}, {"port", 53}, {"protocol", "UDP"}}}));
  // Another Service's slice and an IPv6 slice of this one (the VIP is IPv4): not used.
  AddSlice(SliceJson("other", "other-a", {EndpointJson("10.244.9.9", kReady)},
                     {{{"name", "dns"}, {"port", 53}, {"protocol", "UDP"}}}));
  AddSlice(SliceJson("dns", "dns-v6", {EndpointJson("fd00::1", kReady)},
                     {{{"name", "dns"}, {"port", 53}, {"protocol", "UDP"}}}, "IPv6"));
  const DesiredState d = Map();
  ASSERT_EQ(d.services.size(), 1u);
  const auto& s = d.services[0];
  EXPECT_EQ(s.vip, Ip("10.1.0.1"));
  EXPECT_EQ(s.protocol, IPPROTO_UDP);
  EXPECT_EQ(s.port, 53);
  EXPECT_EQ(s.hash_fields, HashFields::kFiveTuple);
  ASSERT_EQ(s.backends.size(), 2u);
  EXPECT_EQ(s.backends[0].address, Ip("10.244.0.1"));
  EXPECT_EQ(s.backends[0].state, BackendState::kActive);
  EXPECT_EQ(s.backends[1].address, Ip("10.244.0.2"));
  EXPECT_EQ(s.backends[1].state, BackendState::kActive) << "ready in one slice beats draining in the other";
  EXPECT_THAT(d.owners, ElementsAre("default/dns"));
  EXPECT_THAT(d.problems, IsEmpty());
}

TEST_F(MappingTest, TerminatingServingDrains) {
  AddService(ServiceJson("dns", "2026-01-01T00:00:00Z", {{"externalIPs", {"10.1.0.1"}}}));
  AddSlice(SliceJson("dns", "dns-a",
                     {EndpointJson("10.244.0.1", kReady), EndpointJson("10.244.0.2", kTerminatingServing)},
                     {{{"name", "dns"}, {"port", 53}, {"protocol", "UDP"}}}));
  const DesiredState d = Map();
  ASSERT_EQ(d.services.size(), 1u);
  ASSERT_EQ(d.services[0].backends.size(), 2u);
  EXPECT_EQ(d.services[0].backends[1].state, BackendState::kDraining);
}

TEST_F(MappingTest, UnsetConditionsMeanReady) {
  AddService(ServiceJson("dns", "2026-01-01T00:00:00Z", {{"externalIPs", {"10.1.0.1"}}}));
  AddSlice(SliceJson("dns", "dns-a", {EndpointJson("10.244.0.1", json::object())},
                     {{{"name", "dns"}, {"port", 53}, {"protocol", "UDP"}}}));
  const DesiredState d = Map();
  ASSERT_EQ(d.services.size(), 1u);
  ASSERT_EQ(d.services[0].backends.size(), 1u);
  EXPECT_EQ(d.services[0].backends[0].state, BackendState::kActive);
}

TEST_F(MappingTest, PortsByNameAndProtocolOtherProtocolsSkipped) {
  AddService(ServiceJson("dns", "2026-01-01T00:00:00Z",
                         {{"externalIPs", {"10.1.0.1"}},
                          {"ports",
                           {{{"name", "udp"}, {"port", 53}, {"protocol", "UDP"}, {"targetPort", 5353}},
                            {{"name", "tcp"}, {"port", 53}, {"protocol", "TCP"}, {"targetPort", "dns-tcp"}},
                            {{"name", "sctp"}, {"port", 7777}, {"protocol", "SCTP"}}}}}));
  services_[0].annotations = {{"lbd.io/forwarding-mode", "dsr-ipip"}};
  AddSlice(SliceJson("dns", "dns-a", {EndpointJson("10.244.0.1", kReady)},
                     {{{"name", "udp"}, {"port", 5353}, {"protocol", "UDP"}},
                      {{"name", "tcp"}, {"port", 5354}, {"protocol", "TCP"}},
                      {{"name", "sctp"}, {"port", 7777}, {"protocol", "SCTP"}}}));
  const DesiredState d = Map();
  ASSERT_EQ(d.services.size(), 2u);
  EXPECT_EQ(d.services[0].protocol, IPPROTO_TCP);
  EXPECT_EQ(d.services[0].backends.at(0).port, 5354);
  EXPECT_EQ(d.services[1].protocol, IPPROTO_UDP);
  EXPECT_EQ(d.services[1].backends.at(0).port, 5353);
  EXPECT_THAT(d.notes, ElementsAre(HasSubstr("port 7777/SCTP skipped")));
  EXPECT_THAT(Reasons(d), ElementsAre("default/dns PortTranslationIgnored", "default/dns PortTranslationIgnored"));
}

TEST_F(MappingTest, NatIsTheDefaultAndTranslatesPortsWithoutAWarning) {
  AddService(ServiceJson("dns", "2026-01-01T00:00:00Z", {{"externalIPs", {"10.1.0.1"}}}));
  AddSlice(SliceJson("dns", "dns-a", {EndpointJson("10.244.0.1", kReady)},
                     {{{"name", "dns"}, {"port", 5353}, {"protocol", "UDP"}}}));
  const DesiredState d = Map();
  ASSERT_EQ(d.services.size(), 1u);
  EXPECT_EQ(d.services[0].mode, ForwardingMode::kNat);
  EXPECT_EQ(d.services[0].port, 53);
  EXPECT_EQ(d.services[0].backends.at(0).port, 5353) << "NAT delivers to the target port";
  EXPECT_THAT(d.problems, IsEmpty()) << "no PortTranslationIgnored for NAT";
}

TEST_F(MappingTest, ExternalIpOutsideTheAnnouncedCidrsIsNotServed) {
  AddService(ServiceJson("a", "2026-01-01T00:00:00Z", {{"externalIPs", {"192.0.2.1", "10.1.0.5"}}}));
  AddService(ServiceJson("b", "2026-01-01T00:00:00Z", {{"externalIPs", {"not-an-ip"}}}));
  const DesiredState d = Map();
  ASSERT_EQ(d.services.size(), 1u);
  EXPECT_EQ(d.services[0].vip, Ip("10.1.0.5"));
  EXPECT_THAT(d.notes, ElementsAre(HasSubstr("externalIP 192.0.2.1 is outside")));
  EXPECT_THAT(Reasons(d), ElementsAre("default/b InvalidExternalIP"));
}

TEST_F(MappingTest, SessionAffinityAndAnnotations) {
  AddService(ServiceJson("web", "2026-01-01T00:00:00Z",
                         {{"externalIPs", {"10.1.0.1"}},
                          {"sessionAffinity", "ClientIP"},
                          {"sessionAffinityConfig", {{"clientIP", {{"timeoutSeconds", 10800}}}}}}));
  services_[0].annotations = {{"lbd.io/forwarding-mode", "dsr-gue"},
                              {"lbd.io/maglev-table-size", "4093"},
                              {"kubectl.kubernetes.io/last-applied-configuration", "{}"}};
  const DesiredState d = Map();
  ASSERT_EQ(d.services.size(), 1u);
  EXPECT_EQ(d.services[0].hash_fields, HashFields::kSourceIp);
  EXPECT_EQ(d.services[0].mode, ForwardingMode::kDsrGue);
  EXPECT_EQ(d.services[0].table_size, 4093u);
}

TEST_F(MappingTest, InvalidAnnotationKeepsTheLastGoodSettings) {
  AddService(ServiceJson("web", "2026-01-01T00:00:00Z", {{"externalIPs", {"10.1.0.1"}}}));
  services_[0].annotations = {{"lbd.io/forwarding-mode", "dsr-gue"}};
  ASSERT_EQ(Map().services.at(0).mode, ForwardingMode::kDsrGue);

  services_[0].annotations = {{"lbd.io/forwarding-mode", "snat"}, {"lbd.io/maglev-table-size", "1021"}};
  DesiredState d = Map();
  ASSERT_EQ(d.services.size(), 1u);
  EXPECT_EQ(d.services[0].mode, ForwardingMode::kDsrGue);
  EXPECT_EQ(d.services[0].table_size, 0u) << "none of the invalid set applies (0: sized by lbd)";
  ASSERT_EQ(d.problems.size(), 1u);
  EXPECT_EQ(d.problems[0].reason, "InvalidAnnotation");
  EXPECT_THAT(d.problems[0].message, HasSubstr("\"snat\" is not a forwarding mode"));
  EXPECT_THAT(d.problems[0].message, HasSubstr("keeping the last good settings"));

  // A typo in a key is an error too, and a Service never seen valid is not served.
  AddService(ServiceJson("new", "2026-01-02T00:00:00Z", {{"externalIPs", {"10.1.0.2"}}}));
  services_[1].annotations = {{"lbd.io/forwarding_mode", "dsr-gue"}};
  d = Map();
  EXPECT_EQ(d.services.size(), 1u);
  EXPECT_THAT(Reasons(d), ElementsAre("default/new InvalidAnnotation", "default/web InvalidAnnotation"));
  EXPECT_THAT(d.problems[0].message, HasSubstr("unknown annotation lbd.io/forwarding_mode"));

  // Deleted Services are forgotten.
  services_.clear();
  Map();
  EXPECT_THAT(last_good_, IsEmpty());
}

// Fields read outside the typed parsers never throw on a member of another type.
TEST(StringFieldTest, OtherTypesReadAsEmpty) {
  const json o = {{"a", "x"}, {"b", 5}, {"c", json::array()}, {"d", nullptr}};
  EXPECT_EQ(StringField(o, "a"), "x");
  EXPECT_EQ(StringField(o, "b"), "");
  EXPECT_EQ(StringField(o, "c"), "");
  EXPECT_EQ(StringField(o, "d"), "");
  EXPECT_EQ(StringField(o, "missing"), "");
  EXPECT_EQ(StringField(json("text"), "a"), "");
  EXPECT_EQ(StringField(json(), "a"), "");
}

// Found by k8s_objects_fuzz: metadata of the wrong type made the error message itself
// throw (nlohmann's value() on an array).
TEST(ObjectsShapeTest, MetadataOfTheWrongTypeIsAnErrorNotAnException) {
  const json odd = json::parse(R"({"kind": "Service", "metadata": [{"name": "x"}], "spec": {}})");
  EXPECT_FALSE(ParseService(odd).ok());
  EXPECT_FALSE(ParseEndpointSlice(odd).ok());
  EXPECT_FALSE(ParseService(json::parse("[1, 2]")).ok());
  EXPECT_FALSE(ParseEndpointSlice(json("text")).ok());
}

TEST_F(MappingTest, TableSizeAnnotationMustBePrime) {
  EXPECT_FALSE(ParseAnnotations({{"lbd.io/maglev-table-size", "1000"}}).ok());
  EXPECT_FALSE(ParseAnnotations({{"lbd.io/maglev-table-size", "-7"}}).ok());
  EXPECT_FALSE(ParseAnnotations({{"lbd.io/maglev-table-size", "16777259"}}).ok()) << "prime, above the maximum";
  // Only the sizes lbd would choose itself, up to the watcher's bound: one Service with
  // hundreds of ports cannot ask for gigabytes of tables.
  EXPECT_EQ(ParseAnnotations({{"lbd.io/maglev-table-size", "65537"}})->table_size, 65537u);
  EXPECT_EQ(ParseAnnotations({{"lbd.io/maglev-table-size", "262139"}})->table_size, 262139u);
  const auto big = ParseAnnotations({{"lbd.io/maglev-table-size", "16777213"}});
  EXPECT_FALSE(big.ok());
  EXPECT_THAT(std::string(big.status().message()), HasSubstr("not one of 1021, 4093, 16381, 65537, 262139"));
  EXPECT_FALSE(ParseAnnotations({{"lbd.io/maglev-table-size", "655373"}}).ok())
      << "a prime, but not a size of the ladder";
  EXPECT_EQ(ParseAnnotations({{"lbd.io/maglev-table-size", "1048573"}}, 1048573)->table_size, 1048573u);
  // What a tenant wrote reaches Events bounded and without control characters.
  const auto odd = ParseAnnotations({{"lbd.io/forwarding-mode", "a\nb" + std::string(200, 'x')}});
  EXPECT_THAT(std::string(odd.status().message()), HasSubstr("\"a?bxxx"));
  EXPECT_LT(odd.status().message().size(), 200u);
}

TEST_F(MappingTest, LoadBalancerOfOurClassGetsAPoolAddress) {
  AddService(ServiceJson("ext", "2026-01-01T00:00:00Z", {{"externalIPs", {"10.1.0.1"}}}));
  AddService(
      ServiceJson("lb", "2026-01-02T00:00:00Z", {{"type", "LoadBalancer"}, {"loadBalancerClass", "lbd.io/dpdk-l4"}}));
  AddService(ServiceJson("theirs", "2026-01-02T00:00:00Z",
                         {{"type", "LoadBalancer"}, {"loadBalancerClass", "example.com/x"}}));
  AddService(ServiceJson("noclass", "2026-01-02T00:00:00Z", {{"type", "LoadBalancer"}}));
  const DesiredState d = Map();
  ASSERT_EQ(d.services.size(), 2u);
  EXPECT_EQ(d.services[1].vip, Ip("10.1.0.2")) << "the lowest free address: .0 is the network, .1 an externalIP";
  ASSERT_EQ(d.status_updates.size(), 1u);
  EXPECT_EQ(d.status_updates[0].service, "default/lb");
  EXPECT_THAT(d.status_updates[0].ingress, ElementsAre(Ip("10.1.0.2")));
  EXPECT_EQ(d.pool_addresses_used, 1u);
}

// spec.loadBalancerSourceRanges (or the older annotation) restrict the LoadBalancer address
// to those clients, host bits dropped as Kubernetes reads them; an externalIP of the same
// Service admits everyone. A range lbd cannot read leaves the Service unserved, never open.
TEST_F(MappingTest, SourceRangesRestrictTheLoadBalancerAddress) {
  AddService(ServiceJson("lb", "2026-01-01T00:00:00Z",
                         {{"type", "LoadBalancer"},
                          {"loadBalancerClass", "lbd.io/dpdk-l4"},
                          {"externalIPs", {"10.1.0.9"}},
                          {"loadBalancerSourceRanges", {"192.0.2.0/24", "198.51.100.7/24", "2001:db8::/32"}}}));
  json annotated =
      ServiceJson("old", "2026-01-02T00:00:00Z", {{"type", "LoadBalancer"}, {"loadBalancerClass", "lbd.io/dpdk-l4"}});
  annotated["metadata"]["annotations"] = {
      {"service.beta.kubernetes.io/load-balancer-source-ranges", "203.0.113.0/24, 10.0.0.0/8"}};
  AddService(annotated);
  AddService(ServiceJson("bad", "2026-01-03T00:00:00Z",
                         {{"type", "LoadBalancer"},
                          {"loadBalancerClass", "lbd.io/dpdk-l4"},
                          {"loadBalancerSourceRanges", {"192.0.2.0/33"}}}));
  const DesiredState d = Map();
  ASSERT_EQ(d.services.size(), 3u);
  const ServiceConfig* lb = nullptr;
  const ServiceConfig* external = nullptr;
  const ServiceConfig* old = nullptr;
  for (size_t i = 0; i < d.services.size(); ++i) {
    if (d.owners[i] == "default/old") old = &d.services[i];
    if (d.owners[i] == "default/lb") (d.services[i].vip == Ip("10.1.0.9") ? external : lb) = &d.services[i];
  }
  ASSERT_TRUE(lb && external && old);
  EXPECT_THAT(lb->source_ranges,
              ElementsAre(Prefix("192.0.2.0/24"), Prefix("198.51.100.0/24"), Prefix("2001:db8::/32")));
  EXPECT_THAT(external->source_ranges, IsEmpty());
  EXPECT_THAT(old->source_ranges, ElementsAre(Prefix("203.0.113.0/24"), Prefix("10.0.0.0/8")));
  EXPECT_THAT(Reasons(d), Contains("default/bad InvalidSourceRange"));
}

// Ports beyond --max_ports_per_service are not served (an Event says so); the first are.
TEST_F(MappingTest, PortsBeyondTheBoundAreNotServed) {
  options_.max_ports_per_service = 2;
  json ports = json::array();
  for (int p = 1; p <= 5; ++p) {
    ports.push_back({{"name", "p" + std::to_string(p)}, {"port", p}, {"protocol", "UDP"}, {"targetPort", p}});
  }
  AddService(ServiceJson("many", "2026-01-01T00:00:00Z", {{"externalIPs", {"10.1.0.1"}}, {"ports", ports}}));
  const DesiredState d = Map();
  ASSERT_EQ(d.services.size(), 2u);
  EXPECT_EQ(d.services[0].port, 1);
  EXPECT_EQ(d.services[1].port, 2);
  EXPECT_THAT(Reasons(d), Contains("default/many TooManyPorts"));
}

TEST_F(MappingTest, AllocationIsDerivedFromTheRecordedStatus) {
  AddService(ServiceJson("old", "2026-01-01T00:00:00Z",
                         {{"type", "LoadBalancer"}, {"loadBalancerClass", "lbd.io/dpdk-l4"}},
                         {{"ingress", {{{"ip", "10.1.0.9"}}}}}));
  AddService(
      ServiceJson("new", "2026-01-02T00:00:00Z", {{"type", "LoadBalancer"}, {"loadBalancerClass", "lbd.io/dpdk-l4"}}));
  const DesiredState d = Map();
  EXPECT_EQ(d.services.at(0).vip, Ip("10.1.0.9")) << "kept, not renumbered; the oldest Service comes first";
  EXPECT_EQ(d.services.at(1).vip, Ip("10.1.0.1"));
  ASSERT_EQ(d.status_updates.size(), 1u) << "only the new one is written";
  EXPECT_EQ(d.status_updates[0].service, "default/new");
}

TEST_F(MappingTest, RequestedAddressConflictGoesToTheOlderService) {
  // The younger Service sorts first by name: age decides, not the name.
  AddService(ServiceJson("web", "2026-01-01T00:00:00Z",
                         {{"type", "LoadBalancer"}, {"loadBalancerClass", "lbd.io/dpdk-l4"}},
                         {{"ingress", {{{"ip", "10.1.0.2"}}}}}));
  AddService(
      ServiceJson("thief", "2026-01-02T00:00:00Z",
                  {{"type", "LoadBalancer"}, {"loadBalancerClass", "lbd.io/dpdk-l4"}, {"loadBalancerIP", "10.1.0.2"}}));
  AddService(ServiceJson(
      "outside", "2026-01-03T00:00:00Z",
      {{"type", "LoadBalancer"}, {"loadBalancerClass", "lbd.io/dpdk-l4"}, {"loadBalancerIP", "192.0.2.1"}}));
  const DesiredState d = Map();
  ASSERT_EQ(d.services.size(), 1u);
  EXPECT_EQ(d.owners[0], "default/web");
  EXPECT_THAT(Reasons(d), ElementsAre("default/outside AddressNotInPool", "default/thief AddressConflict"));
  EXPECT_THAT(d.status_updates, IsEmpty());
}

TEST_F(MappingTest, SameFrontendFromTwoServices) {
  AddService(ServiceJson("first", "2026-01-01T00:00:00Z", {{"externalIPs", {"10.1.0.1"}}}));
  AddService(ServiceJson("second", "2026-01-02T00:00:00Z", {{"externalIPs", {"10.1.0.1"}}}));
  const DesiredState d = Map();
  ASSERT_EQ(d.services.size(), 1u);
  EXPECT_EQ(d.owners[0], "default/first");
  ASSERT_THAT(Reasons(d), ElementsAre("default/second AddressConflict"));
  EXPECT_THAT(d.problems[0].message, HasSubstr("already served for the older Service default/first"));
}

TEST_F(MappingTest, StatusOutsideThePoolIsReplaced) {
  AddService(ServiceJson("lb", "2026-01-01T00:00:00Z",
                         {{"type", "LoadBalancer"}, {"loadBalancerClass", "lbd.io/dpdk-l4"}},
                         {{"ingress", {{{"ip", "192.0.2.50"}}}}}));
  const DesiredState d = Map();
  EXPECT_THAT(Reasons(d), ElementsAre("default/lb AddressNotInPool"));
  ASSERT_EQ(d.status_updates.size(), 1u);
  EXPECT_THAT(d.status_updates[0].ingress, ElementsAre(Ip("10.1.0.1")));
}

TEST_F(MappingTest, DualStackAndIpv6) {
  AddService(ServiceJson("v6", "2026-01-01T00:00:00Z",
                         {{"type", "LoadBalancer"},
                          {"loadBalancerClass", "lbd.io/dpdk-l4"},
                          {"ipFamilies", {"IPv6", "IPv4"}},
                          {"ipFamilyPolicy", "PreferDualStack"}}));
  AddSlice(SliceJson("v6", "v6-a", {EndpointJson("fd00:244::1", kReady)},
                     {{{"name", "dns"}, {"port", 53}, {"protocol", "UDP"}}}, "IPv6"));
  AddSlice(SliceJson("v6", "v6-b", {EndpointJson("10.244.0.1", kReady)},
                     {{{"name", "dns"}, {"port", 53}, {"protocol", "UDP"}}}));
  const DesiredState d = Map();
  ASSERT_EQ(d.services.size(), 2u);
  EXPECT_EQ(d.services[0].vip, Ip("10.1.0.1"));
  EXPECT_EQ(d.services[0].backends.at(0).address, Ip("10.244.0.1"));
  EXPECT_EQ(d.services[1].vip, Ip("fd00:10::1"));
  EXPECT_EQ(d.services[1].backends.at(0).address, Ip("fd00:244::1"));
}

TEST_F(MappingTest, PoolExhaustedAndNoPoolForFamily) {
  options_.vip_cidrs = {Prefix("10.1.0.0/31")};  // two addresses, no network/broadcast
  for (const char* name : {"a", "b", "c"}) {
    AddService(ServiceJson(name, std::string("2026-01-01T00:00:0") + name[0],
                           {{"type", "LoadBalancer"}, {"loadBalancerClass", "lbd.io/dpdk-l4"}}));
  }
  AddService(
      ServiceJson("six", "2026-01-02T00:00:00Z",
                  {{"type", "LoadBalancer"}, {"loadBalancerClass", "lbd.io/dpdk-l4"}, {"ipFamilies", {"IPv6"}}}));
  const DesiredState d = Map();
  EXPECT_EQ(d.services.size(), 2u);
  EXPECT_THAT(Reasons(d), ElementsAre("default/c PoolExhausted", "default/six NoPoolForFamily"));
}

TEST(VipPoolTest, NthAddressCarries) {
  EXPECT_EQ(NthAddress(Prefix("10.1.0.0/16"), 256), Ip("10.1.1.0"));
  EXPECT_EQ(NthAddress(Prefix("fd00::/64"), 0x1'0000'0001), Ip("fd00::1:0:1"));
}

TEST(ObjectsTest, WrongTypesNameTheField) {
  json s = ServiceJson("x", "2026-01-01T00:00:00Z", {{"externalIPs", "10.1.0.1"}});
  auto parsed = ParseService(s);
  ASSERT_FALSE(parsed.ok());
  EXPECT_THAT(std::string(parsed.status().message()), HasSubstr("Service default/x: spec.externalIPs: expected array"));
  json e = SliceJson("x", "x-1", {EndpointJson("10.0.0.1", kReady)}, {{{"name", "a"}, {"port", 70000}}});
  auto slice = ParseEndpointSlice(e);
  ASSERT_FALSE(slice.ok());
  EXPECT_THAT(std::string(slice.status().message()), HasSubstr("ports[0].port: not a port number"));
}

TEST(ObjectsTest, NullPortNameAndPortAreAccepted) {
  // The API server leaves out unnamed port names and may send "port": null for "all ports".
  json e = SliceJson("x", "x-1", {}, {{{"port", nullptr}, {"protocol", "TCP"}}});
  auto slice = ParseEndpointSlice(e);
  ASSERT_TRUE(slice.ok()) << slice.status();
  EXPECT_EQ(slice->ports.at(0).name, "");
  EXPECT_FALSE(slice->ports.at(0).port.has_value());
}

}  // namespace
}  // namespace lb::control::k8s

namespace lb::control::k8s {
namespace {

json EndpointOn(const std::string& address, const std::string& node) {
  json e = EndpointJson(address, kReady);
  e["nodeName"] = node;
  return e;
}

TEST_F(MappingTest, DsrEndpointsOnNodesWithoutAnAgentAreLeftOutWithAnEvent) {
  AddService(ServiceJson("dns", "2026-01-01T00:00:00Z", {{"externalIPs", {"10.1.0.1"}}}));
  services_[0].annotations = {{"lbd.io/forwarding-mode", "dsr-ipip"}};
  AddService(ServiceJson("nat", "2026-01-01T00:00:00Z", {{"externalIPs", {"10.1.0.2"}}}));
  const std::vector<json> ports = {{{"name", "dns"}, {"port", 53}, {"protocol", "UDP"}}};
  AddSlice(SliceJson("dns", "dns-a", {EndpointOn("10.244.1.5", "w1"), EndpointOn("10.244.2.6", "w2")}, ports));
  AddSlice(SliceJson("nat", "nat-a", {EndpointOn("10.244.1.7", "w1"), EndpointOn("10.244.2.8", "w2")}, ports));

  // Not checked: every endpoint.
  DesiredState d = Map();
  ASSERT_EQ(d.services.size(), 2u);
  EXPECT_EQ(d.services[0].backends.size(), 2u);

  options_.dsr_nodes = std::set<std::string>{"w1"};
  d = Map();
  ASSERT_EQ(d.services.size(), 2u);
  ASSERT_EQ(d.services[0].backends.size(), 1u) << "DSR: only the endpoint whose node decapsulates";
  EXPECT_EQ(d.services[0].backends[0].address, Ip("10.244.1.5"));
  EXPECT_EQ(d.services[1].backends.size(), 2u) << "NAT needs no agent";
  EXPECT_THAT(Reasons(d), ElementsAre("default/dns DSRNodeNotReady"));
  EXPECT_THAT(d.problems[0].message, HasSubstr("w2"));

  options_.dsr_nodes = std::set<std::string>{};
  d = Map();
  EXPECT_THAT(d.services[0].backends, IsEmpty()) << "no agent anywhere: no DSR backend, never a broken one";
  EXPECT_THAT(d.problems[0].message, HasSubstr("w1, w2"));
}

json LeaseJson(const std::string& name, const std::string& holder, const std::string& renewed, int duration) {
  return {{"apiVersion", "coordination.k8s.io/v1"},
          {"kind", "Lease"},
          {"metadata", {{"name", name}, {"namespace", "lb-system"}}},
          {"spec", {{"holderIdentity", holder}, {"leaseDurationSeconds", duration}, {"renewTime", renewed}}}};
}

TEST(LiveDsrNodesTest, ALeaseIsLiveForItsDurationAfterItsRenewal) {
  std::vector<KLease> leases;
  for (const json& j : {LeaseJson("lb-dsr-node-w1", "w1", "2026-12-07T10:00:00.000000Z", 30),
                        LeaseJson("lb-dsr-node-w2", "w2", "2026-12-07T09:59:00.500000Z", 30),
                        LeaseJson("lb-dsr-node-w3", "w4", "2026-12-07T10:00:00.000000Z", 30),  // not its own name
                        LeaseJson("other-lease", "w5", "2026-12-07T10:00:00.000000Z", 30),
                        LeaseJson("lb-dsr-node-w6", "w6", "yesterday", 30)}) {
    auto l = ParseLease(j);
    ASSERT_TRUE(l.ok()) << l.status();
    leases.push_back(*l);
  }
  absl::Time now;
  std::string error;
  ASSERT_TRUE(absl::ParseTime(absl::RFC3339_full, "2026-12-07T10:00:20Z", &now, &error)) << error;
  EXPECT_EQ(LiveDsrNodes(leases, now), (std::set<std::string>{"w1"}));
  EXPECT_EQ(LiveDsrNodes(leases, now + absl::Seconds(10)), (std::set<std::string>{}));
  EXPECT_EQ(LiveDsrNodes(leases, now - absl::Seconds(60)), (std::set<std::string>{"w1", "w2"}));
  EXPECT_FALSE(ParseLease(LeaseJson("x", "w", "2026-12-07T10:00:00Z", -5)).ok());
}

TEST(ObjectsTest, PodsAndEndpointNodes) {
  auto pod =
      ParsePod({{"metadata", {{"name", "dns-1"}, {"namespace", "team-a"}, {"uid", "u"}}},
                {"spec", {{"nodeName", "w1"}, {"hostNetwork", false}}},
                {"status", {{"podIP", "10.244.1.5"}, {"podIPs", {{{"ip", "10.244.1.5"}}, {{"ip", "fd00::5"}}}}}}});
  ASSERT_TRUE(pod.ok()) << pod.status();
  EXPECT_EQ(pod->Key(), "team-a/dns-1");
  EXPECT_EQ(pod->node_name, "w1");
  EXPECT_THAT(pod->pod_ips, ElementsAre("10.244.1.5", "fd00::5"));
  EXPECT_FALSE(ParsePod({{"metadata", {{"name", "x"}}}, {"spec", {{"hostNetwork", "yes"}}}}).ok());
  auto slice = ParseEndpointSlice(SliceJson("dns", "dns-a", {EndpointOn("10.244.1.5", "w1")}, {}));
  ASSERT_TRUE(slice.ok());
  EXPECT_EQ(slice->endpoints[0].node_name, "w1");
  EXPECT_EQ(slice->endpoints[0].target_kind, "Pod");
  EXPECT_EQ(slice->endpoints[0].target_name, "pod-10.244.1.5");
}

}  // namespace
}  // namespace lb::control::k8s
