#include "control/dsr_node/pod_network.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/if_addr.h>
#include <net/if.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <algorithm>
#include <map>
#include <set>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "control/rtnetlink.h"

namespace lb::control::dsr_node {
namespace {

absl::Status Errno(const std::string& what) {
  return absl::InternalError(absl::StrFormat("%s: %s", what, std::strerror(errno)));
}

// A file descriptor closed on scope exit.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

uint8_t HostLength(const IpAddress& a) { return a.IsV4() ? 32 : 128; }

// The first line of a file, or "" when it cannot be read.
std::string ReadLine(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

}  // namespace

std::string NetnsId::ToString() const { return absl::StrFormat("net:[%d] (dev %d)", ino, dev); }

absl::StatusOr<NetnsId> NetnsIdOf(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return Errno("stat " + path);
  return NetnsId{uint64_t(st.st_dev), uint64_t(st.st_ino)};
}

std::vector<NetnsRef> ListNetns(const std::string& proc_dir) {
  std::map<NetnsId, std::string> found;
  const auto self = NetnsIdOf(proc_dir + "/thread-self/ns/net");
  DIR* dir = opendir(proc_dir.c_str());
  if (dir == nullptr) return {};
  while (const dirent* entry = readdir(dir)) {
    uint32_t pid = 0;
    if (!absl::SimpleAtoi(entry->d_name, &pid)) continue;
    const std::string path = absl::StrFormat("%s/%d/ns/net", proc_dir, pid);
    const auto id = NetnsIdOf(path);  // fails for a process that just ended, or a kernel thread
    if (!id.ok() || (self.ok() && *id == *self)) continue;
    found.emplace(*id, path);
  }
  closedir(dir);
  std::vector<NetnsRef> out;
  for (auto& [id, path] : found) out.push_back({id, std::move(path)});
  return out;
}

absl::Status RunInNetns(const NetnsRef& ns, absl::FunctionRef<absl::Status()> fn) {
  Fd fd(open(ns.path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return Errno("open " + ns.path);
  struct stat st {};
  if (fstat(fd.get(), &st) != 0) return Errno("fstat " + ns.path);
  if (NetnsId{uint64_t(st.st_dev), uint64_t(st.st_ino)} != ns.id)
    return absl::NotFoundError(absl::StrFormat("%s is no longer %s", ns.path, ns.id.ToString()));
  absl::Status result;
  std::thread([&] {
    if (setns(fd.get(), CLONE_NEWNET) != 0) {
      result = Errno("setns " + ns.path + " (needs CAP_SYS_ADMIN)");
      return;
    }
    result = fn();
  }).join();
  return result;
}

absl::StatusOr<std::vector<InterfaceAddress>> ListAddresses() {
  auto rtnl = rtnl::Socket::Open();
  if (!rtnl.ok()) return rtnl.status();
  std::vector<InterfaceAddress> out;
  const absl::Status dumped = rtnl->Dump(RTM_GETADDR, AF_UNSPEC, [&](const nlmsghdr& h) {
    if (h.nlmsg_type != RTM_NEWADDR) return;
    const auto* ifa = reinterpret_cast<const ifaddrmsg*>(NLMSG_DATA(&h));
    if (ifa->ifa_family != AF_INET && ifa->ifa_family != AF_INET6) return;
    InterfaceAddress a;
    a.ifindex = int(ifa->ifa_index);
    a.prefix_len = ifa->ifa_prefixlen;
    bool have_local = false, have_address = false;
    IpAddress local, address;
    int left = int(IFA_PAYLOAD(&h));
    for (auto* rta = IFA_RTA(ifa); RTA_OK(rta, left); rta = RTA_NEXT(rta, left)) {
      const size_t len = RTA_PAYLOAD(rta);
      const bool v4 = ifa->ifa_family == AF_INET;
      if ((rta->rta_type == IFA_LOCAL || rta->rta_type == IFA_ADDRESS) && len == (v4 ? 4u : 16u)) {
        const IpAddress ip = v4 ? IpAddress::FromV4Bytes(RTA_DATA(rta)) : IpAddress::FromV6Bytes(RTA_DATA(rta));
        (rta->rta_type == IFA_LOCAL ? local : address) = ip;
        (rta->rta_type == IFA_LOCAL ? have_local : have_address) = true;
      } else if (rta->rta_type == IFA_PROTO && len == 1) {
        a.proto = *static_cast<const uint8_t*>(RTA_DATA(rta));
      }
    }
    if (!have_local && !have_address) return;
    a.address = have_local ? local : address;  // IFA_LOCAL is this end of a point-to-point link
    out.push_back(a);
  });
  if (!dumped.ok()) return dumped;
  return out;
}

absl::Status AddVipAddress(int ifindex, const IpAddress& vip) {
  auto rtnl = rtnl::Socket::Open();
  if (!rtnl.ok()) return rtnl.status();
  return rtnl::AddAddress(*rtnl, ifindex, vip, HostLength(vip), kAddressProto);
}

absl::Status RemoveVipAddress(int ifindex, const IpAddress& vip) {
  auto rtnl = rtnl::Socket::Open();
  if (!rtnl.ok()) return rtnl.status();
  return rtnl::RemoveAddress(*rtnl, ifindex, vip, HostLength(vip));
}

absl::Status SyncLoopbackVips(const std::vector<IpAddress>& vips) {
  auto addresses = ListAddresses();
  if (!addresses.ok()) return addresses.status();
  std::set<IpAddress> ours;
  for (const InterfaceAddress& a : *addresses) {
    if (a.ifindex == kLoopbackIfindex && a.proto == kAddressProto) ours.insert(a.address);
  }
  for (const IpAddress& vip : vips) {
    if (ours.contains(vip)) continue;
    if (absl::Status s = AddVipAddress(kLoopbackIfindex, vip); !s.ok()) return s;
  }
  for (const IpAddress& old : ours) {
    if (std::find(vips.begin(), vips.end(), old) != vips.end()) continue;
    if (absl::Status s = RemoveVipAddress(kLoopbackIfindex, old); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status LoosenReversePathFilter(const std::string& sysctl_dir, const std::string& ifname) {
  const std::string conf = sysctl_dir + "/net/ipv4/conf/";
  int all = 0, own = 0;
  if (!absl::SimpleAtoi(ReadLine(conf + "all/rp_filter"), &all) ||
      !absl::SimpleAtoi(ReadLine(conf + ifname + "/rp_filter"), &own))
    return absl::FailedPreconditionError("cannot read " + conf + "{all," + ifname + "}/rp_filter");
  if (std::max(all, own) != 1) return absl::OkStatus();
  std::ofstream out(conf + ifname + "/rp_filter");
  out << "2\n";
  out.flush();
  if (!out) return absl::FailedPreconditionError("cannot write " + conf + ifname + "/rp_filter (read-only /proc/sys?)");
  return absl::OkStatus();
}

absl::Status Decapsulate(DecapProgram& program, int ifindex, const std::vector<IpAddress>& vips,
                         const std::string& sysctl_dir) {
  if (absl::Status s = program.SetVips(vips); !s.ok()) return s;
  auto attached = AttachedProgramId(ifindex);
  if (!attached.ok()) return attached.status();
  if (*attached != program.prog_id()) {
    if (absl::Status s = program.AttachIngress(ifindex); !s.ok()) return s;
  }
  if (absl::Status s = SyncLoopbackVips(vips); !s.ok()) return s;
  char name[IF_NAMESIZE] = {};
  if (if_indextoname(unsigned(ifindex), name) == nullptr) return absl::NotFoundError("the interface went away");
  return LoosenReversePathFilter(sysctl_dir, name);
}

absl::Status StopDecapsulating(int ifindex, uint32_t only_program) {
  if (only_program != 0) {
    auto attached = AttachedProgramId(ifindex);
    if (attached.ok() && *attached != only_program) return SyncLoopbackVips({});
  }
  if (absl::Status s = DetachIngress(ifindex); !s.ok()) return s;
  return SyncLoopbackVips({});
}

}  // namespace lb::control::dsr_node
