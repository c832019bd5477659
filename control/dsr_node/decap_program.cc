#include "control/dsr_node/decap_program.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <string_view>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_format.h"
#include "dataplane/bpf/dsr_decap.skel.h"

namespace lb::control::dsr_node {
namespace {

// libbpf's own messages: kept (the last 4 kB of this thread's latest call) for the
// error that call returns, instead of printed. Its warnings include conditions handled
// here ("Exclusivity flag on" for a qdisc that exists), which must not reach the log.
thread_local std::string libbpf_messages;

int KeepLibbpfMessage(libbpf_print_level level, const char* format, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  char line[4096];
  const int n = vsnprintf(line, sizeof(line), format, args);
  libbpf_messages += line;
  if (libbpf_messages.size() > 4096) libbpf_messages.erase(0, libbpf_messages.size() - 4096);  // the end says why
  return n;
}

// libbpf returns -errno; the message says what libbpf said about it.
absl::Status BpfError(int ret, const std::string& what) {
  std::string said = std::move(libbpf_messages);
  libbpf_messages.clear();
  absl::StripAsciiWhitespace(&said);
  return absl::InternalError(
      absl::StrFormat("%s: %s%s%s", what, std::strerror(-ret), said.empty() ? "" : "; libbpf: ", said));
}

// Every libbpf call starts with this: no stale message for its error.
void BeginLibbpfCall() {
  static const bool installed = [] {
    libbpf_set_print(KeepLibbpfMessage);
    return true;
  }();
  (void)installed;
  libbpf_messages.clear();
}

dsr_decap_vip KeyOf(const IpAddress& address) {
  dsr_decap_vip key{};
  if (address.IsV4()) {
    key.family = DSR_DECAP_FAMILY_V4;
    std::memcpy(key.address, address.V4Bytes(), 4);
  } else {
    key.family = DSR_DECAP_FAMILY_V6;
    std::memcpy(key.address, address.bytes.data(), 16);
  }
  return key;
}

bpf_tc_hook IngressHook(int ifindex) {
  bpf_tc_hook hook{};
  hook.sz = sizeof(hook);
  hook.ifindex = ifindex;
  hook.attach_point = BPF_TC_INGRESS;
  return hook;
}

bpf_tc_opts OurFilter(int prog_fd, uint32_t flags) {
  bpf_tc_opts opts{};
  opts.sz = sizeof(opts);
  opts.handle = kFilterHandle;
  opts.priority = kFilterPriority;
  opts.prog_fd = prog_fd;
  opts.flags = flags;
  return opts;
}

}  // namespace

const char* DecapCounterName(int index) {
  static constexpr const char* kNames[DSR_DECAP_COUNTERS] = {"decapsulated", "not_tunnel", "not_a_vip",
                                                             "other_family", "malformed",  "failed"};
  return index >= 0 && index < DSR_DECAP_COUNTERS ? kNames[index] : "unknown";
}

absl::StatusOr<std::unique_ptr<DecapProgram>> DecapProgram::Load(uint16_t gue_port) {
  BeginLibbpfCall();
  dsr_decap_bpf* skeleton = dsr_decap_bpf::open();
  if (skeleton == nullptr) return BpfError(-errno, "opening the dsr_decap BPF object");
  skeleton->rodata->gue_port = gue_port;
  if (const int ret = dsr_decap_bpf::load(skeleton); ret != 0) {
    dsr_decap_bpf::destroy(skeleton);
    return BpfError(ret, "loading the dsr_decap BPF program (needs CAP_BPF or CAP_SYS_ADMIN)");
  }
  std::unique_ptr<DecapProgram> program(new DecapProgram(skeleton));
  bpf_prog_info info{};
  uint32_t info_len = sizeof(info);
  if (const int ret = bpf_obj_get_info_by_fd(program->prog_fd(), &info, &info_len); ret != 0)
    return BpfError(ret, "reading the dsr_decap program's id");
  program->prog_id_ = info.id;
  return program;
}

DecapProgram::DecapProgram(dsr_decap_bpf* skeleton) : skeleton_(skeleton) {}

DecapProgram::~DecapProgram() { dsr_decap_bpf::destroy(skeleton_); }

int DecapProgram::prog_fd() const { return bpf_program__fd(skeleton_->progs.dsr_decap); }

absl::Status DecapProgram::SetVips(const std::vector<IpAddress>& vips) {
  if (vips.size() > DSR_DECAP_MAX_VIPS)
    return absl::ResourceExhaustedError(
        absl::StrFormat("%d VIPs on one pod; at most %d", vips.size(), DSR_DECAP_MAX_VIPS));
  bpf_map* map = skeleton_->maps.vips;
  const uint8_t present = 1;
  std::vector<dsr_decap_vip> wanted;
  for (const IpAddress& vip : vips) {
    wanted.push_back(KeyOf(vip));
    if (const int ret =
            bpf_map__update_elem(map, &wanted.back(), sizeof(dsr_decap_vip), &present, sizeof(present), BPF_ANY);
        ret != 0)
      return BpfError(ret, "adding VIP " + vip.ToString());
  }
  // Then the ones no longer wanted: added first, so a VIP kept is never missing.
  std::vector<dsr_decap_vip> stale;
  dsr_decap_vip key{}, next{};
  const void* cursor = nullptr;
  while (bpf_map__get_next_key(map, cursor, &next, sizeof(next)) == 0) {
    const bool kept = std::any_of(wanted.begin(), wanted.end(),
                                  [&](const dsr_decap_vip& w) { return std::memcmp(&w, &next, sizeof(w)) == 0; });
    if (!kept) stale.push_back(next);
    key = next;
    cursor = &key;
  }
  for (const dsr_decap_vip& old : stale) {
    if (const int ret = bpf_map__delete_elem(map, &old, sizeof(old), 0); ret != 0 && ret != -ENOENT)
      return BpfError(ret, "removing a VIP");
  }
  return absl::OkStatus();
}

absl::Status DecapProgram::AttachIngress(int ifindex) {
  BeginLibbpfCall();
  bpf_tc_hook hook = IngressHook(ifindex);
  if (const int ret = bpf_tc_hook_create(&hook); ret != 0 && ret != -EEXIST)
    return BpfError(ret, absl::StrFormat("creating the clsact qdisc on ifindex %d", ifindex));
  BeginLibbpfCall();
  bpf_tc_opts opts = OurFilter(prog_fd(), BPF_TC_F_REPLACE);
  if (const int ret = bpf_tc_attach(&hook, &opts); ret != 0)
    return BpfError(ret, absl::StrFormat("attaching dsr_decap to ifindex %d's ingress", ifindex));
  return absl::OkStatus();
}

namespace {

// Sums the per-CPU counters map `map_fd`.
DecapCounters SumCounters(int map_fd) {
  DecapCounters totals{};
  const int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) return totals;
  std::vector<uint64_t> per_cpu(size_t(cpus), 0);
  for (uint32_t i = 0; i < DSR_DECAP_COUNTERS; ++i) {
    if (bpf_map_lookup_elem(map_fd, &i, per_cpu.data()) != 0) continue;
    for (uint64_t v : per_cpu) totals[i] += v;
  }
  return totals;
}

}  // namespace

