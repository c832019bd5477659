// gtest main for tests that need EAL: --no-huge and --no-pci (virtual devices only),
// --no-shconf, a file prefix of its own whose runtime directory (EAL makes one even with
// --no-shconf) is removed at exit, and a small mbuf pool shared by the tests (TestPool()).
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_mbuf.h>

#include <gtest/gtest.h>

#include "dataplane/dpdk/eal.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace lb::testing {

rte_mempool* g_pool = nullptr;
rte_mempool* TestPool() { return g_pool; }

}  // namespace lb::testing

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  const std::string prefix = "lb-dataplane-test-" + std::to_string(getpid());
  std::vector<std::string> eal = {argv[0],
                                  "--no-huge",
                                  "--no-pci",
                                  "--no-shconf",
                                  "-m",
                                  "256",
                                  "-l",
                                  "0",
                                  "--log-level=lib.eal:error",
                                  "--no-telemetry",
                                  "--file-prefix=" + prefix};
  std::vector<char*> eal_argv;
  for (auto& s : eal) eal_argv.push_back(s.data());
  if (lb::dataplane::dpdk::InitEal(int(eal_argv.size()), eal_argv.data()) < 0) {
    std::fprintf(stderr, "rte_eal_init failed: %s\n", rte_strerror(rte_errno));
    return 1;
  }
  lb::testing::g_pool = rte_pktmbuf_pool_create("test_pool", 8191, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
  if (lb::testing::g_pool == nullptr) {
    std::fprintf(stderr, "rte_pktmbuf_pool_create failed: %s\n", rte_strerror(rte_errno));
    return 1;
  }
  const int result = RUN_ALL_TESTS();
  rte_mempool_free(lb::testing::g_pool);
  lb::dataplane::dpdk::CleanUpEal();
  return result;
}
