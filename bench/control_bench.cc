// control_bench: what a change to a running lbd costs, through its gRPC API.
//
//   control_bench --sockets=PATH[,PATH...] [--services=N --backends=N] [--load]
//                 [--changes=N] [--rate=R --duration=S]
//
// --load applies N services x N backends (one Apply, timed) to every socket. Then each of
// --changes single-backend weight changes goes to every socket in turn (as each LB node's
// watcher sends it), and its latency is measured twice: until the RPC returns (the
// snapshot is published), and until lbd reports that every worker has moved on to the
// new snapshot (Health.snapshot_visible: no worker reads an older table). Prints p50,
// p99 and the maximum of both, and a JSON line with --json. With --rate the changes are
// paced (R a second per socket) for --duration seconds instead of a count. Exit status:
// 0, or 1 when any RPC failed.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include <gflags/gflags.h>
#include <grpcpp/grpcpp.h>

#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "lb/v1/lb.grpc.pb.h"

DEFINE_string(sockets, "/run/lbd/lbd.sock", "Comma-separated Unix sockets of the lbd instances to change.");
DEFINE_uint32(services, 4096, "Services of the loaded state (VIPs 10.100.0.0 upwards, UDP 53).");
DEFINE_uint32(backends, 100, "Backends of each service (10.200.0.0 upwards).");
DEFINE_uint32(vip_offset, 0, "First VIP is 10.100.0.0 plus this (to keep a test's own VIPs free).");
DEFINE_bool(load, false, "Apply the services x backends state first (timed).");
DEFINE_uint32(changes, 200, "Single-backend changes to measure (per socket).");
DEFINE_double(rate, 0, "Changes a second per socket; 0: one after the other, as fast as they complete.");
DEFINE_double(duration, 0, "With --rate: seconds to run (the count is then rate x duration).");
DEFINE_bool(wait_visible, true, "Measure until every worker reads the new snapshot too.");
DEFINE_bool(json, false, "Also print one JSON line with the figures.");

namespace {

using Clock = std::chrono::steady_clock;
// A gRPC client of lbd's API.
using LbClient = lb::v1::LoadBalancer::Stub;

std::string Ipv4(uint32_t base, uint32_t offset) {
  const uint32_t a = base + offset;
  return absl::StrFormat("%d.%d.%d.%d", a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255);
}
constexpr uint32_t kVipBase = (10u << 24) | (100u << 16);
constexpr uint32_t kBackendBase = (10u << 24) | (200u << 16);

lb::v1::ServiceKey Key(uint32_t service) {
  lb::v1::ServiceKey key;
  key.set_vip(Ipv4(kVipBase, FLAGS_vip_offset + service));
  key.set_protocol(lb::v1::UDP);
  key.set_port(53);
  return key;
}

std::string BackendAddress(uint32_t service, uint32_t backend) {
  return Ipv4(kBackendBase, (service * 7 + backend * 131) % (1u << 16));
}

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

struct Percentiles {
  double p50 = 0, p99 = 0, max = 0;
};
Percentiles Of(std::vector<double> v) {
  if (v.empty()) return {};
  std::sort(v.begin(), v.end());
  auto at = [&](double q) { return v[std::min(v.size() - 1, size_t(q * double(v.size())))]; };
  return {at(0.5), at(0.99), v.back()};
}

bool Load(LbClient& lbd, const std::string& socket) {
  lb::v1::ApplyRequest req;
  for (uint32_t s = 0; s < FLAGS_services; ++s) {
    lb::v1::Service* svc = req.add_services();
    *svc->mutable_key() = Key(s);
    for (uint32_t b = 0; b < FLAGS_backends; ++b) {
      lb::v1::Backend* backend = svc->add_backends();
      backend->set_address(BackendAddress(s, b));
      backend->set_port(uint32_t(b / 65536));  // distinct (address, port) pairs
    }
  }
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::minutes(10));
  lb::v1::ApplyResponse out;
  const auto start = Clock::now();
  const grpc::Status s = lbd.Apply(&ctx, req, &out);
  const double ms = Ms(Clock::now() - start);
  if (!s.ok()) {
    std::fprintf(stderr, "%s: Apply: %s\n", socket.c_str(), s.error_message().c_str());
    return false;
  }
  std::printf("%s: Apply of %u services x %u backends (%zu bytes): %.0f ms (%u created, %u updated, %u unchanged)\n",
              socket.c_str(), FLAGS_services, FLAGS_backends, req.ByteSizeLong(), ms, out.created(), out.updated(),
              out.unchanged());
  if (FLAGS_json) {
    std::printf("{\"socket\": \"%s\", \"apply_ms\": %.1f, \"services\": %u, \"backends\": %u}\n", socket.c_str(), ms,
                FLAGS_services, FLAGS_backends);
  }
  return true;
}

