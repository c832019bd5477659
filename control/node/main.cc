// lb-node-config: renders this LB node's part of the site configuration (site.yaml, the
// same ConfigMap on every node) into the files that lbd, lb-bird-gen and lb-k8s-watcher
// read. The LB-node pod runs it as its init container, with the node's name from the
// downward API. See docs/k8s.md, "The site configuration".

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include <gflags/gflags.h>

#include "control/node/site_config.h"
#include "control/version.h"

DEFINE_string(site, "/etc/lb/site.yaml", "The site configuration (YAML; docs/k8s.md).");
DEFINE_string(node_name, "", "This node's name under `nodes`; empty: $NODE_NAME.");
DEFINE_string(output_dir, "/run/lb-node", "Where the node's files go (each written atomically).");
DEFINE_bool(print, false, "Print the node's files instead of writing them.");

namespace lb::control::node {
namespace {

bool WriteAtomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
    if (!out.flush()) return false;
  }
  return rename(tmp.c_str(), path.c_str()) == 0;
}

int Main(int argc, char** argv) {
  gflags::SetUsageMessage(
      "lb-node-config [options]: render this LB node's lbd, lb-bird-gen and lb-k8s-watcher "
      "settings from the site configuration");
  gflags::SetVersionString(std::string(BuildVersion()));
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  std::string node = FLAGS_node_name;
  if (node.empty() && std::getenv("NODE_NAME") != nullptr) node = std::getenv("NODE_NAME");
  if (node.empty()) {
    std::fprintf(stderr, "lb-node-config: give --node_name or $NODE_NAME (the downward API's spec.nodeName)\n");
    return 2;
  }
  std::ifstream in(FLAGS_site);
  if (!in) {
    std::fprintf(stderr, "lb-node-config: cannot read %s\n", FLAGS_site.c_str());
    return 2;
  }
  std::stringstream text;
  text << in.rdbuf();
  auto files = RenderNodeFiles(text.str(), node);
  if (!files.ok()) {
    std::fprintf(stderr, "lb-node-config: %s: %s\n", FLAGS_site.c_str(), std::string(files.status().message()).c_str());
    return 2;
  }
  for (const auto& [name, content] : *files) {
    if (FLAGS_print) {
      std::printf("==> %s <==\n%s", name.c_str(), content.c_str());
    } else if (!WriteAtomically(FLAGS_output_dir + "/" + name, content)) {
      std::fprintf(stderr, "lb-node-config: cannot write %s/%s\n", FLAGS_output_dir.c_str(), name.c_str());
      return 1;
    }
  }
  if (!FLAGS_print)
    std::fprintf(stderr, "lb-node-config: node %s: wrote %zu files to %s\n", node.c_str(), files->size(),
                 FLAGS_output_dir.c_str());
  return 0;
}

}  // namespace
}  // namespace lb::control::node

int main(int argc, char** argv) { return lb::control::node::Main(argc, argv); }
