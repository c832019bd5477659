// lbctl: the operator CLI of lbd, over its gRPC API (lb.v1).
//
//   lbctl [global options] VERB ... [options]      lbctl VERB --help
//
// Exit status: 0 success; 1 unhealthy (health) or an error not listed here; 2 usage;
// 3 not found; 4 invalid request (invalid argument, already exists, stale generation);
// 5 lbd unreachable; 6 limit reached.
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>
#include <yaml-cpp/yaml.h>

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "control/version.h"
#include "tools/stats_view.h"
#include "lb/v1/lb.grpc.pb.h"

namespace lb::tools {
namespace {

constexpr char kGlobalHelp[] = R"(lbctl: operate lbd through its gRPC API.

Usage: lbctl [global options] VERB ... [options]

Verbs:
  service list                          services, as a table (ID, frontend, mode, backends)
  service get SERVICE                   one service
  service add SERVICE [options]         create a service
  service update SERVICE [options]      change mode, hash or table size (backends kept)
  service delete SERVICE                delete a service
  backend add SERVICE ADDRESS [--port N] [--weight N]
  backend remove SERVICE ADDRESS [--port N]
  backend set-weight SERVICE ADDRESS WEIGHT [--port N]
  backend drain SERVICE ADDRESS [--port N]        keep its flows, send it no new ones
  backend set-state SERVICE ADDRESS active|draining|down [--port N]
  apply -f FILE [--generation N] [--partial]   replace all services by FILE's (YAML or JSON)
  stats [--top N] [--service SERVICE]   counters; the busiest services and backends
  stats --watch [--interval S]          rates per second per service and backend, like top
  health                                exit 0 when healthy, 1 when not
  node drain | node undrain             withdraw this node's VIPs from BGP (lb-bird-gen), or not
  explain PROTO SRC SPORT DST DPORT     which service and backend a flow gets, and why

SERVICE is VIP:PORT/PROTO: 10.1.0.10:53/udp, [2001:db8::1]:443/tcp, 10.1.0.10:*/tcp (all ports).

Global options:
  --socket PATH        lbd's Unix socket (default /run/lbd/lbd.sock, or $LBCTL_SOCKET)
  --address HOST:PORT  lbd's TLS endpoint instead of the socket
  --tls-ca FILE        CA that signed lbd's certificate (with --address)
  --tls-cert FILE      client certificate (with --address, when lbd requires one)
  --tls-key FILE       client key
  -o table|json        output format (default table)
  --timeout SECONDS    per call (default 10)
  --version            lbctl's build, and nothing else

Exit status: 0 success; 1 unhealthy or other error; 2 usage; 3 not found; 4 invalid
request (invalid argument, already exists, stale generation); 5 lbd unreachable;
6 limit reached.
)";

struct UsageError {
  std::string message;
};

struct Args {
  std::vector<std::string> positional;
  std::map<std::string, std::vector<std::string>> options;  // repeated options keep order
  bool help = false;

  std::optional<std::string> Get(const std::string& name) const {
    auto it = options.find(name);
    if (it == options.end()) return std::nullopt;
    return it->second.back();
  }
};

// Options that take no value.
bool IsSwitch(const std::string& name) { return name == "help" || name == "partial" || name == "watch"; }

Args Parse(const std::vector<std::string>& argv) {
  Args a;
  for (size_t i = 0; i < argv.size(); ++i) {
    std::string s = argv[i];
    if (s == "-h" || s == "--help") {
      a.help = true;
      continue;
    }
    if (s == "-o" || s == "-f") s = s == "-o" ? "--output" : "--file";
    if (s.rfind("--", 0) == 0 && s.size() > 2) {
      std::string name = s.substr(2), value;
      const size_t eq = name.find('=');
      if (eq != std::string::npos) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
      } else if (!IsSwitch(name)) {
        if (i + 1 >= argv.size()) throw UsageError{"--" + name + " needs a value"};
        value = argv[++i];
      }
      a.options[name].push_back(value);
      continue;
    }
    a.positional.push_back(s);
  }
  return a;
}

uint32_t ParseNumber(const std::string& text, const std::string& what, uint32_t max) {
  char* end = nullptr;
  const unsigned long v = std::strtoul(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || v > max) {
    throw UsageError{what + ": \"" + text + "\" is not a number in 0.." + std::to_string(max)};
  }
  return uint32_t(v);
}

