#include "dataplane/dpdk/resources.h"

#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>

#include "absl/strings/str_format.h"

namespace lb::dataplane::dpdk {

absl::StatusOr<MbufPool> MbufPool::Create(const std::string& name, uint32_t mbufs, uint16_t cache, uint16_t data_room) {
  rte_mempool* pool = rte_pktmbuf_pool_create(name.c_str(), mbufs, cache, 0, data_room, int(rte_socket_id()));
  if (pool == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("rte_pktmbuf_pool_create(%s, %d mbufs): %s. Reserve hugepages "
                        "(echo 512 > /proc/sys/vm/nr_hugepages) or run EAL with --no-huge -m 512",
                        name, mbufs, rte_strerror(rte_errno)));
  }
  return MbufPool(pool);
}

MbufPool::~MbufPool() {
  if (pool_ != nullptr) rte_mempool_free(pool_);
}

absl::StatusOr<MbufRing> MbufRing::Create(const std::string& name, uint32_t count, unsigned flags) {
  rte_ring* ring = rte_ring_create(name.c_str(), count, int(rte_socket_id()), flags);
  if (ring == nullptr) {
    return absl::ResourceExhaustedError(absl::StrFormat("rte_ring_create(%s): %s", name, rte_strerror(rte_errno)));
  }
  return MbufRing(ring);
}

MbufRing::~MbufRing() {
  if (ring_ == nullptr) return;
  rte_mbuf* m;
  while (rte_ring_dequeue(ring_, reinterpret_cast<void**>(&m)) == 0) rte_pktmbuf_free(m);
  rte_ring_free(ring_);
}

absl::StatusOr<ElemRing> ElemRing::Create(const std::string& name, uint32_t size, uint32_t count, unsigned flags) {
  rte_ring* ring = rte_ring_create_elem(name.c_str(), size, count, int(rte_socket_id()), flags);
  if (ring == nullptr) {
    return absl::ResourceExhaustedError(absl::StrFormat("rte_ring_create_elem(%s): %s", name, rte_strerror(rte_errno)));
  }
  return ElemRing(ring);
}

absl::StatusOr<std::unique_ptr<LcoreTask>> LcoreTask::Launch(unsigned lcore, std::function<void()> run) {
  std::unique_ptr<LcoreTask> task(new LcoreTask(lcore, std::move(run)));
  if (int rc = rte_eal_remote_launch(&LcoreTask::Main, task.get(), lcore); rc != 0) {
    return absl::InternalError(absl::StrFormat("rte_eal_remote_launch(lcore %d): %s", lcore, rte_strerror(-rc)));
  }
  task->running_ = true;
  return task;
}

int LcoreTask::Main(void* self) {
  static_cast<LcoreTask*>(self)->run_();
  return 0;
}

void LcoreTask::Wait() {
  if (!running_) return;
  rte_eal_wait_lcore(lcore_);
  running_ = false;
}

}  // namespace lb::dataplane::dpdk
