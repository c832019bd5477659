// DecapProgram: one loaded instance of the dsr_decap BPF program (dataplane/bpf), with
// its own VIP map, attached to one interface's tc ingress (clsact, direct action). One
// per pod: a pod decapsulates exactly its own Services' VIPs.
//
// The filter is identified on the interface by a fixed handle and priority (kFilter*),
// so that a restarted agent finds what an earlier one attached and replaces it in one
// step (BPF_TC_F_REPLACE: no packet sees the interface without a program).
//
// tc calls act in the calling thread's network namespace (see netns.h). Not thread-safe:
// one owner.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "common/ip_address.h"
#include "dataplane/bpf/dsr_decap.h"

struct dsr_decap_bpf;

namespace lb::control::dsr_node {

inline constexpr uint32_t kFilterHandle = 0x1d5;
inline constexpr uint32_t kFilterPriority = 1;

using DecapCounters = std::array<uint64_t, DSR_DECAP_COUNTERS>;
// The counters' names, by index, for metrics and logs ("decapsulated", "not_tunnel", ...).
const char* DecapCounterName(int index);

class DecapProgram {
 public:
  // Loads the program; `gue_port` is lbd's --gue_port (0: no GUE).
  static absl::StatusOr<std::unique_ptr<DecapProgram>> Load(uint16_t gue_port);
  ~DecapProgram();
  DecapProgram(const DecapProgram&) = delete;
  DecapProgram& operator=(const DecapProgram&) = delete;

  // Makes the VIP map hold exactly `vips` (at most DSR_DECAP_MAX_VIPS).
  absl::Status SetVips(const std::vector<IpAddress>& vips);
  // Attaches to `ifindex`'s ingress (creating its clsact qdisc if need be), replacing
  // whatever filter holds our handle and priority.
  absl::Status AttachIngress(int ifindex);
  DecapCounters Counters() const;

  int prog_fd() const;
  uint32_t prog_id() const { return prog_id_; }

 private:
  explicit DecapProgram(dsr_decap_bpf* skeleton);
  dsr_decap_bpf* skeleton_;
  uint32_t prog_id_ = 0;
};

// The id of the program our filter holds on `ifindex`'s ingress; 0 when there is none.
absl::StatusOr<uint32_t> AttachedProgramId(int ifindex);
// The counters of the loaded program `prog_id` (one that DecapProgram loaded, in this
// process or another), found through the program's maps.
absl::StatusOr<DecapCounters> CountersOfProgram(uint32_t prog_id);
// Removes our filter from `ifindex`'s ingress; no error when it is not there.
absl::Status DetachIngress(int ifindex);

}  // namespace lb::control::dsr_node
