// AnnounceGate: hysteresis between lbd's health and BGP announcements, so that a flapping
// dataplane does not flap BGP. A withdrawn node announces again only after `up_after`
// healthy checks in a row; an announcing node withdraws after `down_after` unhealthy
// checks in a row. Pure: one owner thread.
#pragma once

#include <cstdint>

namespace lb::control::bird {

class AnnounceGate {
 public:
  AnnounceGate(uint32_t up_after, uint32_t down_after) : up_after_(up_after), down_after_(down_after) {}

  // Feeds one health check; returns whether to announce now.
  bool Update(bool healthy) {
    if (healthy == announcing_) {
      streak_ = 0;
      return announcing_;
    }
    if (++streak_ >= (announcing_ ? down_after_ : up_after_)) {
      announcing_ = healthy;
      streak_ = 0;
    }
    return announcing_;
  }

 private:
  uint32_t up_after_;
  uint32_t down_after_;
  uint32_t streak_ = 0;  // checks in a row that disagree with the current state
  bool announcing_ = false;
};

}  // namespace lb::control::bird
