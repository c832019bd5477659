// FlowJournal: the flows of the ECMP group that lbd's flow-sync thread knows, so that it
// can tell a (re)started peer every flow still live, idle ones included
// (docs/flow-sync.md). The workers cannot: their flow tables keep no keys (flow_table.h).
//
// It holds every flow the node announced and every flow a peer announced, until the
// flow's idle timeout and one refresh interval pass without it being announced again:
// as long as a learned entry lives in a worker's table.
//
// Thread model: one thread (the sync thread).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "dataplane/flow_sync_wire.h"

namespace lb::control {

class FlowJournal {
 public:
  struct Options {
    uint32_t tcp_ttl_ms = 0;  // how long an announcement holds: the timeout plus a refresh interval
    uint32_t udp_ttl_ms = 0;
    size_t capacity = 0;  // flows at most; beyond it new ones are not kept
  };

  explicit FlowJournal(const Options& options) : options_(options) {}

  // Keeps `f`, announced (by this node or a peer) at `now_ms`, or refreshes it; a flow is
  // known by its client 5-tuple. False when the journal is full.
  bool Record(const dataplane::SyncedFlow& f, int64_t now_ms);
  // Forgets the flows whose announcement no longer holds at `now_ms`.
  void Expire(int64_t now_ms);
  // Every flow whose announcement still holds at `now_ms`.
  std::vector<dataplane::SyncedFlow> Live(int64_t now_ms) const;
  size_t size() const { return flows_.size(); }

 private:
  struct KeyHash {
    size_t operator()(const FlowKey& k) const;
  };
  struct Entry {
    dataplane::SyncedFlow flow;
    int64_t until_ms = 0;
  };

  Options options_;
  absl::flat_hash_map<FlowKey, Entry, KeyHash> flows_;
};

}  // namespace lb::control