// One weight change and, with --wait_visible, the wait until every worker reads it.
bool Change(LbClient& lbd, uint32_t k, std::vector<double>& rpc_ms, std::vector<double>& visible_ms) {
  lb::v1::UpdateBackendRequest req;
  const uint32_t service = uint32_t((uint64_t(k) * 7919) % FLAGS_services);
  const uint32_t backend = k % FLAGS_backends;
  *req.mutable_key() = Key(service);
  req.set_address(BackendAddress(service, backend));
  req.set_port(backend / 65536);
  req.set_weight(2 + k % 2);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  lb::v1::Service out;
  const auto start = Clock::now();
  const grpc::Status s = lbd.UpdateBackend(&ctx, req, &out);
  rpc_ms.push_back(Ms(Clock::now() - start));
  if (!s.ok()) {
    std::fprintf(stderr, "UpdateBackend %s: %s\n", req.address().c_str(), s.error_message().c_str());
    return false;
  }
  if (!FLAGS_wait_visible) return true;
  for (uint64_t published = 0;;) {
    grpc::ClientContext hctx;
    hctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    lb::v1::Health h;
    if (!lbd.GetHealth(&hctx, {}, &h).ok()) return false;
    if (published == 0) published = h.snapshot_generation();  // ours or a later one
    if (h.snapshot_visible() && h.snapshot_generation() >= published) break;
    if (Clock::now() - start > std::chrono::seconds(10)) {
      std::fprintf(stderr, "snapshot %lu not visible after 10 s\n", (unsigned long)published);
      return false;
    }
  }
  visible_ms.push_back(Ms(Clock::now() - start));
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  gflags::SetUsageMessage("control_bench --sockets=PATH[,PATH...] [--load] [--changes=N | --rate=R --duration=S]");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  if (FLAGS_services == 0 || FLAGS_backends == 0) {
    std::fprintf(stderr, "--services and --backends must be at least 1\n");
    return 2;
  }
  std::vector<std::string> sockets = absl::StrSplit(FLAGS_sockets, ',', absl::SkipEmpty());
  std::vector<std::unique_ptr<LbClient>> clients;
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  args.SetMaxSendMessageSize(-1);
  for (const std::string& s : sockets) {
    clients.push_back(lb::v1::LoadBalancer::NewStub(
        grpc::CreateCustomChannel("unix:" + s, grpc::InsecureChannelCredentials(), args)));
  }
  bool ok = true;
  if (FLAGS_load) {
    for (size_t i = 0; i < clients.size(); ++i) ok = Load(*clients[i], sockets[i]) && ok;
    if (!ok) return 1;
  }
  const uint32_t count = FLAGS_rate > 0 && FLAGS_duration > 0 ? uint32_t(FLAGS_rate * FLAGS_duration) : FLAGS_changes;
  std::vector<double> rpc_ms, visible_ms;
  uint32_t failures = 0;
  const auto start = Clock::now();
  for (uint32_t k = 0; k < count; ++k) {
    if (FLAGS_rate > 0) {
      std::this_thread::sleep_until(
          start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(k / FLAGS_rate)));
    }
    for (auto& lbd : clients) failures += !Change(*lbd, k, rpc_ms, visible_ms);
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  const Percentiles rpc = Of(rpc_ms), visible = Of(visible_ms);
  std::printf("%u changes x %zu socket(s) in %.1f s, %u failed\n", count, clients.size(), seconds, failures);
  std::printf("  published (RPC returned):       p50 %.2f ms  p99 %.2f ms  max %.2f ms\n", rpc.p50, rpc.p99, rpc.max);
  if (FLAGS_wait_visible) {
    std::printf("  visible to every worker:        p50 %.2f ms  p99 %.2f ms  max %.2f ms\n", visible.p50, visible.p99,
                visible.max);
  }
  if (FLAGS_json) {
    std::printf(
        "{\"changes\": %u, \"failed\": %u, \"rpc_p50_ms\": %.3f, \"rpc_p99_ms\": %.3f, \"visible_p50_ms\": %.3f, "
        "\"visible_p99_ms\": %.3f, \"visible_max_ms\": %.3f}\n",
        count, failures, rpc.p50, rpc.p99, visible.p50, visible.p99, visible.max);
  }
  return failures == 0 ? 0 : 1;
}
