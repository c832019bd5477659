// lb-bird-gen: renders BIRD's configuration for this LB node and reloads BIRD, announcing
// the VIP prefixes while lbd reports healthy and withdrawing them when it does not, when
// it cannot be reached, or when the node is drained. See docs/bird.md.
#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include <gflags/gflags.h>
#include <glog/logging.h>
#include <grpcpp/grpcpp.h>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "control/bird/announce_gate.h"
#include "control/bird/bird_status.h"
#include "control/bird/node_config.h"
#include "control/bird/render.h"
#include "control/http_endpoint.h"
#include "control/prometheus.h"
#include "control/version.h"
#include "lb/v1/lb.grpc.pb.h"

DEFINE_string(config, "/etc/lb/bird-gen.yaml", "The node's BGP settings (YAML, see docs/bird.md).");
DEFINE_string(output, "/etc/bird/bird.conf", "BIRD's configuration file, written atomically.");
DEFINE_string(lbd_socket, "/run/lbd/lbd.sock", "lbd's API socket (health).");
DEFINE_string(birdc_socket, "/run/bird/bird.ctl", "BIRD's control socket.");
DEFINE_string(bird, "bird", "The bird binary (validates with -p).");
DEFINE_string(birdc, "birdc", "The birdc binary (reloads with configure).");
DEFINE_uint32(interval_ms, 1000, "Time between health checks.");
DEFINE_uint32(up_after, 3, "Healthy checks in a row before the VIPs are announced again.");
DEFINE_uint32(down_after, 2, "Unhealthy checks in a row before the VIPs are withdrawn.");
DEFINE_string(drain_file, "", "While this file exists the node is drained (VIPs withdrawn).");
DEFINE_bool(drain, false, "Drain the node: render with the VIPs withdrawn.");
DEFINE_bool(dry_run, false, "Print the configuration for lbd's current health and exit.");
DEFINE_string(listen_address, "",
              "host:port of GET /healthz (200 while the loop runs), GET /readyz (200 while "
              "BIRD has the VIPs to announce) and GET /metrics. The manifest's: the node's address, port 7312. "
              "Empty: none.");
DEFINE_uint32(exit_reload_ms, 5000,
              "On SIGTERM: how long to try to reload BIRD with the VIPs withdrawn before "
              "exiting.");

