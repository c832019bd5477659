// EAL for the fuzz targets that need packet buffers: --no-huge, no devices, no shared
// configuration or telemetry, a file prefix of the process's own. Aborts on failure.
#pragma once

#include <rte_eal.h>
#include <rte_mbuf.h>

#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "dataplane/dpdk/eal.h"

namespace lb::fuzz {

// Initialises EAL with `memory_mb` of memory and returns a pool of `mbufs` packet buffers.
inline rte_mempool* InitEalWithPool(const char* argv0, int memory_mb, unsigned mbufs) {
  std::vector<std::string> args = {argv0,
                                   "--no-huge",
                                   "--no-pci",
                                   "--no-shconf",
                                   "-m",
                                   std::to_string(memory_mb),
                                   "-l",
                                   "0",
                                   "--log-level=lib.eal:error",
                                   "--no-telemetry",
                                   "--file-prefix=lb-fuzz-" + std::to_string(getpid())};
  std::vector<char*> eal;
  for (auto& a : args) eal.push_back(a.data());
  if (rte_eal_init(int(eal.size()), eal.data()) < 0) std::abort();
  // EAL makes a runtime directory even with --no-shconf and --no-telemetry, and leaves
  // nothing in it: remove it now, since a crash (what fuzzing looks for) runs no exit
  // handler.
  dataplane::dpdk::RemoveRuntimeDirectory(rte_eal_get_runtime_dir());
  rte_mempool* pool = rte_pktmbuf_pool_create("fuzz", mbufs, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
  if (pool == nullptr) std::abort();
  return pool;
}

}  // namespace lb::fuzz
