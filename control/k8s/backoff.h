// Exponential back-off with jitter for retries against the API server and lbd: each
// failure doubles the base delay up to a cap, and the delay returned is drawn uniformly
// from [base/2, base] so that many watchers restarted together do not retry in step.
// Not thread-safe: one per retry loop.
#pragma once

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <random>

namespace lb::control::k8s {

class Backoff {
 public:
  using Duration = std::chrono::milliseconds;
  Backoff(Duration initial, Duration max) : initial_(initial), max_(max), base_(initial) {}

  // The delay before the next attempt; grows with each call until Reset.
  Duration Next() {
    const Duration base = base_;
    base_ = std::min(max_, base_ * 2);
    std::uniform_int_distribution<int64_t> pick(base.count() / 2, base.count());
    return Duration(pick(rng_));
  }
  void Reset() { base_ = initial_; }

 private:
  Duration initial_, max_, base_;
  std::minstd_rand rng_{std::random_device{}()};
};

// A stop request that sleeping threads wake up for. Any thread.
class Stopper {
 public:
  void Stop() {
    std::lock_guard<std::mutex> lock(mu_);
    stopped_ = true;
    cv_.notify_all();
  }
  bool stopped() const {
    std::lock_guard<std::mutex> lock(mu_);
    return stopped_;
  }
  // Sleeps for `d` or until Stop; true when stopped.
  template <typename D>
  bool SleepFor(D d) const {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, d, [this] { return stopped_; });
  }

 private:
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  bool stopped_ = false;
};

}  // namespace lb::control::k8s