DecapCounters DecapProgram::Counters() const { return SumCounters(bpf_map__fd(skeleton_->maps.counters)); }

absl::StatusOr<DecapCounters> CountersOfProgram(uint32_t prog_id) {
  BeginLibbpfCall();
  const int prog = bpf_prog_get_fd_by_id(prog_id);
  if (prog < 0) return BpfError(-errno, absl::StrFormat("program %d", prog_id));
  uint32_t map_ids[8] = {};
  bpf_prog_info info{};
  info.nr_map_ids = 8;
  info.map_ids = reinterpret_cast<uint64_t>(map_ids);
  uint32_t len = sizeof(info);
  const int ret = bpf_obj_get_info_by_fd(prog, &info, &len);
  close(prog);
  if (ret != 0) return BpfError(ret, absl::StrFormat("program %d's maps", prog_id));
  for (uint32_t i = 0; i < std::min<uint32_t>(info.nr_map_ids, 8); ++i) {
    const int map = bpf_map_get_fd_by_id(map_ids[i]);
    if (map < 0) continue;
    bpf_map_info map_info{};
    uint32_t map_len = sizeof(map_info);
    const bool counters = bpf_obj_get_info_by_fd(map, &map_info, &map_len) == 0 &&
                          std::string_view(map_info.name) == "counters" && map_info.type == BPF_MAP_TYPE_PERCPU_ARRAY;
    DecapCounters totals{};
    if (counters) totals = SumCounters(map);
    close(map);
    if (counters) return totals;
  }
  return absl::NotFoundError(absl::StrFormat("program %d has no counters map: not dsr_decap", prog_id));
}

absl::StatusOr<uint32_t> AttachedProgramId(int ifindex) {
  BeginLibbpfCall();
  bpf_tc_hook hook = IngressHook(ifindex);
  bpf_tc_opts opts = OurFilter(0, 0);
  const int ret = bpf_tc_query(&hook, &opts);
  // ENOENT: no such filter; EINVAL: no clsact qdisc at all.
  if (ret == -ENOENT || ret == -EINVAL) return 0;
  if (ret != 0) return BpfError(ret, absl::StrFormat("querying ifindex %d's ingress filters", ifindex));
  return opts.prog_id;
}

absl::Status DetachIngress(int ifindex) {
  BeginLibbpfCall();
  bpf_tc_hook hook = IngressHook(ifindex);
  bpf_tc_opts opts = OurFilter(0, 0);
  const int ret = bpf_tc_detach(&hook, &opts);
  if (ret != 0 && ret != -ENOENT && ret != -EINVAL)
    return BpfError(ret, absl::StrFormat("removing dsr_decap from ifindex %d", ifindex));
  return absl::OkStatus();
}

}  // namespace lb::control::dsr_node
