// EAL teardown for the programs that initialise it (lbd, lbbench, the dataplane tests).
// Thread model: the main thread, after every lcore has stopped.
#pragma once

namespace lb::dataplane::dpdk {

// Releases EAL (rte_eal_cleanup) and removes the runtime directory EAL made, which it
// leaves behind even with --no-shconf, and that directory's parent (/var/run/dpdk) when
// nothing else is in it. rmdir removes only empty directories, so another process's files
// are never touched.
void CleanUpEal();

}  // namespace lb::dataplane::dpdk
