#include "control/k8s/vip_pool.h"

#include <algorithm>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace lb::control::k8s {
namespace {

bool IsV4Family(const std::string& family) { return family != "IPv6"; }

// The indexes of a prefix's assignable addresses, [first, end): not the IPv4 network and
// broadcast addresses, nor the IPv6 subnet-router anycast address (RFC 4291 §2.6.1), where
// the prefix is long enough to have them. At most 2^32 of an IPv6 prefix are considered.
std::pair<uint64_t, uint64_t> UsableRange(const IpPrefix& p) {
  const bool v4 = p.address.IsV4();
  const int host_bits = (v4 ? 32 : 128) - p.length;
  const uint64_t size = host_bits >= 32 ? uint64_t(1) << 32 : uint64_t(1) << host_bits;
  if (v4) return host_bits >= 2 ? std::make_pair(uint64_t(1), size - 1) : std::make_pair(uint64_t(0), size);
  return host_bits >= 2 ? std::make_pair(uint64_t(1), size) : std::make_pair(uint64_t(0), size);
}

std::string PoolText(const std::vector<IpPrefix>& pool) {
  return absl::StrJoin(pool, ", ", [](std::string* out, const IpPrefix& p) { out->append(p.ToString()); });
}

}  // namespace

IpAddress NthAddress(const IpPrefix& prefix, uint64_t index) {
  IpAddress a = prefix.address;
  uint64_t carry = index;
  for (int i = 15; i >= 0 && carry != 0; --i) {
    carry += a.bytes[size_t(i)];
    a.bytes[size_t(i)] = uint8_t(carry);
    carry >>= 8;
  }
  return a;
}

VipAllocation AllocateVips(const std::vector<const KService*>& services, const std::vector<IpPrefix>& pool,
                           const std::vector<IpAddress>& taken) {
  VipAllocation out;
  // Recorded allocations come first and are never taken away by an externalIP (the
  // CVE-2020-8554 pattern); externalIPs only keep new allocations off their addresses.
  absl::flat_hash_set<IpAddress> used;
  auto in_pool = [&](const IpAddress& a) {
    return std::any_of(pool.begin(), pool.end(), [&](const IpPrefix& p) { return p.Contains(a); });
  };
  auto problem = [&](const KService& s, const char* reason, std::string message) {
    out.problems.push_back({s.Key(), reason, std::move(message)});
  };
  auto families = [](const KService& s) {
    return s.ip_families.empty() ? std::vector<std::string>{"IPv4"} : s.ip_families;
  };

  // Pass 1: what the cluster already records stays, oldest Service first.
  for (const KService* s : services) {
    std::vector<IpAddress>& mine = out.addresses[s->Key()];
    const auto requested = IpAddress::Parse(s->load_balancer_ip);
    const std::vector<std::string> wanted = families(*s);
    for (const std::string& text : s->ingress_ips) {
      const auto ip = IpAddress::Parse(text);
      if (!ip) continue;
      const bool family_wanted =
          std::any_of(wanted.begin(), wanted.end(), [&](const std::string& f) { return IsV4Family(f) == ip->IsV4(); });
      const bool family_done =
          std::any_of(mine.begin(), mine.end(), [&](const IpAddress& a) { return a.IsV4() == ip->IsV4(); });
      if (!family_wanted || family_done) continue;
      if (requested && requested->IsV4() == ip->IsV4() && *requested != *ip) continue;  // asked for another
      if (!in_pool(*ip)) {
        problem(*s, "AddressNotInPool",
                absl::StrFormat("%s is not in the VIP pool (%s): a new address is allocated", text, PoolText(pool)));
        continue;
      }
      if (!used.insert(*ip).second) {
        problem(*s, "AddressConflict", absl::StrFormat("%s is already used by an older Service", text));
        continue;
      }
      mine.push_back(*ip);
    }
  }

  used.insert(taken.begin(), taken.end());
  // Pass 2: every family still without an address gets the requested or the lowest free one.
  for (const KService* s : services) {
    std::vector<IpAddress>& mine = out.addresses[s->Key()];
    bool any_pool = false;
    for (const std::string& family : families(*s)) {
      const bool v4 = IsV4Family(family);
      std::vector<IpPrefix> prefixes;
      for (const IpPrefix& p : pool) {
        if (p.address.IsV4() == v4) prefixes.push_back(p);
      }
      if (prefixes.empty()) continue;
      any_pool = true;
      if (std::any_of(mine.begin(), mine.end(), [&](const IpAddress& a) { return a.IsV4() == v4; })) continue;
      if (const auto requested = IpAddress::Parse(s->load_balancer_ip); requested && requested->IsV4() == v4) {
        if (!in_pool(*requested)) {
          problem(*s, "AddressNotInPool",
                  absl::StrFormat("spec.loadBalancerIP %s is not in the VIP pool (%s)", s->load_balancer_ip,
                                  PoolText(pool)));
        } else if (!used.insert(*requested).second) {
          problem(*s, "AddressConflict",
                  absl::StrFormat("spec.loadBalancerIP %s is already used by another Service", s->load_balancer_ip));
        } else {
          mine.push_back(*requested);
        }
        continue;
      }
      bool found = false;
      for (const IpPrefix& p : prefixes) {
        const auto [first, end] = UsableRange(p);
        for (uint64_t i = first; i < end && !found; ++i) {
          const IpAddress candidate = NthAddress(p, i);
          if (used.insert(candidate).second) {
            mine.push_back(candidate);
            found = true;
          }
        }
        if (found) break;
      }
      if (!found) {
        problem(*s, "PoolExhausted",
                absl::StrFormat("no free %s address in the VIP pool (%s)", family, PoolText(pool)));
      }
    }
    if (!any_pool) {
      problem(*s, "NoPoolForFamily",
              absl::StrFormat("the VIP pool (%s) has no prefix of the Service's IP families (%s)", PoolText(pool),
                              absl::StrJoin(families(*s), ", ")));
    }
    std::sort(mine.begin(), mine.end());
  }
  return out;
}

}  // namespace lb::control::k8s