double ParseSeconds(const std::string& text, const std::string& what) {
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || !(v >= 0.1 && v <= 3600)) {
    throw UsageError{what + ": \"" + text + "\" is not a number of seconds in 0.1..3600"};
  }
  return v;
}

lb::v1::Protocol ParseProtocol(std::string p) {
  for (char& c : p) c = char(std::tolower(c));
  if (p == "tcp") return lb::v1::TCP;
  if (p == "udp") return lb::v1::UDP;
  throw UsageError{"protocol: \"" + p + "\" is not tcp or udp"};
}

// VIP:PORT/PROTO
lb::v1::ServiceKey ParseService(const std::string& text) {
  const size_t slash = text.rfind('/');
  const size_t colon = text.rfind(':', slash);
  if (slash == std::string::npos || colon == std::string::npos) {
    throw UsageError{"service: \"" + text + "\" is not VIP:PORT/PROTO (e.g. 10.1.0.10:53/udp)"};
  }
  std::string vip = text.substr(0, colon);
  if (vip.size() > 2 && vip.front() == '[' && vip.back() == ']') vip = vip.substr(1, vip.size() - 2);
  const std::string port = text.substr(colon + 1, slash - colon - 1);
  lb::v1::ServiceKey key;
  key.set_vip(vip);
  key.set_port(port == "*" ? 0 : ParseNumber(port, "service port", 65535));
  key.set_protocol(ParseProtocol(text.substr(slash + 1)));
  return key;
}

std::string ModeName(lb::v1::ForwardingMode m) {
  return m == lb::v1::DSR_GUE ? "dsr-gue" : m == lb::v1::NAT ? "nat" : "dsr-ipip";
}

std::string HashName(lb::v1::HashFields h) {
  switch (h) {
    case lb::v1::SOURCE_IP:
      return "source-ip";
    case lb::v1::SOURCE_IP_DEST_PORT:
      return "source-ip+dest-port";
    default:
      return "5-tuple";
  }
}

lb::v1::BackendState ParseState(const std::string& s) {
  if (s == "active") return lb::v1::ACTIVE;
  if (s == "draining") return lb::v1::DRAINING;
  if (s == "down") return lb::v1::DOWN;
  throw UsageError{"state: \"" + s + "\" is not active, draining or down"};
}

void ApplyServiceOptions(const Args& a, lb::v1::Service& s) {
  if (auto m = a.Get("mode")) {
    if (*m == "dsr-ipip")
      s.set_mode(lb::v1::DSR_IPIP);
    else if (*m == "dsr-gue")
      s.set_mode(lb::v1::DSR_GUE);
    else if (*m == "nat")
      s.set_mode(lb::v1::NAT);
    else
      throw UsageError{"--mode: \"" + *m + "\" is not dsr-ipip, dsr-gue or nat"};
  }
  if (auto h = a.Get("hash")) {
    if (*h == "5-tuple")
      s.set_hash_fields(lb::v1::FIVE_TUPLE);
    else if (*h == "source-ip")
      s.set_hash_fields(lb::v1::SOURCE_IP);
    else if (*h == "source-ip+dest-port")
      s.set_hash_fields(lb::v1::SOURCE_IP_DEST_PORT);
    else
      throw UsageError{"--hash: \"" + *h + "\" is not 5-tuple, source-ip or source-ip+dest-port"};
  }
  if (auto t = a.Get("table-size")) s.set_table_size(ParseNumber(*t, "--table-size", 16777213));
  if (auto it = a.options.find("source-range"); it != a.options.end()) {
    // "none" clears them (every client); lbd checks each prefix.
    s.clear_source_ranges();
    for (const std::string& range : it->second) {
      if (range != "none") s.add_source_ranges(range);
    }
  }
  if (auto it = a.options.find("backend"); it != a.options.end()) {
    for (const std::string& spec : it->second) {
      // ADDRESS[@WEIGHT]
      lb::v1::Backend* b = s.add_backends();
      const size_t at = spec.find('@');
      b->set_address(spec.substr(0, at));
      if (at != std::string::npos) b->set_weight(ParseNumber(spec.substr(at + 1), "--backend weight", 65535));
    }
  }
}

