// TokenBucket: a rate limit on one thread's clock, for the worker's ICMP answers and its
// exception path. Integer arithmetic; owned by one thread.
#pragma once

#include <algorithm>
#include <cstdint>

#include "common/millis.h"

namespace lb::dataplane {

// `rate` tokens a second, holding at most one second's worth. Integer arithmetic in
// thousandths of a token.
class TokenBucket {
 public:
  bool Take(uint32_t rate, Millis now) {
    if (rate == 0) return false;
    const uint64_t cap = uint64_t(rate) * 1000;
    tokens_ = std::min<uint64_t>(cap, tokens_ + uint64_t(Millis(now - last_)) * rate);
    last_ = now;
    if (tokens_ < 1000) return false;
    tokens_ -= 1000;
    return true;
  }

 private:
  uint64_t tokens_ = 0;
  Millis last_ = 0;
};

}  // namespace lb::dataplane
