// EAL set-up and teardown for the programs that initialise it (lbd, lbbench, the
// dataplane tests and the fuzz target). Thread model: the main thread.
#pragma once

#include <string>

namespace lb::dataplane::dpdk {

// rte_eal_init, and the removal of EAL's runtime directory when the process exits (from
// an exit handler registered first, so that it runs after EAL's own: telemetry unlinks
// its sockets from one, and the directory is not empty before that). Returns what
// rte_eal_init returns.
int InitEal(int argc, char** argv);

// Removes EAL's runtime directory `runtime_dir` (rte_eal_get_runtime_dir()), which EAL
// leaves behind even with --no-shconf, and its parent (/var/run/dpdk) when nothing else is
// in it. rmdir removes only empty directories, so another process's files are never
// touched.
void RemoveRuntimeDirectory(const std::string& runtime_dir);

// Releases EAL (rte_eal_cleanup), then RemoveRuntimeDirectory. After every lcore has
// stopped.
void CleanUpEal();

}  // namespace lb::dataplane::dpdk
