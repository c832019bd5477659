#include "dataplane/dpdk/eal.h"

#include <rte_eal.h>
#include <unistd.h>

namespace lb::dataplane::dpdk {

void RemoveRuntimeDirectory(const std::string& runtime_dir) {
  if (rmdir(runtime_dir.c_str()) == 0) rmdir(runtime_dir.substr(0, runtime_dir.rfind('/')).c_str());
}

void CleanUpEal() {
  const std::string runtime_dir = rte_eal_get_runtime_dir();
  rte_eal_cleanup();
  RemoveRuntimeDirectory(runtime_dir);
}

}  // namespace lb::dataplane::dpdk
