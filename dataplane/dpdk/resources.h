// RAII owners of the DPDK objects lbd's runtime allocates besides ports: an mbuf pool, a
// ring of mbufs, a ring of other elements, and a function running on a worker lcore.
//
// Errors name the DPDK call and rte_errno. Thread model: control thread (the main lcore)
// only; what they own is then used by the workers as each object's own comments say.
#pragma once

#include <rte_launch.h>
#include <rte_mempool.h>
#include <rte_ring.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/statusor.h"

namespace lb::dataplane::dpdk {

// A pktmbuf pool, freed on destruction (after every mbuf has come back).
class MbufPool {
 public:
  static absl::StatusOr<MbufPool> Create(const std::string& name, uint32_t mbufs, uint16_t cache, uint16_t data_room);
  MbufPool(MbufPool&& o) noexcept : pool_(std::exchange(o.pool_, nullptr)) {}
  MbufPool& operator=(MbufPool&&) = delete;
  ~MbufPool();
  rte_mempool* get() const { return pool_; }

 private:
  explicit MbufPool(rte_mempool* pool) : pool_(pool) {}
  rte_mempool* pool_;
};

// A ring of mbufs; on destruction the mbufs still queued are freed, then the ring.
class MbufRing {
 public:
  // `flags`: RING_F_SP_ENQ / RING_F_SC_DEQ as the ring's users allow.
  static absl::StatusOr<MbufRing> Create(const std::string& name, uint32_t count, unsigned flags);
  MbufRing(MbufRing&& o) noexcept : ring_(std::exchange(o.ring_, nullptr)) {}
  MbufRing& operator=(MbufRing&&) = delete;
  ~MbufRing();
  rte_ring* get() const { return ring_; }

 private:
  explicit MbufRing(rte_ring* ring) : ring_(ring) {}
  rte_ring* ring_;
};

// A ring of fixed-size elements (rte_ring_create_elem), freed on destruction.
class ElemRing {
 public:
  // `count` elements of `size` bytes (a multiple of 4); `flags` as MbufRing's.
  static absl::StatusOr<ElemRing> Create(const std::string& name, uint32_t size, uint32_t count, unsigned flags);
  ElemRing(ElemRing&& o) noexcept : ring_(std::exchange(o.ring_, nullptr)) {}
  ElemRing& operator=(ElemRing&&) = delete;
  ~ElemRing() { rte_ring_free(ring_); }
  rte_ring* get() const { return ring_; }

 private:
  explicit ElemRing(rte_ring* ring) : ring_(ring) {}
  rte_ring* ring_;
};

// `run` on worker lcore `lcore` (rte_eal_remote_launch), waited for on destruction or
// by Wait(). The function must return when its caller asks it to (a stop flag).
class LcoreTask {
 public:
  static absl::StatusOr<std::unique_ptr<LcoreTask>> Launch(unsigned lcore, std::function<void()> run);
  ~LcoreTask() { Wait(); }
  LcoreTask(const LcoreTask&) = delete;
  LcoreTask& operator=(const LcoreTask&) = delete;
  void Wait();
  unsigned lcore() const { return lcore_; }

 private:
  LcoreTask(unsigned lcore, std::function<void()> run) : lcore_(lcore), run_(std::move(run)) {}
  static int Main(void* self);

  unsigned lcore_;
  std::function<void()> run_;
  bool running_ = false;
};

}  // namespace lb::dataplane::dpdk
