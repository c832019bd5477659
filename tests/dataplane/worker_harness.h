// A Worker with its own SnapshotStore, fed byte strings as rte_mbufs and returning what
// came out, for table-driven dataplane tests. The test thread plays both the worker
// lcore (ProcessBurst) and the control thread (Apply).
#pragma once

#include <rte_mbuf.h>

#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "dataplane/snapshot_store.h"
#include "dataplane/worker/worker.h"
#include "tests/helpers/packet_builder.h"

namespace lb::testing {

rte_mempool* TestPool();

inline rte_mbuf* ToMbuf(const Bytes& frame) {
  rte_mbuf* m = rte_pktmbuf_alloc(TestPool());
  if (m == nullptr) return nullptr;
  char* p = rte_pktmbuf_append(m, uint16_t(frame.size()));
  if (p == nullptr) {
    rte_pktmbuf_free(m);
    return nullptr;
  }
  std::copy(frame.begin(), frame.end(), p);
  return m;
}

inline Bytes FromMbuf(const rte_mbuf* m) {
  Bytes b(m->pkt_len);
  const void* data = rte_pktmbuf_read(m, 0, m->pkt_len, b.data());
  if (data != b.data()) std::memcpy(b.data(), data, m->pkt_len);
  return b;
}

struct Output {
  std::vector<Bytes> wire;
  std::vector<Bytes> kernel;
  std::vector<std::pair<uint16_t, Bytes>> redirect;  // (owning worker, frame): NAT replies
};

class WorkerHarness {
 public:
  explicit WorkerHarness(uint32_t flow_capacity = 4096)
      : WorkerHarness(dataplane::Worker::Options{.id = 0, .flow_capacity = flow_capacity}) {}
  // With `traffic`, the worker counts into its cells and the builder gives ids from it.
  explicit WorkerHarness(dataplane::Worker::Options options, std::shared_ptr<dataplane::TrafficTable> traffic = nullptr)
      : builder_({}, traffic) {
    if (traffic != nullptr) options.traffic = traffic->cells(options.id);
    auto store = dataplane::SnapshotStore::Create(options.id + 1);
    EXPECT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    EXPECT_TRUE(store_->RegisterWorker(options.id).ok());
    worker_ = std::make_unique<dataplane::Worker>(options, store_.get());
    id_ = options.id;
  }

  // Control thread: builds and publishes `config`.
  ::testing::AssertionResult Apply(const DataplaneConfig& config) {
    auto snap = builder_.Build(config);
    if (!snap.ok()) return ::testing::AssertionFailure() << snap.status();
    store_->Publish(*std::move(snap));
    store_->Reclaim();
    return ::testing::AssertionSuccess();
  }

  // Worker: one burst (or several, if more than kMaxBurst frames), then a quiescent
  // state, as PollOnce does.
  Output Run(const std::vector<Bytes>& frames, Millis now = 1000) {
    Output result;
    for (size_t start = 0; start < frames.size(); start += dataplane::kMaxBurst) {
      const size_t n = std::min<size_t>(dataplane::kMaxBurst, frames.size() - start);
      std::vector<rte_mbuf*> mbufs;
      for (size_t i = 0; i < n; ++i) mbufs.push_back(ToMbuf(frames[start + i]));
      dataplane::BurstOutput out;
      worker_->ProcessBurst(mbufs.data(), uint16_t(n), now, out);
      for (uint16_t i = 0; i < out.num_wire; ++i) {
        result.wire.push_back(FromMbuf(out.wire[i]));
        rte_pktmbuf_free(out.wire[i]);
      }
      for (uint16_t i = 0; i < out.num_kernel; ++i) {
        result.kernel.push_back(FromMbuf(out.kernel[i]));
        rte_pktmbuf_free(out.kernel[i]);
      }
      for (uint16_t i = 0; i < out.num_redirect; ++i) {
        result.redirect.emplace_back(out.redirect_to[i], FromMbuf(out.redirect[i]));
        rte_pktmbuf_free(out.redirect[i]);
      }
      store_->Quiescent(id_);  // the worker's part; reclaiming is the control thread's
    }
    return result;
  }

  Output Run(const Bytes& frame, Millis now = 1000) { return Run(std::vector<Bytes>{frame}, now); }

  uint64_t Count(dataplane::DropReason r) const { return worker_->counters().Get(r); }
  uint64_t Count(dataplane::Event e) const { return worker_->counters().Get(e); }
  uint64_t TotalDrops() const {
    uint64_t sum = 0;
    for (size_t i = 0; i < dataplane::kNumDropReasons; ++i) {
      sum += worker_->counters().Get(dataplane::DropReason(i));
    }
    return sum;
  }
  dataplane::Worker& worker() { return *worker_; }
  dataplane::SnapshotStore& store() { return *store_; }

 private:
  dataplane::SnapshotBuilder builder_;
  std::unique_ptr<dataplane::SnapshotStore> store_;
  std::unique_ptr<dataplane::Worker> worker_;
  uint32_t id_ = 0;
};

}  // namespace lb::testing
