// HugeArray<T>: a zero-filled array of T in its own anonymous mapping, 2 MiB aligned and
// advised to use transparent huge pages (MADV_HUGEPAGE), for the big per-worker tables
// that every packet touches at random (the flow table). On 4 KiB pages a table of tens of
// megabytes misses the TLB on nearly every lookup; on 2 MiB pages it does not (lbbench, 1M
// flows: +23-33% per core; neutral at 100k and 1k). The flow table is on the heap,
// not in EAL's memory, so this holds whether or not EAL has hugepages; where THP is off it
// is plain pages.
//
// The whole array is faulted in when it is made (MADV_POPULATE_WRITE): a worker must
// never wait for the kernel to find, zero (and perhaps compact) memory when a new flow
// first touches a page. Lazily, a burst of new flows in a fresh table took up to 200 ms
// (a 2 MiB fault each, on a VM whose guest memory is itself faulted in), long enough for
// BFD to declare the node down. So the memory is committed at start, and a shortfall is
// an error at start rather than an OOM kill under load. A table touched only where it is
// in use, and which is sized for the worst case (the traffic counters), may instead be
// committed on first touch (Commit::kOnFirstTouch). Thread model: as the owner's.
#pragma once

#include <sys/mman.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <new>
#include <type_traits>

namespace lb::dataplane {

template <typename T>
class HugeArray {
  // Implicit-lifetime types (C++20): the mapping's zero bytes are the T objects, which
  // must be valid as all zeros (the tables' empty state).
  static_assert(std::is_trivially_copyable_v<T> && std::is_trivially_destructible_v<T>,
                "T must be an implicit-lifetime type that is valid as all zero bytes");

 public:
  static constexpr size_t kHugePage = size_t(2) << 20;

  enum class Commit { kNow, kOnFirstTouch };

  explicit HugeArray(size_t count, Commit commit = Commit::kNow)
      : bytes_((count * sizeof(T) + kHugePage - 1) / kHugePage * kHugePage) {
    if (bytes_ == 0) return;
    // Over-map by one huge page so that the array can start on a 2 MiB boundary: THP only
    // backs aligned 2 MiB ranges.
    map_bytes_ = bytes_ + kHugePage;
    void* p = mmap(nullptr, map_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    map_ = static_cast<uint8_t*>(p);
    const uintptr_t aligned = (reinterpret_cast<uintptr_t>(map_) + kHugePage - 1) & ~(kHugePage - 1);
    data_ = reinterpret_cast<T*>(aligned);
    madvise(data_, bytes_, MADV_HUGEPAGE);  // advice only: without THP, 4 KiB pages
    if (commit == Commit::kNow) Populate();
  }
  ~HugeArray() {
    if (map_ != nullptr) munmap(map_, map_bytes_);
  }
  HugeArray(const HugeArray&) = delete;
  HugeArray& operator=(const HugeArray&) = delete;

  T& operator[](size_t i) { return data_[i]; }
  const T& operator[](size_t i) const { return data_[i]; }

 private:
  void Populate() {
#ifdef MADV_POPULATE_WRITE
    if (madvise(data_, bytes_, MADV_POPULATE_WRITE) == 0) return;
    if (errno == ENOMEM) {
      munmap(map_, map_bytes_);
      throw std::bad_alloc();
    }
#endif
    // Kernels before 5.14: write each page (zeros over zeros).
    volatile uint8_t* bytes = reinterpret_cast<volatile uint8_t*>(data_);
    for (size_t i = 0; i < bytes_; i += 4096) bytes[i] = 0;
  }

  size_t bytes_;
  size_t map_bytes_ = 0;
  uint8_t* map_ = nullptr;
  T* data_ = nullptr;
};

}  // namespace lb::dataplane
