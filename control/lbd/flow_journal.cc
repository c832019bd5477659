#include "control/lbd/flow_journal.h"

#include <netinet/in.h>

#include <string_view>

#include "absl/hash/hash.h"

namespace lb::control {

size_t FlowJournal::KeyHash::operator()(const FlowKey& k) const {
  // A FlowKey has no padding of undefined value (flow_key.h): its bytes are its value.
  return absl::HashOf(std::string_view(reinterpret_cast<const char*>(&k), sizeof(k)));
}

bool FlowJournal::Record(const dataplane::SyncedFlow& f, int64_t now_ms) {
  const int64_t until = now_ms + (f.key.protocol == IPPROTO_UDP ? options_.udp_ttl_ms : options_.tcp_ttl_ms);
  if (auto it = flows_.find(f.key); it != flows_.end()) {
    it->second = {f, until};
    return true;
  }
  if (flows_.size() >= options_.capacity) return false;
  flows_.emplace(f.key, Entry{f, until});
  return true;
}

void FlowJournal::Expire(int64_t now_ms) {
  absl::erase_if(flows_, [now_ms](const auto& kv) { return kv.second.until_ms <= now_ms; });
}

std::vector<dataplane::SyncedFlow> FlowJournal::Live(int64_t now_ms) const {
  std::vector<dataplane::SyncedFlow> live;
  live.reserve(flows_.size());
  for (const auto& [key, e] : flows_) {
    if (e.until_ms > now_ms) live.push_back(e.flow);
  }
  return live;
}

}  // namespace lb::control
