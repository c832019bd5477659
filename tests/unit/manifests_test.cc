// docker/k8s: the manifests say only what the programs accept, and the watcher's RBAC is
// exactly what it uses.
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include "control/bird/node_config.h"
#include "control/node/site_config.h"

namespace {

std::string Root() { return std::getenv("LB_SOURCE_ROOT"); }

std::string Read(const std::string& path) {
  std::ifstream in(Root() + "/" + path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<YAML::Node> Documents(const std::string& path) { return YAML::LoadAll(Read(path)); }

YAML::Node Find(const std::vector<YAML::Node>& docs, const std::string& kind) {
  for (const auto& d : docs) {
    if (d["kind"].as<std::string>() == kind) return d;
  }
  ADD_FAILURE() << "no " << kind;
  return {};
}

// The gflags a program defines, from its main.cc.
std::set<std::string> Flags(const std::string& main_cc) {
  std::set<std::string> out = {"flagfile"};
  const std::string text = Read(main_cc);
  static const std::regex kDefine(R"(DEFINE_\w+\((\w+),)");
  for (std::sregex_iterator it(text.begin(), text.end(), kDefine), end; it != end; ++it) out.insert((*it)[1]);
  return out;
}

// The --flags of an argument list (after "--" for lbd, whose EAL options come first).
std::vector<std::string> FlagsUsed(const std::vector<std::string>& args) {
  std::vector<std::string> out;
  bool gflags_part = std::find(args.begin(), args.end(), "--") == args.end();
  for (const std::string& a : args) {
    if (a == "--") {
      gflags_part = true;
      continue;
    }
    if (!gflags_part || a.rfind("--", 0) != 0) continue;
    out.push_back(a.substr(2, a.find('=') - 2));
  }
  return out;
}

TEST(ManifestsTest, ContainersPassOnlyFlagsTheProgramsDefine) {
  const auto docs = Documents("docker/k8s/lb-node.yaml");
  const std::map<std::string, std::string> sources = {
      {"/usr/local/bin/lbd", "control/lbd/flags.cc"},
      {"/usr/local/bin/lb-k8s-watcher", "control/k8s/main.cc"},
      {"/usr/local/bin/lb-bird-gen", "control/bird/main.cc"},
      {"/usr/local/bin/lb-node-config", "control/node/main.cc"},
      {"/usr/local/bin/lb-dsr-node", "control/dsr_node/main.cc"},
  };
  int checked = 0;
  std::vector<YAML::Node> containers;
  for (const char* manifest : {"docker/k8s/lb-node.yaml", "docker/k8s/lb-dsr-node.yaml"}) {
    const YAML::Node pod = Find(Documents(manifest), "DaemonSet")["spec"]["template"]["spec"];
    for (const auto& c : pod["initContainers"]) containers.push_back(c);
    for (const auto& c : pod["containers"]) containers.push_back(c);
  }
  for (const auto& c : containers) {
    const auto command = c["command"].as<std::vector<std::string>>();
    const auto it = sources.find(command[0]);
    if (it == sources.end()) continue;
    std::vector<std::string> args = command;
    if (c["args"]) {
      for (const auto& a : c["args"]) args.push_back(a.as<std::string>());
    }
    const auto defined = Flags(it->second);
    for (const std::string& flag : FlagsUsed(args)) {
      EXPECT_TRUE(defined.contains(flag)) << c["name"] << ": --" << flag << " is not a flag of " << command[0];
      ++checked;
    }
  }
  // lbd's flag file, from the ConfigMap.
  std::istringstream flagfile(Find(docs, "ConfigMap")["data"]["lbd.flags"].as<std::string>());
  const auto lbd_flags = Flags("control/lbd/flags.cc");
  for (std::string line; std::getline(flagfile, line);) {
    if (line.empty()) continue;
    for (const std::string& flag : FlagsUsed({line})) {
      EXPECT_TRUE(lbd_flags.contains(flag)) << "lbd.flags: --" << flag;
      ++checked;
    }
  }
  EXPECT_GT(checked, 10);
}

TEST(ManifestsTest, TheSiteConfigurationServesEveryNodeItNames) {
  const auto docs = Documents("docker/k8s/lb-node.yaml");
  const std::string site = Find(docs, "ConfigMap")["data"]["site.yaml"].as<std::string>();
  int nodes = 0;
  std::set<std::string> flags;
  for (const auto& n : YAML::Load(site)["nodes"]) {
    auto files = lb::control::node::RenderNodeFiles(site, n.first.as<std::string>());
    ASSERT_TRUE(files.ok()) << n.first << ": " << files.status();
    EXPECT_TRUE(lb::control::bird::ParseNodeConfig(files->at("bird-gen.yaml")).ok());
    flags.insert(files->at("lbd.flags"));
    ++nodes;
  }
  EXPECT_GE(nodes, 2) << "the example shows two racks";
  EXPECT_EQ(flags.size(), size_t(nodes)) << "each node its own flags";
}

// Nothing in the pod template is one node's: no address, interface or PCI device literal
// outside the ConfigMap's site.yaml.
TEST(ManifestsTest, ThePodTemplateHasNoPerNodeLiteral) {
  const std::string ds = Read("docker/k8s/lb-node.yaml");
  const std::string tmpl = ds.substr(ds.find("kind: DaemonSet"));
  static const std::regex kAddress(R"(\b\d+\.\d+\.\d+\.\d+\b|[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.\d)");
  std::smatch m;
  EXPECT_FALSE(std::regex_search(tmpl, m, kAddress)) << "a per-node literal in the DaemonSet: " << m.str();
}

// "group/resource:verb" for every permission of the (Cluster)Role of kind `kind`.
std::set<std::string> Granted(const std::vector<YAML::Node>& docs, const std::string& kind) {
  std::set<std::string> granted;
  for (const auto& rule : Find(docs, kind)["rules"]) {
    for (const auto& group : rule["apiGroups"]) {
      for (const auto& resource : rule["resources"]) {
        for (const auto& verb : rule["verbs"]) {
          granted.insert(group.as<std::string>() + "/" + resource.as<std::string>() + ":" + verb.as<std::string>());
        }
      }
    }
  }
  return granted;
}

TEST(ManifestsTest, WatcherRbacIsExactlyWhatItUses) {
  const auto docs = Documents("docker/k8s/rbac.yaml");
  EXPECT_THAT(
      Granted(docs, "ClusterRole"),
      ::testing::UnorderedElementsAre("/services:get", "/services:list", "/services:watch", "/services/status:update",
                                      "discovery.k8s.io/endpointslices:get", "discovery.k8s.io/endpointslices:list",
                                      "discovery.k8s.io/endpointslices:watch", "/events:create"));
  EXPECT_THAT(Granted(docs, "Role"),
              ::testing::UnorderedElementsAre("coordination.k8s.io/leases:get", "coordination.k8s.io/leases:list",
                                              "coordination.k8s.io/leases:watch"));
  const auto binding = Find(docs, "ClusterRoleBinding");
  EXPECT_EQ(binding["subjects"][0]["name"].as<std::string>(),
            Find(docs, "ServiceAccount")["metadata"]["name"].as<std::string>());
  const auto node = Documents("docker/k8s/lb-node.yaml");
  EXPECT_EQ(Find(node, "DaemonSet")["spec"]["template"]["spec"]["serviceAccountName"].as<std::string>(),
            Find(docs, "ServiceAccount")["metadata"]["name"].as<std::string>());
}

TEST(ManifestsTest, DsrNodeRbacIsExactlyWhatItUses) {
  const auto docs = Documents("docker/k8s/lb-dsr-node.yaml");
  EXPECT_THAT(
      Granted(docs, "ClusterRole"),
      ::testing::UnorderedElementsAre("/services:list", "/services:watch", "/pods:list", "/pods:watch",
                                      "discovery.k8s.io/endpointslices:list", "discovery.k8s.io/endpointslices:watch"));
  EXPECT_THAT(Granted(docs, "Role"), ::testing::UnorderedElementsAre("coordination.k8s.io/leases:create",
                                                                     "coordination.k8s.io/leases:update"));
  EXPECT_EQ(Find(docs, "DaemonSet")["spec"]["template"]["spec"]["serviceAccountName"].as<std::string>(),
            Find(docs, "ServiceAccount")["metadata"]["name"].as<std::string>());
}

}  // namespace
