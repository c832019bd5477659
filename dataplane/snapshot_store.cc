#include "dataplane/snapshot_store.h"

#include <rte_errno.h>

#include <cstdlib>

#include "absl/strings/str_format.h"

namespace lb::dataplane {

absl::StatusOr<std::unique_ptr<SnapshotStore>> SnapshotStore::Create(uint32_t max_workers) {
  const ssize_t size = rte_rcu_qsbr_get_memsize(max_workers);
  if (size < 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("rte_rcu_qsbr_get_memsize(%d): %s", max_workers, rte_strerror(rte_errno)));
  }
  // rte_rcu_qsbr needs cache-line alignment; it does not need EAL memory.
  const size_t aligned = (size_t(size) + RTE_CACHE_LINE_SIZE - 1) & ~size_t(RTE_CACHE_LINE_SIZE - 1);
  auto* qsbr = static_cast<rte_rcu_qsbr*>(std::aligned_alloc(RTE_CACHE_LINE_SIZE, aligned));
  if (qsbr == nullptr) return absl::ResourceExhaustedError("rte_rcu_qsbr: out of memory");
  if (rte_rcu_qsbr_init(qsbr, max_workers) != 0) {
    std::free(qsbr);
    return absl::InternalError(absl::StrFormat("rte_rcu_qsbr_init(%d): %s", max_workers, rte_strerror(rte_errno)));
  }
  return std::unique_ptr<SnapshotStore>(new SnapshotStore(qsbr));
}

SnapshotStore::~SnapshotStore() {
  // The owner stops the workers before destroying the store.
  retired_.clear();
  owned_.reset();
  std::free(qsbr_);
}

absl::Status SnapshotStore::RegisterWorker(uint32_t worker_id) {
  if (rte_rcu_qsbr_thread_register(qsbr_, worker_id) != 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("rte_rcu_qsbr_thread_register(%d): %s", worker_id, rte_strerror(rte_errno)));
  }
  rte_rcu_qsbr_thread_online(qsbr_, worker_id);
  return absl::OkStatus();
}

void SnapshotStore::Publish(std::unique_ptr<const Snapshot> snapshot) {
  // Release: a worker that sees the new pointer sees the snapshot fully built.
  current_.store(snapshot.get(), std::memory_order_release);
  // The token is taken after the store: a worker that reports quiescence after this
  // point can no longer hold the old pointer.
  const uint64_t token = rte_rcu_qsbr_start(qsbr_);
  published_generation_.store(snapshot->generation(), std::memory_order_relaxed);
  latest_token_.store(token, std::memory_order_release);
  if (owned_ != nullptr) retired_.push_back({token, std::move(owned_)});
  owned_ = std::move(snapshot);
}

size_t SnapshotStore::Reclaim() {
  while (!retired_.empty() && rte_rcu_qsbr_check(qsbr_, retired_.front().token, false) == 1) {
    retired_.pop_front();
  }
  return retired_.size();
}

}  // namespace lb::dataplane
