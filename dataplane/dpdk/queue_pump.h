// The poll's burst size, and QueuePump: a queue whose packets the worker moves itself
// (AfPacketPort). Each turn of the poll loop Pulls what waits at the queue's source into
// the queue before receiving from it, and Pushes what it sent on the queue to the sink
// after sending. Worker lcore only; what goes wrong on the way is counted in `counters`.
#pragma once

#include <cstdint>

#include "dataplane/counters.h"

namespace lb::dataplane {

// The most packets one poll receives, processes or moves.
inline constexpr uint16_t kMaxBurst = 32;

class QueuePump {
 public:
  virtual ~QueuePump() = default;
  virtual void Pull(WorkerCounters& counters) = 0;
  virtual void Push(WorkerCounters& counters) = 0;
};

}  // namespace lb::dataplane
