#include "control/lbd/privileges.h"

#include <dirent.h>
#include <linux/capability.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <optional>
#include <thread>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace lb::control {
namespace {

constexpr const char* kNames[] = {"CHOWN",
                                  "DAC_OVERRIDE",
                                  "DAC_READ_SEARCH",
                                  "FOWNER",
                                  "FSETID",
                                  "KILL",
                                  "SETGID",
                                  "SETUID",
                                  "SETPCAP",
                                  "LINUX_IMMUTABLE",
                                  "NET_BIND_SERVICE",
                                  "NET_BROADCAST",
                                  "NET_ADMIN",
                                  "NET_RAW",
                                  "IPC_LOCK",
                                  "IPC_OWNER",
                                  "SYS_MODULE",
                                  "SYS_RAWIO",
                                  "SYS_CHROOT",
                                  "SYS_PTRACE",
                                  "SYS_PACCT",
                                  "SYS_ADMIN",
                                  "SYS_BOOT",
                                  "SYS_NICE",
                                  "SYS_RESOURCE",
                                  "SYS_TIME",
                                  "SYS_TTY_CONFIG",
                                  "MKNOD",
                                  "LEASE",
                                  "AUDIT_WRITE",
                                  "AUDIT_CONTROL",
                                  "SETFCAP",
                                  "MAC_OVERRIDE",
                                  "MAC_ADMIN",
                                  "SYSLOG",
                                  "WAKE_ALARM",
                                  "BLOCK_SUSPEND",
                                  "AUDIT_READ",
                                  "PERFMON",
                                  "BPF",
                                  "CHECKPOINT_RESTORE"};
constexpr int kLastCap = int(std::size(kNames)) - 1;

// What every thread's handler applies: set before the signals, read in the handlers.
__user_cap_data_struct g_data[_LINUX_CAPABILITY_U32S_3];
uint64_t g_keep = 0;
std::atomic<int> g_done{0};
std::atomic<int> g_failed{0};

// Raw syscalls only: this runs in a signal handler, on any thread.
void DropOwn(int) {
  const int saved_errno = errno;
  bool ok = true;
  for (int cap = 0; cap <= kLastCap; ++cap) {
    // Dropping from the bounding set needs CAP_SETPCAP (dropped last, by capset below),
    // which a container may not have been given: then its bounding set is the runtime's,
    // and no_new_privs keeps an exec from gaining anything from it anyway.
    if (!(g_keep >> cap & 1) && syscall(SYS_prctl, PR_CAPBSET_READ, cap, 0, 0, 0) == 1) {
      syscall(SYS_prctl, PR_CAPBSET_DROP, cap, 0, 0, 0);
    }
  }
  syscall(SYS_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  if (syscall(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) ok = false;
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  if (syscall(SYS_capset, &header, g_data) != 0) ok = false;
  if (!ok) g_failed.fetch_add(1, std::memory_order_relaxed);
  g_done.fetch_add(1, std::memory_order_release);
  errno = saved_errno;
}

std::vector<pid_t> Threads() {
  std::vector<pid_t> out;
  DIR* d = opendir("/proc/self/task");
  if (d == nullptr) return out;
  while (const dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') out.push_back(pid_t(std::atoi(e->d_name)));
  }
  closedir(d);
  return out;
}

// A thread's capability set `field` ("CapEff", "CapPrm", "CapBnd") from its status file.
std::optional<uint64_t> ThreadSet(pid_t tid, const std::string& field) {
  std::ifstream status(absl::StrFormat("/proc/self/task/%d/status", tid));
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::strtoull(line.c_str() + field.size() + 1, nullptr, 16);
  }
  return std::nullopt;
}

}  // namespace

std::vector<int> RuntimeCapabilities() { return {CAP_NET_ADMIN, CAP_NET_RAW, CAP_IPC_LOCK}; }

std::string CapabilityNames(uint64_t set) {
  std::vector<std::string> names;
  for (int cap = 0; cap < 64; ++cap) {
    if (set >> cap & 1) names.push_back(cap <= kLastCap ? kNames[cap] : absl::StrFormat("%d", cap));
  }
  return names.empty() ? "none" : absl::StrJoin(names, ",");
}

absl::StatusOr<uint64_t> DropCapabilities(const std::vector<int>& keep) {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct current[_LINUX_CAPABILITY_U32S_3] = {};
  if (syscall(SYS_capget, &header, current) != 0) {
    return absl::InternalError(absl::StrFormat("capget: %s", std::strerror(errno)));
  }
  const uint64_t permitted = uint64_t(current[1].permitted) << 32 | current[0].permitted;
  uint64_t wanted = 0;
  for (int cap : keep) wanted |= uint64_t{1} << cap;
  g_keep = wanted & permitted;
  for (int i = 0; i < _LINUX_CAPABILITY_U32S_3; ++i) {
    g_data[i] = {uint32_t(g_keep >> (32 * i)), uint32_t(g_keep >> (32 * i)), 0};
  }
  // Every thread, this one too, drops its own, in the handler of SIGRTMIN + 7 (which
  // neither glibc nor EAL uses).
  const int signal = SIGRTMIN + 7;
  struct sigaction action {};
  action.sa_handler = DropOwn;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  if (sigaction(signal, &action, nullptr) != 0) {
    return absl::InternalError(absl::StrFormat("sigaction: %s", std::strerror(errno)));
  }
  const pid_t self = pid_t(syscall(SYS_gettid));
  // Threads may start meanwhile (and inherit whichever sets their creator had): a few
  // rounds, until every thread was reached.
  std::vector<pid_t> reached;
  for (int round = 0; round < 5; ++round) {
    std::vector<pid_t> threads = Threads();
    std::erase_if(threads, [&](pid_t t) { return std::ranges::find(reached, t) != reached.end(); });
    if (threads.empty()) break;
    const int before = g_done.load(std::memory_order_acquire);
    int signalled = 0;
    for (pid_t t : threads) {
      if (t == self) continue;
      if (syscall(SYS_tgkill, getpid(), t, signal) == 0) ++signalled;
      reached.push_back(t);
    }
    if (std::ranges::find(threads, self) != threads.end()) {
      DropOwn(0);
      ++signalled;
      reached.push_back(self);
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (g_done.load(std::memory_order_acquire) - before < signalled && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  // Ignored from now on, not restored: a signal still pending for a thread that never ran
  // the handler must not take the default action (which ends the process).
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  sigaction(signal, &ignore, nullptr);
  if (g_failed.load() != 0) {
    return absl::PermissionDeniedError(
        absl::StrFormat("%d thread(s) could not drop their capabilities", g_failed.load()));
  }
  // Every thread, checked (the bounding set is as small as CAP_SETPCAP allowed).
  for (pid_t t : Threads()) {
    for (const char* field : {"CapEff", "CapPrm"}) {
      const auto set = ThreadSet(t, field);
      if (set && (*set & ~g_keep) != 0) {
        return absl::PermissionDeniedError(absl::StrFormat("thread %d still has %s %s (it blocks signal %d?)", t, field,
                                                           CapabilityNames(*set & ~g_keep), signal));
      }
    }
  }
  return g_keep;
}

}  // namespace lb::control
