#include "dataplane/dpdk/eal.h"

#include <rte_eal.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace lb::dataplane::dpdk {
namespace {

// Written once, after rte_eal_init; read by the exit handler (plain storage: no
// destructor may run before it).
char g_runtime_dir[4096];

void RemoveRuntimeDirectoryAtExit() {
  if (g_runtime_dir[0] != '\0') RemoveRuntimeDirectory(g_runtime_dir);
}

}  // namespace

int InitEal(int argc, char** argv) {
  static const bool registered = std::atexit(RemoveRuntimeDirectoryAtExit) == 0;
  (void)registered;
  const int rc = rte_eal_init(argc, argv);
  const char* dir = rte_eal_get_runtime_dir();
  if (dir != nullptr && std::strlen(dir) < sizeof(g_runtime_dir)) {
    std::strncpy(g_runtime_dir, dir, sizeof(g_runtime_dir) - 1);
  }
  return rc;
}

void RemoveRuntimeDirectory(const std::string& runtime_dir) {
  if (rmdir(runtime_dir.c_str()) == 0) rmdir(runtime_dir.substr(0, runtime_dir.rfind('/')).c_str());
}

void CleanUpEal() {
  const std::string runtime_dir = rte_eal_get_runtime_dir();
  rte_eal_cleanup();
  RemoveRuntimeDirectory(runtime_dir);
}

}  // namespace lb::dataplane::dpdk