// The table `service list` prints, one line per backend as `cilium service list` does.
void PrintServices(const google::protobuf::RepeatedPtrField<lb::v1::Service>& services) {
  std::printf("%-5s %-28s %-9s %-20s %-8s %s\n", "ID", "Frontend", "Mode", "Hash", "Table", "Backends");
  for (const auto& s : services) {
    std::string first = "(none)";
    std::vector<std::string> rest;
    for (int i = 0; i < s.backends_size(); ++i) {
      const auto& b = s.backends(i);
      char line[160];
      std::snprintf(line, sizeof(line), "%d => %s%s (%s, weight %u)", i + 1, b.address().c_str(),
                    b.port() ? (":" + std::to_string(b.port())).c_str() : "", StateName(b.state()).c_str(), b.weight());
      (i == 0 ? first : rest.emplace_back()) = line;
    }
    std::printf("%-5lu %-28s %-9s %-20s %-8u %s\n", (unsigned long)s.id(), ServiceName(s.key()).c_str(),
                ModeName(s.mode()).c_str(), HashName(s.hash_fields()).c_str(), s.effective_table_size(), first.c_str());
    for (const auto& r : rest) std::printf("%-74s %s\n", "", r.c_str());
    if (s.source_ranges_size() > 0) {
      std::string ranges;
      for (const auto& r : s.source_ranges()) ranges += (ranges.empty() ? "" : ", ") + r;
      std::printf("%-74s only from %s\n", "", ranges.c_str());
    }
  }
}

std::string ToJson(const google::protobuf::Message& m) {
  google::protobuf::util::JsonPrintOptions o;
  o.add_whitespace = true;
  o.always_print_primitive_fields = true;
  o.preserve_proto_field_names = true;
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(m, &out, o);
  return out;
}

// YAML (or JSON, which YAML 1.2 contains) -> JSON text for protobuf's JSON parser.
void YamlToJson(const YAML::Node& n, std::ostringstream& out) {
  switch (n.Type()) {
    case YAML::NodeType::Map: {
      out << '{';
      bool first = true;
      for (const auto& kv : n) {
        if (!first) out << ',';
        first = false;
        YamlToJson(kv.first, out);
        out << ':';
        YamlToJson(kv.second, out);
      }
      out << '}';
      break;
    }
    case YAML::NodeType::Sequence: {
      out << '[';
      for (size_t i = 0; i < n.size(); ++i) {
        if (i) out << ',';
        YamlToJson(n[i], out);
      }
      out << ']';
      break;
    }
    case YAML::NodeType::Scalar: {
      const std::string& s = n.Scalar();
      const bool quoted = n.Tag() == "!";
      const bool number = !quoted && !s.empty() && s.find_first_not_of("0123456789") == std::string::npos;
      if (number || (!quoted && (s == "true" || s == "false"))) {
        out << s;
      } else {
        out << '"';
        for (char c : s) {
          if (c == '"' || c == '\\') out << '\\';
          out << c;
        }
        out << '"';
      }
      break;
    }
    default:
      out << "null";
  }
}

class Client {
 public:
  explicit Client(const Args& a) {
    std::string target;
    std::shared_ptr<grpc::ChannelCredentials> creds;
    if (auto address = a.Get("address")) {
      grpc::SslCredentialsOptions tls;
      if (auto ca = a.Get("tls-ca")) tls.pem_root_certs = Read(*ca);
      if (auto cert = a.Get("tls-cert")) tls.pem_cert_chain = Read(*cert);
      if (auto key = a.Get("tls-key")) tls.pem_private_key = Read(*key);
      target = *address;
      creds = grpc::SslCredentials(tls);
    } else {
      const char* env = std::getenv("LBCTL_SOCKET");
      target = "unix:" + a.Get("socket").value_or(env != nullptr ? env : "/run/lbd/lbd.sock");
      creds = grpc::InsecureChannelCredentials();
    }
    // Lists and stats of a large configuration exceed gRPC's default 4 MiB.
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(-1);
    args.SetMaxSendMessageSize(-1);
    stub_ = lb::v1::LoadBalancer::NewStub(grpc::CreateCustomChannel(target, creds, args));
    target_ = target;
    timeout_ = ParseNumber(a.Get("timeout").value_or("10"), "--timeout", 3600);
  }

  const std::string& target() const { return target_; }
  // The last failed call's message; quiet: failures are not printed (the caller shows them).
  const std::string& last_error() const { return last_error_; }
  void set_quiet(bool quiet) { quiet_ = quiet; }

