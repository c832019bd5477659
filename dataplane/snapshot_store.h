// SnapshotStore: publishes Snapshots to workers under QSBR RCU (DPDK rte_rcu_qsbr).
//
// The control thread builds a complete Snapshot off the hot path and Publish()es it with
// one release store. Workers Acquire() the pointer once per burst and report a quiescent
// state after each burst, when they hold no snapshot pointer. A replaced snapshot goes on
// a retire list with a QSBR token and is freed by Reclaim() once every registered worker
// has passed a quiescent state since it was replaced: no worker can still be reading it.
// (DPDK 22.11's rte_rcu_qsbr_dq_* defer queue is experimental; this retire list is the
// same idea on the control thread.)
//
// Thread model: Publish(), Reclaim(), RegisterWorker() on the control
// thread only; Acquire(), Quiescent(), Online() and Offline() on the worker lcore whose
// id they name. A worker that sleeps while idle goes Offline() first, so that it does
// not hold up reclamation.
#pragma once

#include <rte_rcu_qsbr.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>

#include "absl/status/statusor.h"
#include "dataplane/snapshot.h"

namespace lb::dataplane {

class SnapshotStore {
 public:
  static absl::StatusOr<std::unique_ptr<SnapshotStore>> Create(uint32_t max_workers);
  ~SnapshotStore();
  SnapshotStore(const SnapshotStore&) = delete;
  SnapshotStore& operator=(const SnapshotStore&) = delete;

  // Control thread, before the worker first runs. The worker starts online.
  absl::Status RegisterWorker(uint32_t worker_id);

  // Control thread. The first publish has nothing to retire.
  void Publish(std::unique_ptr<const Snapshot> snapshot);
  // Control thread. Frees what no worker can still read; returns how many stay retired.
  size_t Reclaim();

  // Worker lcore. Acquire: pairs with Publish()'s release store, so the snapshot's
  // contents are visible before its pointer is.
  const Snapshot* Acquire() const { return current_.load(std::memory_order_acquire); }
  void Quiescent(uint32_t worker_id) { rte_rcu_qsbr_quiescent(qsbr_, worker_id); }
  void Online(uint32_t worker_id) { rte_rcu_qsbr_thread_online(qsbr_, worker_id); }
  void Offline(uint32_t worker_id) { rte_rcu_qsbr_thread_offline(qsbr_, worker_id); }

  // Control thread (the store is not read concurrently by it).
  const Snapshot* current() const { return current_.load(std::memory_order_relaxed); }

  // Any thread. The generation of the snapshot published last (0: none yet), and whether
  // every registered worker has passed a quiescent state since: from then on no worker
  // reads an older snapshot.
  uint64_t published_generation() const { return published_generation_.load(std::memory_order_relaxed); }
  bool WorkersOnLatest() const {
    // Acquire pairs with Publish()'s release: the token is the one of that publish.
    return rte_rcu_qsbr_check(qsbr_, latest_token_.load(std::memory_order_acquire), false) == 1;
  }
  size_t retired() const { return retired_.size(); }

 private:
  explicit SnapshotStore(rte_rcu_qsbr* qsbr) : qsbr_(qsbr) {}

  struct Retired {
    uint64_t token;
    std::unique_ptr<const Snapshot> snapshot;
  };

  rte_rcu_qsbr* qsbr_;
  std::atomic<const Snapshot*> current_{nullptr};
  std::unique_ptr<const Snapshot> owned_;  // what current_ points at
  std::atomic<uint64_t> latest_token_{0};
  std::atomic<uint64_t> published_generation_{0};
  std::deque<Retired> retired_;
};

}  // namespace lb::dataplane