namespace lb::control::bird {
namespace {

std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop.store(true); }

// lb-bird-gen's decision, as lb_bird_gen_decision{decision} says it.
enum class Decision { kNotConfigured, kAnnouncing, kDrained, kLbdUnhealthy };
constexpr const char* kDecisionNames[] = {"not_configured", "announcing", "drained", "lbd_unhealthy"};

// What the loop last did, for the HTTP endpoint's thread. Relaxed: independent gauges.
struct Status {
  std::atomic<Decision> decision{Decision::kNotConfigured};  // BIRD's configuration's, once one is in
  std::atomic<bool> announcing{false};                       // BIRD runs a configuration that announces
  std::atomic<bool> lbd_healthy{false};
  std::atomic<int64_t> last_check_ms{0};  // steady clock, of the last health check
  std::atomic<uint64_t> changes{0};       // announce <-> withdraw
  std::atomic<uint64_t> reload_failures{0};
};
Status g_status;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

struct CommandResult {
  int status = -1;
  std::string output;
};

// Runs argv (no shell) and returns its exit status and combined output.
CommandResult Run(const std::vector<std::string>& args) {
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) != 0) return {-1, "pipe failed"};
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipefd[1], 1);
  posix_spawn_file_actions_adddup2(&actions, pipefd[1], 2);
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid;
  const int rc = posix_spawnp(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(pipefd[1]);
  CommandResult r;
  if (rc != 0) {
    close(pipefd[0]);
    r.output = "cannot run " + args[0] + ": " + std::strerror(rc);
    return r;
  }
  char buf[4096];
  ssize_t n;
  while ((n = read(pipefd[0], buf, sizeof(buf))) > 0) r.output.append(buf, size_t(n));
  close(pipefd[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Writes `text` to a new file next to the target (mkstemp: a fresh name, created with
// O_EXCL, so no symlink or file planted there is followed or reused; mode 0600, as it may
// hold MD5 passwords), validates it with `bird -p`, then renames it into place. On a
// validation failure the previous file stays.
absl::Status InstallValidated(const std::string& text) {
  std::string tmp = FLAGS_output + ".lb-bird-gen.XXXXXX";
  const int fd = mkstemp(tmp.data());
  if (fd < 0) return absl::InternalError("mkstemp " + tmp + ": " + std::strerror(errno));
  size_t written = 0;
  while (written < text.size()) {
    const ssize_t n = write(fd, text.data() + written, text.size() - written);
    if (n <= 0) break;
    written += size_t(n);
  }
  const bool ok = written == text.size() && fchmod(fd, 0600) == 0 && fsync(fd) == 0;
  close(fd);
  if (!ok) {
    unlink(tmp.c_str());
    return absl::InternalError("cannot write " + tmp + ": " + std::strerror(errno));
  }
  const CommandResult check = Run({FLAGS_bird, "-p", "-c", tmp});
  if (check.status != 0) {
    unlink(tmp.c_str());
    return absl::InvalidArgumentError("bird -p refused the rendered configuration: " + check.output);
  }
  if (rename(tmp.c_str(), FLAGS_output.c_str()) != 0) {
    const int err = errno;
    unlink(tmp.c_str());
    return absl::InternalError("rename to " + FLAGS_output + ": " + std::strerror(err));
  }
  return absl::OkStatus();
}

absl::Status ReloadBird() {
  const CommandResult r = Run({FLAGS_birdc, "-s", FLAGS_birdc_socket, "configure"});
  if (r.status == 0 && (r.output.find("Reconfigured") != std::string::npos ||
                        r.output.find("Reconfiguration in progress") != std::string::npos)) {
    return absl::OkStatus();
  }
  return absl::UnavailableError("birdc configure: " + r.output);
}

// What BIRD says, at most a second old: a scrape runs birdc, a burst of scrapes once.
struct BirdView {
  bool reachable = false;  // birdc answered
  std::vector<BgpSession> bgp;
  std::vector<BfdSession> bfd;
};

BirdView ReadBird() {
  static absl::Mutex mu(absl::kConstInit);
  static BirdView* cached = new BirdView;
  static int64_t read_at = -1;
  absl::MutexLock lock(&mu);
  if (read_at >= 0 && NowMs() - read_at < 1000) return *cached;
  BirdView view;
  const CommandResult protocols = Run({FLAGS_birdc, "-s", FLAGS_birdc_socket, "show", "protocols", "all"});
  view.reachable = protocols.status == 0 && protocols.output.find(" ready.") != std::string::npos;
  if (view.reachable) {
    view.bgp = ParseBgpSessions(protocols.output, absl::LocalTimeZone());
    const CommandResult bfd = Run({FLAGS_birdc, "-s", FLAGS_birdc_socket, "show", "bfd", "sessions"});
    if (bfd.status == 0) view.bfd = ParseBfdSessions(bfd.output, absl::LocalTimeZone());
  }
  *cached = view;
  read_at = NowMs();
  return view;
}

// The BGP and BFD sessions as BIRD reports them.
void AppendBirdMetrics(std::string& out) {
  const BirdView bird = ReadBird();
  AppendMetricHeader(out, "lb_bird_up", "gauge", "1 when birdc reached BIRD at this scrape.");
  absl::StrAppendFormat(&out, "lb_bird_up %d\n", int(bird.reachable));
  AppendMetricHeader(out, "lb_bgp_session_up", "gauge", "1 while the BGP session is Established.");
  for (const BgpSession& b : bird.bgp)
    absl::StrAppendFormat(&out, "lb_bgp_session_up{peer=\"%s\",neighbor=\"%s\"} %d\n", b.name, b.neighbor,
                          int(b.established()));
  AppendMetricHeader(out, "lb_bgp_session_state_change_timestamp_seconds", "gauge",
                     "When the BGP protocol last changed state (Unix time, as BIRD reports it).");
  for (const BgpSession& b : bird.bgp) {
    if (!b.since) continue;
    absl::StrAppendFormat(&out, "lb_bgp_session_state_change_timestamp_seconds{peer=\"%s\",neighbor=\"%s\"} %d\n",
                          b.name, b.neighbor, absl::ToUnixSeconds(*b.since));
  }
  AppendMetricHeader(out, "lb_bgp_prefixes_announced", "gauge", "Prefixes BIRD exports to the peer now.");
  for (const BgpSession& b : bird.bgp)
    absl::StrAppendFormat(&out, "lb_bgp_prefixes_announced{peer=\"%s\",neighbor=\"%s\"} %d\n", b.name, b.neighbor,
                          b.routes_exported);
  AppendMetricHeader(out, "lb_bfd_session_up", "gauge", "1 while the BFD session to the neighbour is Up.");
  for (const BfdSession& b : bird.bfd)
    absl::StrAppendFormat(&out, "lb_bfd_session_up{neighbor=\"%s\",interface=\"%s\"} %d\n", b.address, b.interface,
                          int(b.up()));
}

HttpReply Serve(std::string_view method, std::string_view path) {
  if (method != "GET") return HttpReply{.status = 405, .content_type = "text/plain", .body = "GET only\n"};
  if (path == "/healthz") {
    // Alive while the loop checks lbd (it blocks at most a reload's time).
    const bool alive =
        NowMs() - g_status.last_check_ms.load(std::memory_order_relaxed) < 10 * int64_t(FLAGS_interval_ms) + 10000;
    return HttpReply{.status = alive ? 200 : 503, .content_type = "text/plain", .body = alive ? "ok\n" : "stalled\n"};
  }
  if (path == "/readyz") {
    const bool ready = g_status.announcing.load(std::memory_order_relaxed);
    return HttpReply{
        .status = ready ? 200 : 503, .content_type = "text/plain", .body = ready ? "announcing\n" : "not announcing\n"};
  }
  if (path == "/metrics") {
    std::string out;
    AppendMetricHeader(out, "lb_bird_gen_announcing", "gauge",
                       "1 while BIRD runs a configuration that announces the VIPs.");
    absl::StrAppendFormat(&out, "lb_bird_gen_announcing %d\n",
                          int(g_status.announcing.load(std::memory_order_relaxed)));
    AppendMetricHeader(out, "lb_bird_gen_lbd_healthy", "gauge", "1 when the last health check found lbd healthy.");
    absl::StrAppendFormat(&out, "lb_bird_gen_lbd_healthy %d\n",
                          int(g_status.lbd_healthy.load(std::memory_order_relaxed)));
    AppendMetricHeader(out, "lb_bird_gen_changes_total", "counter", "Changes between announcing and withdrawing.");
    absl::StrAppendFormat(&out, "lb_bird_gen_changes_total %d\n", g_status.changes.load(std::memory_order_relaxed));
    AppendMetricHeader(out, "lb_bird_gen_reload_failures_total", "counter", "birdc configure calls that failed.");
    absl::StrAppendFormat(&out, "lb_bird_gen_reload_failures_total %d\n",
                          g_status.reload_failures.load(std::memory_order_relaxed));
    AppendMetricHeader(out, "lb_bird_gen_decision", "gauge",
                       "1 for the decision in BIRD's configuration: announcing, drained, lbd_unhealthy, or "
                       "not_configured (none installed yet).");
    const Decision decision = g_status.decision.load(std::memory_order_relaxed);
    for (int d = 0; d < 4; ++d)
      absl::StrAppendFormat(&out, "lb_bird_gen_decision{decision=\"%s\"} %d\n", kDecisionNames[d],
                            int(d == int(decision)));
    AppendBirdMetrics(out);
    AppendBuildInfo(out, "lb-bird-gen");
    return HttpReply{.body = std::move(out)};
  }
  return HttpReply{.status = 404, .content_type = "text/plain", .body = "GET /healthz, /readyz or /metrics\n"};
}

// Whether lbd says to announce, and if not, why.
std::pair<bool, std::string> CheckHealth(lb::v1::LoadBalancer::Stub& lbd) {
  if (FLAGS_drain) return {false, "drained (--drain)"};
  struct stat st;
  if (!FLAGS_drain_file.empty() && stat(FLAGS_drain_file.c_str(), &st) == 0) {
    return {false, "drained (" + FLAGS_drain_file + " exists)"};
  }
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(800));
  lb::v1::Health h;
  const grpc::Status s = lbd.GetHealth(&ctx, {}, &h);
  if (!s.ok()) return {false, "lbd unreachable: " + s.error_message()};
  if (!h.healthy()) {
    std::vector<std::string> problems(h.problems().begin(), h.problems().end());
    return {false, "lbd unhealthy: " + absl::StrJoin(problems, "; ")};
  }
  return {true, "lbd healthy"};
}

// `lb-bird-gen status`: the decision in BIRD's configuration, and BIRD's sessions.
int PrintStatus() {
  std::istringstream config(ReadFile(FLAGS_output));
  std::string line, decision = "unknown: no configuration at " + FLAGS_output;
  while (std::getline(config, line)) {
    if (line.rfind("# VIP prefixes: ", 0) == 0) {
      std::string said = line.substr(16);
      if (!said.empty() && said.back() == '.') said.pop_back();
      decision = said + " (" + FLAGS_output + ")";
      break;
    }
  }
  std::printf("decision: %s\n", decision.c_str());
  const BirdView bird = ReadBird();
  if (!bird.reachable) {
    std::printf("BIRD: not reachable at %s\n", FLAGS_birdc_socket.c_str());
    return 1;
  }
  const auto since = [](const std::optional<absl::Time>& t) {
    return t ? absl::FormatTime("%Y-%m-%d %H:%M:%S", *t, absl::LocalTimeZone()) : std::string("?");
  };
  std::printf("%-12s %-28s %-12s %-20s %s\n", "BGP peer", "neighbor", "state", "since", "announced");
  for (const BgpSession& b : bird.bgp) {
    std::printf("%-12s %-28s %-12s %-20s %d%s\n", b.name.c_str(), b.neighbor.c_str(), b.bgp_state.c_str(),
                since(b.since).c_str(), int(b.routes_exported),
                b.last_error.empty() ? "" : ("  (last error: " + b.last_error + ")").c_str());
  }
  for (const BfdSession& b : bird.bfd) {
    std::printf("BFD %-28s %-10s %-6s since %s\n", b.address.c_str(), b.interface.c_str(), b.state.c_str(),
                since(b.since).c_str());
  }
  return 0;
}

Decision DecisionOf(bool announce, const std::string& why) {
  if (announce) return Decision::kAnnouncing;
  return why.rfind("drained", 0) == 0 ? Decision::kDrained : Decision::kLbdUnhealthy;
}

// Installs the configuration for `announce` and reloads BIRD with it; false when either failed.
bool InstallAndReload(const NodeConfig& config, bool announce, const std::string& why) {
  if (absl::Status s = InstallValidated(RenderBirdConfig(config, {announce, why})); !s.ok()) {
    LOG(ERROR) << s.message() << " (keeping " << FLAGS_output << ")";
    return false;
  }
  if (absl::Status s = ReloadBird(); !s.ok()) {
    g_status.reload_failures.fetch_add(1, std::memory_order_relaxed);
    LOG_EVERY_T(WARNING, 10) << s.message() << " (will retry)";
    return false;
  }
  return true;
}

int Main(int argc, char** argv) {
  gflags::SetUsageMessage(
      "lb-bird-gen [options]: announce this node's VIPs over BGP (BIRD) while lbd is healthy; "
      "withdraw them on SIGTERM before exiting\n"
      "lb-bird-gen status [--output=FILE --birdc_socket=SOCKET]: the decision in BIRD's configuration, and "
      "BIRD's BGP and BFD sessions");
  gflags::SetVersionString(std::string(BuildVersion()));
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  FLAGS_logtostderr = true;
  google::InitGoogleLogging("lb-bird-gen");
  if (argc == 2 && std::string_view(argv[1]) == "status") return PrintStatus();
  if (argc > 1) {
    LOG(ERROR) << "unknown command \"" << argv[1] << "\": status, or none (the loop)";
    return 2;
  }
  auto config = ParseNodeConfig(ReadFile(FLAGS_config));
  if (!config.ok()) {
    LOG(ERROR) << FLAGS_config << ": " << config.status().message();
    return 2;
  }
  auto lbd = lb::v1::LoadBalancer::NewStub(
      grpc::CreateChannel("unix:" + FLAGS_lbd_socket, grpc::InsecureChannelCredentials()));
  if (FLAGS_dry_run) {
    const auto [healthy, reason] = CheckHealth(*lbd);
    std::printf("%s", RenderBirdConfig(*config, {healthy, reason}).c_str());
    return 0;
  }
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  std::unique_ptr<HttpEndpoint> http;
  if (!FLAGS_listen_address.empty()) {
    auto endpoint = HttpEndpoint::Start(FLAGS_listen_address, Serve);
    if (!endpoint.ok()) {
      LOG(ERROR) << "--listen_address: " << endpoint.status().message();
      return 2;
    }
    http = *std::move(endpoint);
  }
  AnnounceGate gate(FLAGS_up_after, FLAGS_down_after);
  std::optional<bool> installed;  // the announce state BIRD was last reloaded with
  std::string unhealthy_reason = "starting";
  LOG(INFO) << "lb-bird-gen " << BuildVersion() << ": announcing " << config->prefixes.size() << " prefix(es) to "
            << config->peers.size() << " peer(s) while lbd (" << FLAGS_lbd_socket << ") is healthy";
  while (!g_stop.load()) {
    const auto [healthy, reason] = CheckHealth(*lbd);
    g_status.lbd_healthy.store(healthy, std::memory_order_relaxed);
    g_status.last_check_ms.store(NowMs(), std::memory_order_relaxed);
    if (!healthy) unhealthy_reason = reason;
    const bool announce = gate.Update(healthy);
    if (installed != announce) {
      const std::string why = announce ? reason : unhealthy_reason;
      // BIRD may not run yet (containers start in any order): tried again next check.
      if (InstallAndReload(*config, announce, why)) {
        LOG(INFO) << (announce ? "announcing" : "withdrawing") << " the VIP prefixes: " << why;
        if (installed.has_value()) g_status.changes.fetch_add(1, std::memory_order_relaxed);
        installed = announce;
        g_status.announcing.store(announce, std::memory_order_relaxed);
        g_status.decision.store(DecisionOf(announce, why), std::memory_order_relaxed);
      }
    }
    for (uint32_t slept = 0; slept < FLAGS_interval_ms && !g_stop.load(); slept += 50) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  // The pod is going away (or lb-bird-gen alone is restarted): withdraw first, so that the
  // ToR moves the traffic while lbd still forwards it (docs/k8s.md, Rolling updates).
  g_status.announcing.store(false, std::memory_order_relaxed);
  if (installed == false) return 0;  // BIRD withdraws already
  // A withdrawal not yet in BIRD keeps its reason.
  const std::string why =
      installed.has_value() || unhealthy_reason == "starting" ? "lb-bird-gen stopped" : unhealthy_reason;
  const int64_t give_up = NowMs() + FLAGS_exit_reload_ms;
  while (!InstallAndReload(*config, false, why)) {
    if (NowMs() >= give_up) {
      LOG(ERROR) << "stopping without having withdrawn the VIP prefixes: BIRD could not be reloaded";
      return 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  LOG(INFO) << "stopped: the VIP prefixes are withdrawn";
  return 0;
}

}  // namespace
}  // namespace lb::control::bird

int main(int argc, char** argv) { return lb::control::bird::Main(argc, argv); }