  // Runs one RPC; on failure prints the error and returns its exit status.
  template <typename Req, typename Resp>
  int Call(grpc::Status (lb::v1::LoadBalancer::Stub::*rpc)(grpc::ClientContext*, const Req&, Resp*), const Req& req,
           Resp* resp) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(timeout_));
    const grpc::Status s = (stub_.get()->*rpc)(&ctx, req, resp);
    if (s.ok()) return 0;
    last_error_ = s.error_message();
    if (!quiet_) std::fprintf(stderr, "lbctl: %s\n", s.error_message().c_str());
    switch (s.error_code()) {
      case grpc::StatusCode::NOT_FOUND:
        return 3;
      case grpc::StatusCode::INVALID_ARGUMENT:
      case grpc::StatusCode::ALREADY_EXISTS:
      case grpc::StatusCode::FAILED_PRECONDITION:
        return 4;
      case grpc::StatusCode::UNAVAILABLE:
      case grpc::StatusCode::DEADLINE_EXCEEDED:
        if (!quiet_) std::fprintf(stderr, "lbctl: is lbd running? (tried %s)\n", target_.c_str());
        return 5;
      case grpc::StatusCode::RESOURCE_EXHAUSTED:
        return 6;
      default:
        return 1;
    }
  }

  static std::string Read(const std::string& path) {
    std::ifstream in(path);
    if (!in) throw UsageError{"cannot read " + path};
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

  lb::v1::LoadBalancer::Stub* operator->() { return stub_.get(); }

 private:
  std::unique_ptr<lb::v1::LoadBalancer::Stub> stub_;
  std::string last_error_;
  bool quiet_ = false;
  std::string target_;
  uint32_t timeout_;
};

int64_t NowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// `lbctl stats`: the node's counters, then its services and backends (stats_view).
void PrintStats(const lb::v1::Stats& out, uint32_t rows) {
  std::printf("generation %lu, flows %lu of %lu\n", (unsigned long)out.generation(), (unsigned long)out.flows(),
              (unsigned long)out.flow_capacity());
  std::printf("services %d, backends %lu, table memory %.1f of %.1f MiB\n\nevents (all workers):\n",
              out.services_size(), (unsigned long)out.backends(), double(out.table_memory_bytes()) / (1 << 20),
              double(out.table_memory_limit()) / (1 << 20));
  for (const auto& e : out.events()) std::printf("  %-24s %lu\n", e.name().c_str(), (unsigned long)e.value());
  std::printf("drops (all workers):\n");
  for (const auto& d : out.drops()) std::printf("  %-24s %lu\n", d.name().c_str(), (unsigned long)d.value());
  std::printf("workers:\n");
  for (const auto& w : out.workers()) {
    std::printf("  worker %u on lcore %u: %lu flows of %lu\n", w.worker(), w.lcore(), (unsigned long)w.flows(),
                (unsigned long)w.flow_capacity());
  }
  if (out.has_flow_sync()) {
    const auto& s = out.flow_sync();
    std::string peers;
    for (const auto& p : s.peers()) peers += (peers.empty() ? "" : ", ") + p;
    std::printf(
        "flow sync with %s:\n  sent %lu flows in %lu datagrams (%lu bytes), %lu send errors\n"
        "  received %lu flows in %lu datagrams, %lu datagrams rejected, %lu flows undelivered\n"
        "  journal: %lu flows (%lu not kept: full), %lu dumps sent to restarted peers\n"
        "  refused: %lu replayed and %lu stale datagrams, %lu dump requests, %lu flows over budget, "
        "%lu sessions on another's SNAT address\n",
        peers.c_str(), (unsigned long)s.flows_sent(), (unsigned long)s.datagrams_sent(), (unsigned long)s.bytes_sent(),
        (unsigned long)s.send_errors(), (unsigned long)s.flows_received(), (unsigned long)s.datagrams_received(),
        (unsigned long)s.datagrams_rejected(), (unsigned long)s.flows_undelivered(), (unsigned long)s.journal_flows(),
        (unsigned long)s.journal_full(), (unsigned long)s.dumps_sent(), (unsigned long)s.datagrams_replayed(),
        (unsigned long)s.datagrams_stale(), (unsigned long)s.dump_requests_refused(),
        (unsigned long)s.flows_over_budget(), (unsigned long)s.sessions_refused());
    std::printf("%s", RenderFlowSyncPeers(s, NowUnixMs()).c_str());
  }
  if (out.ports_size() > 0) std::printf("ports (their own counters):\n");
  for (const auto& p : out.ports()) {
    std::printf(
        "  %-9s %-20s %-9s link %-4s rx %lu packets %lu bytes, tx %lu packets %lu bytes; missed %lu, "
        "rx errors %lu, tx errors %lu, no mbuf %lu\n",
        p.role().c_str(), p.name().c_str(), p.driver().c_str(), p.link_up() ? "up" : "down",
        (unsigned long)p.rx_packets(), (unsigned long)p.rx_bytes(), (unsigned long)p.tx_packets(),
        (unsigned long)p.tx_bytes(), (unsigned long)p.rx_missed(), (unsigned long)p.rx_errors(),
        (unsigned long)p.tx_errors(), (unsigned long)p.rx_nombuf());
  }
  if (out.snat_size() > 0) std::printf("SNAT ports (NAT mode):\n");
  for (const auto& a : out.snat()) {
    std::printf("  %-24s %lu of %lu in use\n", a.address().c_str(), (unsigned long)a.ports_in_use(),
                (unsigned long)a.ports_total());
  }
  std::printf("%s", RenderTraffic(out, rows).c_str());
}

