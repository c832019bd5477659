#include "dataplane/dpdk/services.h"

#include <rte_cycles.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_pdump.h>
#include <rte_random.h>
#include <rte_ring.h>
#include <rte_telemetry.h>

#include <map>
#include <mutex>

#include "absl/strings/str_format.h"
#include "dataplane/dpdk/port.h"
#include "dataplane/dpdk/queue_pump.h"
#include "dataplane/dpdk/resources.h"

namespace lb::dataplane::dpdk {
namespace {

// Telemetry callbacks get the command, not a context: one callback looks the reply up.
std::mutex g_telemetry_mu;
std::map<std::string, std::function<std::optional<TelemetryDict>()>>& TelemetryReplies() {
  static auto* replies = new std::map<std::string, std::function<std::optional<TelemetryDict>()>>();
  return *replies;
}

int AnswerTelemetry(const char* command, const char*, rte_tel_data* d) {
  std::function<std::optional<TelemetryDict>()> reply;
  {
    std::lock_guard<std::mutex> lock(g_telemetry_mu);
    auto it = TelemetryReplies().find(command);
    if (it == TelemetryReplies().end()) return -1;
    reply = it->second;
  }
  const std::optional<TelemetryDict> dict = reply();
  if (!dict) return -1;
  rte_tel_data_start_dict(d);
  for (const auto& [name, value] : *dict) rte_tel_data_add_dict_u64(d, name.c_str(), value);
  return 0;
}

}  // namespace

uint64_t Cycles() { return rte_get_tsc_cycles(); }
uint64_t CyclesPerSecond() { return rte_get_tsc_hz(); }
void SleepMicros(uint32_t us) { rte_delay_us_sleep(us); }
uint64_t Random64() { return rte_rand(); }
uint32_t WorkerLcores() { return rte_lcore_count() - 1; }
std::string LastError() { return rte_strerror(rte_errno); }

absl::Status EnablePacketCapture() {
  if (rte_pdump_init() != 0) return absl::UnavailableError(absl::StrFormat("rte_pdump_init: %s", LastError()));
  return absl::OkStatus();
}
void DisablePacketCapture() { rte_pdump_uninit(); }

void RegisterTelemetryCommand(const std::string& command, const std::string& help,
                              std::function<std::optional<TelemetryDict>()> reply) {
  {
    std::lock_guard<std::mutex> lock(g_telemetry_mu);
    TelemetryReplies()[command] = std::move(reply);
  }
  rte_telemetry_register_cmd(command.c_str(), AnswerTelemetry, help.c_str());
}

uint32_t ReceiveInto(const Port& port, uint16_t queues, MbufRing& ring) {
  uint32_t received = 0;
  rte_mbuf* pkts[kMaxBurst];
  for (uint16_t q = 0; q < queues; ++q) {
    const uint16_t n = rte_eth_rx_burst(port.id(), q, pkts, kMaxBurst);
    if (n == 0) continue;
    received += n;
    const unsigned queued = rte_ring_sp_enqueue_burst(ring.get(), reinterpret_cast<void**>(pkts), n, nullptr);
    if (queued < n) rte_pktmbuf_free_bulk(pkts + queued, n - queued);
  }
  return received;
}

}  // namespace lb::dataplane::dpdk
