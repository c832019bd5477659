// DPDK's process-wide services, behind plain functions, for the code that composes lbd
// (control/lbd/): the TSC clock, EAL's random numbers, the lcores, packet capture for
// dpdk-dumpcap, telemetry commands, and moving a port's packets into a ring. With these
// and the other wrappers of this folder, DPDK is called only under dataplane/ (the
// worker's hot path calls the mbuf, ring and ethdev burst API itself). After InitEal.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace lb::dataplane::dpdk {

class MbufRing;
class Port;

// The TSC: cycles since boot, their rate, and a sleep that yields the CPU.
uint64_t Cycles();
uint64_t CyclesPerSecond();
void SleepMicros(uint32_t us);

// 64 random bits (rte_rand: seeded from the CPU's entropy when EAL starts).
uint64_t Random64();

// The lcores EAL was given besides the main one: one worker each.
uint32_t WorkerLcores();

// rte_errno, as text.
std::string LastError();

// Packet capture by dpdk-dumpcap (rte_pdump): enabled once EAL runs, disabled before it
// stops.
absl::Status EnablePacketCapture();
void DisablePacketCapture();

// A DPDK telemetry command (e.g. "/lb/stats") whose reply is a dictionary of integers;
// `reply` returns nullopt when it cannot answer (the process is stopping). Any thread
// may register; `reply` runs on EAL's telemetry thread. Registered for the process's life.
using TelemetryDict = std::vector<std::pair<std::string, uint64_t>>;
void RegisterTelemetryCommand(const std::string& command, const std::string& help,
                              std::function<std::optional<TelemetryDict>()> reply);

// Moves what `port` received on each of its first `queues` queues into `ring` (single
// producer), freeing what the ring has no room for. Returns how many were received.
uint32_t ReceiveInto(const Port& port, uint16_t queues, MbufRing& ring);

}  // namespace lb::dataplane::dpdk