// `lbctl stats --watch`: a frame of rates per second every --interval, redrawn in place
// on a terminal (one after another otherwise), until Ctrl-C or --count frames. Once
// started, it outlives lbd's restarts: a frame says lbd is unreachable, and the rates
// start again from the first answer after it.
int WatchStats(Client& c, const Args& a, const lb::v1::GetStatsRequest& req, uint32_t rows) {
  using Stub = lb::v1::LoadBalancer::Stub;
  const uint32_t interval_ms = uint32_t(ParseSeconds(a.Get("interval").value_or("1"), "--interval") * 1000);
  const uint32_t frames = ParseNumber(a.Get("count").value_or("0"), "--count", UINT32_MAX);
  const bool tty = isatty(STDOUT_FILENO) == 1;
  std::optional<lb::v1::Stats> before(std::in_place);
  if (const int rc = c.Call(&Stub::GetStats, req, &*before); rc != 0) return rc;
  c.set_quiet(true);
  auto then = std::chrono::steady_clock::now();
  for (uint32_t n = 0; frames == 0 || n < frames; ++n) {
    std::this_thread::sleep_for(std::chrono::milliseconds(interval_ms));
    lb::v1::Stats after;
    const bool answered = c.Call(&Stub::GetStats, req, &after) == 0;
    const auto now = std::chrono::steady_clock::now();
    const std::time_t wall = std::time(nullptr);
    char clock[16];
    std::strftime(clock, sizeof(clock), "%H:%M:%S", std::localtime(&wall));
    const std::string title = "lbd at " + c.target() + ", " + clock;
    std::string text;
    if (!answered) {
      text = title + ": no answer (" + c.last_error() + "); asking again every " + Human(interval_ms / 1000.0) + " s\n";
    } else if (!before) {
      text = title + ": answering again; rates from the next frame\n";
    } else {
      const double seconds = std::chrono::duration<double>(now - then).count();
      text = RenderWatch(*before, after,
                         {.seconds = seconds,
                          .rows = rows,
                          .title = title + ", per second over the last " + Human(seconds) + " s",
                          .now_unix_ms = NowUnixMs()});
    }
    std::printf("%s%s%s", tty ? "\033[H\033[2J" : "", text.c_str(), tty ? "" : "\n");
    std::fflush(stdout);
    before = answered ? std::optional(std::move(after)) : std::nullopt;
    then = now;
  }
  return 0;
}

struct Verb {
  const char* usage;  // shown by VERB --help
  size_t positional;  // exact number of positional arguments after the verb words
  std::function<int(Client&, const Args&, bool json)> run;
};

int PrintService(int rc, const lb::v1::Service& s, bool json) {
  if (rc != 0) return rc;
  if (json) {
    std::printf("%s", ToJson(s).c_str());
  } else {
    google::protobuf::RepeatedPtrField<lb::v1::Service> one;
    *one.Add() = s;
    PrintServices(one);
  }
  return 0;
}

uint32_t PortOption(const Args& a) { return ParseNumber(a.Get("port").value_or("0"), "--port", 65535); }

