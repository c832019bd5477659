// EAL teardown for the programs that initialise it (lbd, lbbench, the dataplane tests and
// the fuzz target). Thread model: the main thread, after every lcore has stopped.
#pragma once

#include <string>

namespace lb::dataplane::dpdk {

// Removes EAL's runtime directory `runtime_dir` (rte_eal_get_runtime_dir()), which EAL
// leaves behind even with --no-shconf, and its parent (/var/run/dpdk) when nothing else is
// in it. rmdir removes only empty directories, so another process's files are never
// touched.
void RemoveRuntimeDirectory(const std::string& runtime_dir);

// Releases EAL (rte_eal_cleanup), then RemoveRuntimeDirectory.
void CleanUpEal();

}  // namespace lb::dataplane::dpdk
