// lbd: the load balancer appliance, composed (docs/design.md): EAL, the runtime (ports,
// workers, the exception path, flow sync), the control core, the API server and the
// telemetry, started in that order and stopped in the reverse.
//
//   lbd [EAL options] -- [lbd options]
//
// EAL options choose lcores (-l: the first is the main lcore, every other one runs a
// worker), memory and devices (-a PCI address, --vdev). lbd options are the gflags of
// flags.cc.
#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <gflags/gflags.h>
#include <glog/logging.h>

#include "absl/strings/str_join.h"
#include "control/control_core.h"
#include "control/grpc_service.h"
#include "control/lbd/api_server.h"
#include "control/lbd/privileges.h"
#include "control/lbd/flags.h"
#include "control/lbd/runtime.h"
#include "control/lbd/telemetry.h"
#include "control/version.h"
#include "dataplane/dpdk/eal.h"
#include "dataplane/dpdk/services.h"

namespace lb::control {
namespace {

std::atomic<bool> g_stop{false};
// For DPDK telemetry's replies, which run on EAL's telemetry thread: set once the core is
// constructed, cleared before what it reaches (the runtime) is torn down.
std::atomic<ControlCore*> g_core{nullptr};

void OnSignal(int) { g_stop.store(true, std::memory_order_relaxed); }

bool HasArgument(int argc, char** argv, std::initializer_list<const char*> names) {
  for (int i = 1; i < argc; ++i) {
    for (const char* name : names) {
      if (!std::strcmp(argv[i], name)) return true;
    }
  }
  return false;
}

// The CPUs this process may run on (its affinity mask: what the kubelet's CPU manager
// gave the container), as an EAL lcore list ("2,3,5").
std::string AllowedCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return "";
  std::vector<int> cpus;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
  }
  return absl::StrJoin(cpus, ",");
}

// EAL's arguments with `-l` added when they choose no lcores: one lcore per CPU this
// process may run on, so that lbd runs where it was placed rather than on CPUs 0..N.
std::vector<char*> WithDefaultLcores(int argc, char** argv, std::string* storage) {
  std::vector<char*> out(argv, argv + argc);
  for (int i = 1; i < argc && std::strcmp(argv[i], "--") != 0; ++i) {
    const std::string_view a = argv[i];
    if (a.starts_with("-l") || a.starts_with("-c") || a.starts_with("--lcores")) return out;
  }
  *storage = AllowedCpus();
  if (storage->empty()) return out;
  out.insert(out.begin() + 1, {const_cast<char*>("-l"), storage->data()});
  return out;
}

// Releases EAL and removes the directories it made, then returns `code`.
int ExitAfterEal(int code) {
  dataplane::dpdk::CleanUpEal();
  return code;
}

int Main(int argc, char** argv) {
  gflags::SetUsageMessage(
      "lbd [EAL options] -- [lbd options]\n\n"
      "The load balancer appliance. EAL options come first: -l LCORES (the first is the main "
      "lcore, each other one runs a worker), -a PCI_ADDRESS or --vdev DEVARGS for the port, "
      "memory (--no-huge -m MB, or hugepages). lbd options may also come from a file: "
      "--flagfile=/etc/lbd/lbd.flags, one --flag=value a line (several --flagfile: read in "
      "order, a later value wins). Without -l, -c or --lcores lbd takes one lcore per CPU it "
      "may run on (its affinity mask). See docs/lbd.md.");
  gflags::SetVersionString(std::string(BuildVersion()));
  if (HasArgument(argc, argv, {"--help", "-h"})) {
    gflags::ShowUsageWithFlagsRestrict(argv[0], "control/lbd/flags.cc");
    return 0;
  }
  if (HasArgument(argc, argv, {"--version"})) {
    std::printf("lbd %s\n", std::string(BuildVersion()).c_str());
    return 0;
  }
  std::string lcores;
  std::vector<char*> eal_argv = WithDefaultLcores(argc, argv, &lcores);
  const int eal_args = dataplane::dpdk::InitEal(int(eal_argv.size()), eal_argv.data());
  if (eal_args < 0) {
    std::fprintf(stderr, "lbd: EAL initialisation failed: %s\n", dataplane::dpdk::LastError().c_str());
    return 1;
  }
  // rte_eal_init may have permuted eal_argv; what follows its arguments is lbd's.
  argc = int(eal_argv.size()) - eal_args;
  argv = eal_argv.data() + eal_args;
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  FLAGS_logtostderr = true;
  google::InitGoogleLogging("lbd");
  LOG(INFO) << "lbd " << BuildVersion()
            << (lcores.empty() ? "" : ", lcores " + lcores + " (the CPUs it may run on; -l chooses others)");
  auto config = ConfigFromFlags();
  if (!config.ok()) {
    LOG(ERROR) << config.status().message();
    return ExitAfterEal(2);
  }

  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  const uint32_t workers = dataplane::dpdk::WorkerLcores();
  auto store = dataplane::SnapshotStore::Create(std::max(1u, workers));
  CHECK(store.ok()) << store.status();
  auto runtime = Runtime::Start(config->runtime, store->get());
  if (!runtime.ok()) {
    LOG(ERROR) << runtime.status().message();
    return ExitAfterEal(1);
  }
  NodeSettings settings = config->settings;
  settings.next_hop = (*runtime)->InitialNextHop();
  ControlCore core(settings, store->get(), runtime->get(), (*runtime)->traffic());
  if (absl::Status s = core.Start(); !s.ok()) LOG(FATAL) << "initial configuration: " << s;
  if (config->await_first_apply) core.AwaitFirstApply();
  if (!config->state_dir.empty()) {
    if (absl::Status s = core.PersistDrainIn(config->state_dir + "/drained"); !s.ok()) {
      LOG(FATAL) << "--state_dir: " << s.message();
    }
    if (core.GetHealth().drained) LOG(WARNING) << "drained by the operator (recorded in " << config->state_dir << ")";
  }
  g_core.store(&core, std::memory_order_release);
  RegisterDpdkTelemetry(&g_core);
  if (absl::Status s = dataplane::dpdk::EnablePacketCapture(); !s.ok()) {
    LOG(WARNING) << s.message() << ": dpdk-dumpcap cannot capture (it needs EAL's shared config: not --no-shconf)";
  }

  LoadBalancerService service(&core);
  std::unique_ptr<grpc::Server> api = StartApiServer(config->api, &service, settings.limits);
  std::unique_ptr<HttpEndpoint> metrics =
      config->metrics_address.empty() ? nullptr
                                      : StartMetrics(config->metrics_address, config->metrics_top_backends, &core);
  // Every device and socket is open: from here on, only what the run needs.
  if (config->drop_capabilities) {
    auto kept = DropCapabilities(RuntimeCapabilities());
    if (!kept.ok()) LOG(FATAL) << "dropping capabilities: " << kept.status().message();
    LOG(INFO) << "capabilities kept: " << CapabilityNames(*kept);
  }
  LOG(INFO) << "lbd running with " << workers << " worker(s); SIGTERM or SIGINT stops it";

  (*runtime)->RunMain(&core, g_stop);

  LOG(INFO) << "stopping";
  g_core.store(nullptr, std::memory_order_release);
  api->Shutdown();
  metrics.reset();
  (*runtime)->StopWorkers();
  runtime->reset();
  if (!config->api.socket.empty()) unlink(config->api.socket.c_str());
  dataplane::dpdk::DisablePacketCapture();
  LOG(INFO) << "stopped";
  return ExitAfterEal(0);
}

}  // namespace
}  // namespace lb::control

int main(int argc, char** argv) { return lb::control::Main(argc, argv); }