int SetState(Client& c, const Args& a, bool json, lb::v1::BackendState state) {
  lb::v1::UpdateBackendRequest req;
  *req.mutable_key() = ParseService(a.positional[0]);
  req.set_address(a.positional[1]);
  req.set_port(PortOption(a));
  req.set_state(state);
  lb::v1::Service out;
  return PrintService(c.Call(&lb::v1::LoadBalancer::Stub::UpdateBackend, req, &out), out, json);
}

int SetDrain(Client& c, bool json, bool drained) {
  lb::v1::SetDrainRequest req;
  req.set_drained(drained);
  lb::v1::Health out;
  const int rc = c.Call(&lb::v1::LoadBalancer::Stub::SetDrain, req, &out);
  if (rc == 0) std::printf("%s", json ? ToJson(out).c_str() : drained ? "drained\n" : "undrained\n");
  return rc;
}

const std::map<std::string, Verb>& Verbs() {
  using Stub = lb::v1::LoadBalancer::Stub;
  static const std::map<std::string, Verb> verbs = {
      {"service list",
       {"lbctl service list [-o json]", 0,
        [](Client& c, const Args&, bool json) {
          lb::v1::ListServicesResponse out;
          const int rc = c.Call(&Stub::ListServices, lb::v1::ListServicesRequest{}, &out);
          if (rc == 0) json ? (void)std::printf("%s", ToJson(out).c_str()) : PrintServices(out.services());
          return rc;
        }}},
      {"service get",
       {"lbctl service get SERVICE", 1,
        [](Client& c, const Args& a, bool json) {
          lb::v1::GetServiceRequest req;
          *req.mutable_key() = ParseService(a.positional[0]);
          lb::v1::Service out;
          return PrintService(c.Call(&Stub::GetService, req, &out), out, json);
        }}},
      {"service add",
       {"lbctl service add SERVICE [--mode dsr-ipip|dsr-gue|nat] [--hash 5-tuple|source-ip|source-ip+dest-port]\n"
        "                  [--table-size PRIME] [--source-range CIDR]... [--backend ADDRESS[@WEIGHT]]...",
        1,
        [](Client& c, const Args& a, bool json) {
          lb::v1::CreateServiceRequest req;
          *req.mutable_service()->mutable_key() = ParseService(a.positional[0]);
          ApplyServiceOptions(a, *req.mutable_service());
          lb::v1::Service out;
          return PrintService(c.Call(&Stub::CreateService, req, &out), out, json);
        }}},
      {"service update",
       {"lbctl service update SERVICE [--mode M] [--hash H] [--table-size PRIME] [--source-range CIDR|none]...\n"
        "                  (backends are kept)",
        1,
        [](Client& c, const Args& a, bool json) {
          lb::v1::GetServiceRequest get;
          *get.mutable_key() = ParseService(a.positional[0]);
          lb::v1::Service current;
          if (int rc = c.Call(&Stub::GetService, get, &current); rc != 0) return rc;
          lb::v1::UpdateServiceRequest req;
          *req.mutable_service() = current;
          req.mutable_service()->clear_backends();
          ApplyServiceOptions(a, *req.mutable_service());
          lb::v1::Service out;
          return PrintService(c.Call(&Stub::UpdateService, req, &out), out, json);
        }}},
      {"service delete",
       {"lbctl service delete SERVICE", 1,
        [](Client& c, const Args& a, bool) {
          lb::v1::DeleteServiceRequest req;
          *req.mutable_key() = ParseService(a.positional[0]);
          lb::v1::DeleteServiceResponse out;
          return c.Call(&Stub::DeleteService, req, &out);
        }}},
      {"backend add",
       {"lbctl backend add SERVICE ADDRESS [--port N] [--weight N]", 2,
        [](Client& c, const Args& a, bool json) {
          lb::v1::AddBackendRequest req;
          *req.mutable_key() = ParseService(a.positional[0]);
          req.mutable_backend()->set_address(a.positional[1]);
          req.mutable_backend()->set_port(PortOption(a));
          if (auto w = a.Get("weight")) req.mutable_backend()->set_weight(ParseNumber(*w, "--weight", 65535));
          lb::v1::Service out;
          return PrintService(c.Call(&Stub::AddBackend, req, &out), out, json);
        }}},
      {"backend remove",
       {"lbctl backend remove SERVICE ADDRESS [--port N]", 2,
        [](Client& c, const Args& a, bool json) {
          lb::v1::RemoveBackendRequest req;
          *req.mutable_key() = ParseService(a.positional[0]);
          req.set_address(a.positional[1]);
          req.set_port(PortOption(a));
          lb::v1::Service out;
          return PrintService(c.Call(&Stub::RemoveBackend, req, &out), out, json);
        }}},
      {"backend set-weight",
       {"lbctl backend set-weight SERVICE ADDRESS WEIGHT [--port N]", 3,
        [](Client& c, const Args& a, bool json) {
          lb::v1::UpdateBackendRequest req;
          *req.mutable_key() = ParseService(a.positional[0]);
          req.set_address(a.positional[1]);
          req.set_port(PortOption(a));
          req.set_weight(ParseNumber(a.positional[2], "WEIGHT", 65535));
          lb::v1::Service out;
          return PrintService(c.Call(&Stub::UpdateBackend, req, &out), out, json);
        }}},
      {"backend drain",
       {"lbctl backend drain SERVICE ADDRESS [--port N]", 2,
        [](Client& c, const Args& a, bool json) { return SetState(c, a, json, lb::v1::DRAINING); }}},
      {"backend set-state",
       {"lbctl backend set-state SERVICE ADDRESS active|draining|down [--port N]", 3,
        [](Client& c, const Args& a, bool json) { return SetState(c, a, json, ParseState(a.positional[2])); }}},
      {"apply",
       {"lbctl apply -f FILE [--generation N] [--partial]   FILE: YAML or JSON, the ApplyRequest of "
        "proto/lb/v1/lb.proto;\n"
        "      all or nothing unless --partial (then each bad service is refused alone and listed)",
        0,
        [](Client& c, const Args& a, bool json) {
          auto file = a.Get("file");
          if (!file) throw UsageError{"apply needs -f FILE"};
          YAML::Node doc;
          try {
            doc = YAML::Load(Client::Read(*file));
          } catch (const YAML::Exception& e) {
            throw UsageError{*file + ": " + e.what()};
          }
          std::ostringstream js;
          YamlToJson(doc, js);
          lb::v1::ApplyRequest req;
          const auto parsed = google::protobuf::util::JsonStringToMessage(js.str(), &req);
          if (!parsed.ok()) throw UsageError{*file + ": " + std::string(parsed.message())};
          if (auto g = a.Get("generation")) req.set_generation(ParseNumber(*g, "--generation", UINT32_MAX));
          if (a.Get("partial")) req.set_partial(true);
          lb::v1::ApplyResponse out;
          const int rc = c.Call(&Stub::Apply, req, &out);
          if (rc != 0) return rc;
          if (json) {
            std::printf("%s", ToJson(out).c_str());
          } else {
            std::printf("generation %lu: %u created, %u updated, %u deleted, %u unchanged, %u refused\n",
                        (unsigned long)out.generation(), out.created(), out.updated(), out.deleted(), out.unchanged(),
                        out.refused());
            for (const auto& r : out.results()) {
              if (r.outcome() != lb::v1::REFUSED) continue;
              std::printf("  refused %s: %s: %s\n", ServiceName(r.key()).c_str(), r.field().c_str(),
                          r.reason().c_str());
            }
          }
          return out.refused() > 0 ? 1 : 0;
        }}},
      {"stats",
       {"lbctl stats [--top N] [--service SERVICE] [-o json]\n"
        "       lbctl stats --watch [--interval SECONDS] [--count FRAMES] [--top N]\n"
        "  --top N            the N busiest services and backends (default 10)\n"
        "  --service SERVICE  this service, with every backend\n"
        "  --watch            rates per second, refreshed in place like top (Ctrl-C ends it)\n"
        "  --interval SECONDS between frames (default 1); --count FRAMES: stop after so many (0: never)",
        0,
        [](Client& c, const Args& a, bool json) {
          const uint32_t top = ParseNumber(a.Get("top").value_or("10"), "--top", 1000000);
          lb::v1::GetStatsRequest req;
          req.set_top_backends(top);
          if (auto service = a.Get("service")) *req.mutable_service() = ParseService(*service);
          if (a.Get("watch")) {
            if (json) throw UsageError{"--watch draws a table: not with -o json"};
            return WatchStats(c, a, req, top);
          }
          lb::v1::Stats out;
          const int rc = c.Call(&Stub::GetStats, req, &out);
          if (rc != 0) return rc;
          if (json) {
            std::printf("%s", ToJson(out).c_str());
            return 0;
          }
          PrintStats(out, req.has_service() ? UINT32_MAX : top);
          return 0;
        }}},
      {"health",
       {"lbctl health [-o json]   (exit 0 when healthy, 1 when not)", 0,
        [](Client& c, const Args&, bool json) {
          lb::v1::Health out;
          const int rc = c.Call(&Stub::GetHealth, lb::v1::GetHealthRequest{}, &out);
          if (rc != 0) return rc;
          if (json) {
            std::printf("%s", ToJson(out).c_str());
          } else {
            std::printf("%s: %u of %u workers alive, links %s, generation %lu, flow hash %s\n",
                        out.healthy() ? "healthy" : "UNHEALTHY", out.workers_alive(), out.workers(),
                        out.links_up() ? "up" : "down", (unsigned long)out.generation(), out.flow_hash().c_str());
            for (const auto& p : out.problems()) std::printf("  - %s\n", p.c_str());
          }
          return out.healthy() ? 0 : 1;
        }}},
      {"node drain",
       {"lbctl node drain   (lb-bird-gen withdraws the node's VIPs; forwarding goes on)", 0,
        [](Client& c, const Args&, bool json) { return SetDrain(c, json, true); }}},
      {"node undrain",
       {"lbctl node undrain", 0, [](Client& c, const Args&, bool json) { return SetDrain(c, json, false); }}},
      {"explain",
       {"lbctl explain tcp|udp SRC SPORT DST DPORT", 5,
        [](Client& c, const Args& a, bool json) {
          lb::v1::ExplainFlowRequest req;
          req.set_protocol(ParseProtocol(a.positional[0]));
          req.set_source(a.positional[1]);
          req.set_source_port(ParseNumber(a.positional[2], "SPORT", 65535));
          req.set_destination(a.positional[3]);
          req.set_destination_port(ParseNumber(a.positional[4], "DPORT", 65535));
          lb::v1::ExplainFlowResponse out;
          const int rc = c.Call(&Stub::ExplainFlow, req, &out);
          if (rc != 0) return rc;
          if (json) {
            std::printf("%s", ToJson(out).c_str());
            return 0;
          }
          std::printf("service:  %s\n", out.has_service() ? ServiceName(out.service()).c_str() : "(none)");
          std::printf("backend:  %s\n", out.has_backend() ? out.backend().address().c_str() : "(none)");
          std::printf("decision: %s\n", out.decision().c_str());
          if (out.has_maglev_backend()) std::printf("maglev:   %s\n", out.maglev_backend().address().c_str());
          return 0;
        }}},
  };
  return verbs;
}

