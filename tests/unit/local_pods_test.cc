// lb-dsr-node's policy: which pods on this node decapsulate which VIPs, and what a
// tenant cannot make it touch.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "control/dsr_node/local_pods.h"

namespace lb::control::dsr_node {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

IpAddress Ip(const char* text) { return *IpAddress::Parse(text); }

k8s::KService DsrService(const std::string& ns, const std::string& name, std::vector<std::string> ingress,
                         const std::string& mode = "dsr-ipip") {
  k8s::KService s;
  s.ns = ns;
  s.name = name;
  s.type = "LoadBalancer";
  s.load_balancer_class = "lbd.io/dpdk-l4";
  s.annotations = {{"lbd.io/forwarding-mode", mode}};
  s.ingress_ips = std::move(ingress);
  return s;
}

k8s::Endpoint EndpointOf(const std::string& address, const std::string& node, const std::string& pod,
                         const std::string& target_ns = "") {
  k8s::Endpoint e;
  e.addresses = {address};
  e.node_name = node;
  e.target_kind = "Pod";
  e.target_name = pod;
  e.target_namespace = target_ns;
  return e;
}

k8s::KEndpointSlice SliceOf(const std::string& ns, const std::string& service, std::vector<k8s::Endpoint> endpoints) {
  k8s::KEndpointSlice s;
  s.ns = ns;
  s.name = service + "-abc";
  s.service_name = service;
  s.managed_by = k8s::kEndpointSliceController;
  s.address_type = "IPv4";
  s.endpoints = std::move(endpoints);
  return s;
}

k8s::KPod PodOf(const std::string& ns, const std::string& name, const std::string& node, const std::string& ip) {
  k8s::KPod p;
  p.ns = ns;
  p.name = name;
  p.node_name = node;
  p.pod_ips = {ip};
  return p;
}

class LocalPodsTest : public ::testing::Test {
 protected:
  LocalPods Map() { return LocalDsrPods(services_, slices_, pods_, policy_, &last_good_); }

  std::vector<k8s::KService> services_;
  std::vector<k8s::KEndpointSlice> slices_;
  std::vector<k8s::KPod> pods_;
  LocalPolicy policy_{.node_name = "w1"};
  k8s::LastGoodSettings last_good_;
};

TEST_F(LocalPodsTest, LocalPodsOfDsrServicesGetTheirVips) {
  services_ = {DsrService("a", "dns", {"10.100.0.10"}), DsrService("a", "web", {"10.100.0.11"}, "dsr-gue")};
  slices_ = {SliceOf("a", "dns", {EndpointOf("10.244.1.5", "w1", "dns-1"), EndpointOf("10.244.2.5", "w2", "dns-2")}),
             SliceOf("a", "web", {EndpointOf("10.244.1.5", "w1", "dns-1")})};
  pods_ = {PodOf("a", "dns-1", "w1", "10.244.1.5")};
  const LocalPods out = Map();
  ASSERT_EQ(out.pods.size(), 1u) << "the endpoint on w2 is another node's";
  const PodVips& p = out.pods.at("a/dns-1");
  EXPECT_THAT(p.addresses, ElementsAre(Ip("10.244.1.5")));
  EXPECT_THAT(p.vips, ElementsAre(Ip("10.100.0.10"), Ip("10.100.0.11")));
}

TEST_F(LocalPodsTest, NatOtherClassesAndUnallocatedServicesNeedNothing) {
  services_ = {DsrService("a", "nat", {"10.100.0.10"}, "nat"), DsrService("a", "pending", {}),
               DsrService("a", "other", {"10.100.0.12"})};
  services_[2].load_balancer_class = "example.com/other";
  for (const char* name : {"nat", "pending", "other"})
    slices_.push_back(SliceOf("a", name, {EndpointOf("10.244.1.5", "w1", "dns-1")}));
  pods_ = {PodOf("a", "dns-1", "w1", "10.244.1.5")};
  EXPECT_THAT(Map().pods, IsEmpty());
}

TEST_F(LocalPodsTest, ATenantCannotPointTheAgentAtAnotherPod) {
  services_ = {DsrService("tenant", "evil", {"10.100.0.66"})};
  pods_ = {PodOf("victim", "db-0", "w1", "10.244.1.9"), PodOf("tenant", "hostnet", "w1", "10.0.0.1")};
  pods_[1].host_network = true;
  // A hand-written slice naming the victim's pod address.
  k8s::KEndpointSlice forged = SliceOf("tenant", "evil", {EndpointOf("10.244.1.9", "w1", "db-0")});
  forged.managed_by = "someone";
  slices_ = {forged};
  LocalPods out = Map();
  EXPECT_THAT(out.pods, IsEmpty());
  EXPECT_THAT(out.notes, ElementsAre(HasSubstr("not managed by the EndpointSlice controller")));
  // Even a controller slice: a targetRef into another namespace, a pod that is not the
  // target's, a pod on the host's network.
  slices_ = {SliceOf("tenant", "evil",
                     {EndpointOf("10.244.1.9", "w1", "db-0", "victim"), EndpointOf("10.244.1.9", "w1", "db-0"),
                      EndpointOf("10.0.0.1", "w1", "hostnet")})};
  out = Map();
  EXPECT_THAT(out.pods, IsEmpty());
  EXPECT_THAT(out.notes, ElementsAre(HasSubstr("targetRef is not a Pod of the Service's namespace"),
                                     HasSubstr("no such Pod on this node"), HasSubstr("on the host's network")));
  // A Pod of the namespace, but the endpoint's address is not the Pod's.
  pods_.push_back(PodOf("tenant", "web-1", "w1", "10.244.1.20"));
  slices_ = {SliceOf("tenant", "evil", {EndpointOf("10.244.1.9", "w1", "web-1")})};
  out = Map();
  EXPECT_THAT(out.pods, IsEmpty());
  EXPECT_THAT(out.notes, ElementsAre(HasSubstr("not an address of Pod tenant/web-1")));
}

TEST_F(LocalPodsTest, ExternalIpsOnlyByPolicyAndInvalidAnnotationsKeepTheLastGood) {
  services_ = {DsrService("a", "dns", {"10.100.0.10"})};
  services_[0].external_ips = {"10.100.0.50"};
  slices_ = {SliceOf("a", "dns", {EndpointOf("10.244.1.5", "w1", "dns-1")})};
  pods_ = {PodOf("a", "dns-1", "w1", "10.244.1.5")};
  EXPECT_THAT(Map().pods.at("a/dns-1").vips, ElementsAre(Ip("10.100.0.10")));
  policy_.external_ips = {.mode = k8s::ExternalIpPolicy::Mode::kAll};
  EXPECT_THAT(Map().pods.at("a/dns-1").vips, ElementsAre(Ip("10.100.0.10"), Ip("10.100.0.50")));
  services_[0].annotations["lbd.io/forwarding-mode"] = "dsr-bogus";
  EXPECT_EQ(Map().pods.size(), 1u) << "the last good settings (DSR) stay: lbd keeps them too";
  last_good_.clear();
  EXPECT_THAT(Map().pods, IsEmpty());
}

}  // namespace
}  // namespace lb::control::dsr_node
