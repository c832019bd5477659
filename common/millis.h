// Millis: the dataplane's clock, shared by the configuration (timeouts) and the tables
// (deadlines). Plain values: any thread.
#pragma once

#include <cstdint>

namespace lb {

// Time in milliseconds on a wrapping 32-bit clock. Deadlines compare with signed
// differences, which is correct while a flow's timeout is under 24 days.
using Millis = uint32_t;
inline bool Expired(Millis deadline, Millis now) { return int32_t(deadline - now) <= 0; }

}  // namespace lb