int Main(int argc, char** argv) {
  std::vector<std::string> words(argv + 1, argv + argc);
  if (words.size() == 1 && words[0] == "--version") {
    std::printf("lbctl %s\n", std::string(control::BuildVersion()).c_str());
    return 0;
  }
  try {
    Args args = Parse(words);
    if (args.positional.empty()) {
      std::printf("%s", kGlobalHelp);
      return args.help ? 0 : 2;
    }
    // The verb is one or two words ("stats", "service list").
    const Verb* verb = nullptr;
    size_t words_used = 0;
    for (size_t n : {size_t{2}, size_t{1}}) {
      if (args.positional.size() < n) continue;
      std::string name = args.positional[0];
      if (n == 2) name += " " + args.positional[1];
      if (auto it = Verbs().find(name); it != Verbs().end()) {
        verb = &it->second;
        words_used = n;
        break;
      }
    }
    if (verb == nullptr) throw UsageError{"unknown verb \"" + args.positional[0] + "\" (lbctl --help lists them)"};
    if (args.help) {
      std::printf("Usage: %s\n", verb->usage);
      return 0;
    }
    args.positional.erase(args.positional.begin(), args.positional.begin() + long(words_used));
    if (args.positional.size() != verb->positional) {
      throw UsageError{"wrong number of arguments. Usage: " + std::string(verb->usage)};
    }
    const std::string output = args.Get("output").value_or("table");
    if (output != "table" && output != "json") throw UsageError{"-o: table or json"};
    Client client(args);
    return verb->run(client, args, output == "json");
  } catch (const UsageError& e) {
    std::fprintf(stderr, "lbctl: %s\n", e.message.c_str());
    return 2;
  }
}

}  // namespace
}  // namespace lb::tools

int main(int argc, char** argv) { return lb::tools::Main(argc, argv); }
