// control_server: lbd's control core and gRPC API without a dataplane, for tests of the
// programs that talk to lbd (the Kubernetes watcher). The configuration is the same as
// lbd's (same validation, same Apply); nothing forwards packets. Health reports healthy.
//
//   control_server SOCKET      serves lb.v1 on unix:SOCKET until SIGTERM/SIGINT.
#include <unistd.h>

#include <csignal>
#include <cstdio>

#include <grpcpp/grpcpp.h>

#include "control/control_core.h"
#include "control/grpc_service.h"

namespace {

volatile std::sig_atomic_t g_stop = 0;
void OnSignal(int) { g_stop = 1; }

// A dataplane with one live worker and links up.
class IdleDataplane : public lb::control::DataplaneProbe {
 public:
  std::vector<lb::control::WorkerView> Workers() const override { return {{0, 1, &counters_, 0, 1024}}; }
  std::vector<std::string> HealthProblems() const override { return {}; }
  bool LinksUp() const override { return true; }
  uint32_t WorkersAlive() const override { return 1; }
  std::optional<lb::control::FlowLocation> FindFlow(const lb::FlowKey&) override { return std::nullopt; }

 private:
  lb::dataplane::WorkerCounters counters_;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: control_server SOCKET\n");
    return 2;
  }
  lb::control::NodeSettings settings;
  settings.encap.source_v4 = *lb::IpPrefix::Parse("10.255.0.0/24");
  settings.encap.source_v6 = *lb::IpPrefix::Parse("fd00:ff::/120");
  // NAT is the watcher's default mode: an SNAT address of each family, as lbd would have.
  settings.nat.addresses = {*lb::IpAddress::Parse("10.255.1.1"), *lb::IpAddress::Parse("fd00:ff:1::1")};
  auto store = lb::dataplane::SnapshotStore::Create(1);
  if (!store.ok()) return 1;
  IdleDataplane dataplane;
  lb::control::ControlCore core(settings, store->get(), &dataplane);
  if (!core.Start().ok()) return 1;
  lb::control::LoadBalancerService service(&core);
  grpc::ServerBuilder builder;
  builder.RegisterService(&service);
  unlink(argv[1]);
  builder.AddListeningPort(std::string("unix:") + argv[1], grpc::InsecureServerCredentials());
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server) return 1;
  std::signal(SIGTERM, OnSignal);
  std::signal(SIGINT, OnSignal);
  std::fprintf(stderr, "control_server: serving on %s\n", argv[1]);
  while (g_stop == 0) {
    usleep(50 * 1000);
    core.Reclaim();
  }
  server->Shutdown();
  unlink(argv[1]);
  return 0;
}
