// Flow-state sharing between LB nodes (docs/flow-sync.md): what a worker tells its peers
// about the flows it pins, and the datagrams that carry it.
//
// A worker that pins a DSR flow to a backend (a new flow, a flow moved off a backend, or
// an active flow every refresh interval), or that carries a NAT session, queues a
// SyncedFlow for the node's sync thread,
// which batches them into authenticated UDP datagrams to the peer nodes. A node that
// receives one hands it to every worker (which one the NIC's RSS or the kernel's fanout
// gives the flow is unknowable), and each puts it in its flow table as a learned entry:
// should ECMP move the flow here, its packets find the backend the flow began on, not the
// one the current Maglev table gives. A NAT session also names its SNAT address and
// port: a node that learns it adopts the session (nat.h, AdoptedTable), so that it can
// translate both ways, exactly as the session's node did, should the client's packets or
// the backend's replies come here.
//
// Datagram (all integers big-endian):
//   0  "LBFS"   4  version (2)   5  type (1: flows, 2: dump request)   6  record count
//   8  stamp: the sender's wall clock in microseconds since the Unix epoch, made strictly
//      increasing per sender (StampClock): it dates the datagram and orders the sender's.
//   16 records, then an 8-byte SipHash-2-4 tag over all before it, keyed by the cluster's
//      flow-hash secret and the sender's address (SenderKey): a datagram is good only as
//      coming from the node that sent it, and only once (ReplayGuard).
// Record: flags (bit 0: client and VIP are IPv6; bit 1: the backend is; bit 2: a NAT
// session), protocol, state (FlowState), 0, client port, VIP port, backend port, SNAT
// port (NAT; else 0), then the client, VIP and backend addresses (4 or 16 bytes each),
// and for NAT the SNAT address (of the backend's family): 24 bytes for IPv4, 28 for a
// NAT session.
//
// Pure logic: worker lcores use SyncedFlow; the codec runs on the sync thread.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/flow_key.h"
#include "common/hash.h"
#include "common/ip_address.h"

namespace lb::dataplane {

// A flow and the backend it is pinned to (an rte_ring element between workers and the
// sync thread).
struct SyncedFlow {
  FlowKey key;  // client -> VIP, ports in network order
  IpAddress backend;
  uint16_t backend_port = 0;  // host order; 0: the VIP's port
  uint8_t state = 0;          // FlowState
  bool nat = false;           // a NAT session: the backend sees it from snat:snat_port
  IpAddress snat;             // NAT: the session's source address toward the backend
  uint16_t snat_port = 0;     // NAT: its source port, host order
  uint16_t pad = 0;

  bool operator==(const SyncedFlow&) const = default;
};
static_assert(sizeof(SyncedFlow) % 4 == 0);

namespace flow_sync {

inline constexpr uint16_t kDefaultPort = 7300;
inline constexpr uint8_t kVersion = 2;
inline constexpr size_t kHeaderLen = 16;
inline constexpr size_t kTagLen = 8;
// The most a datagram carries: it stays under a 1500-byte MTU with IPv6 and UDP headers.
inline constexpr size_t kMaxDatagram = 1400;

enum class MessageType : uint8_t { kFlows = 1, kDumpRequest = 2 };

// The key of the datagrams' tags, derived from the cluster's flow-hash secret (every node
// has it: they must agree on the flow hash anyway).
SipKey KeyFromSecret(std::string_view secret);

// The key of the tags of `sender`'s datagrams: the sender's address, which the receiver
// takes from the datagram's source, is bound into each tag, so a datagram captured on its
// way from one node cannot pass as another's.
SipKey SenderKey(const SipKey& cluster_key, const IpAddress& sender);

// Bytes a flow takes in a datagram.
size_t RecordLength(const SyncedFlow& f);

// Encodes as many of `flows` as fit into one datagram in `out` (replaced); returns how
// many. A dump request carries no flows.
// many. A dump request carries no flows. `sender_key`: SenderKey of this node.
size_t Encode(const SipKey& sender_key, MessageType type, uint64_t stamp, std::span<const SyncedFlow> flows,
              std::vector<uint8_t>& out);

struct Message {
  MessageType type = MessageType::kFlows;
  uint64_t stamp = 0;
  std::vector<SyncedFlow> flows;
};
// Authenticates and decodes a datagram. `sender_key`: SenderKey of its source address.
// Errors: a bad tag (not from that node of this cluster), a version or type this node does
// not know, a malformed record. Whether it is fresh is the ReplayGuard's question.
absl::StatusOr<Message> Decode(const SipKey& sender_key, std::span<const uint8_t> datagram);

// A sender's stamps: its clock, but never twice the same nor going back (the clock may
// step back, or two datagrams fall in one microsecond).
class StampClock {
 public:
  uint64_t Next(uint64_t now_us) { return last_ = now_us > last_ ? now_us : last_ + 1; }

 private:
  uint64_t last_ = 0;
};

// What a receiver remembers of one sender, so that each of its datagrams is taken at most
// once: a datagram is fresh when its stamp is above every stamp taken from the sender
// before, and within `max_skew_us` of the receiver's clock (which also bounds what can be
// replayed to a receiver that restarted and remembers nothing: datagrams of the last
// `max_skew_us`, once each). A sender that restarts goes on with later stamps. Datagrams
// from one sender arrive in order (one socket, one path), so nothing is lost by refusing
// an older stamp.
class ReplayGuard {
 public:
  enum class Verdict { kFresh, kReplayed, kOutOfWindow };
  explicit ReplayGuard(uint64_t max_skew_us) : max_skew_us_(max_skew_us) {}
  // Call only for an authenticated datagram; a fresh one's stamp is remembered.
  Verdict Check(uint64_t stamp, uint64_t now_us);

 private:
  uint64_t max_skew_us_;
  uint64_t last_ = 0;
};

}  // namespace flow_sync
}  // namespace lb::dataplane
