// NatTable: one worker's NAT sessions, which are also its SNAT port allocator.
//
// A session is one connection translated as client:port -> VIP:port  ==>  SNAT:port ->
// backend:port. Sessions are not hashed: there is one per (protocol, SNAT address, port
// this worker owns), so a reply, addressed to SNAT:port, finds its session by index. The
// client side finds it through the worker's flow table, whose entry for the client's
// 5-tuple holds the session index and generation (instead of a backend).
//
// Ports are partitioned over the workers: port p belongs to worker (p - port_min) %
// workers, which is how a worker that receives a reply it does not own knows where to
// hand it. A session is free once its deadline passes; freeing bumps its generation, so
// flow entries that still name it are recognised as stale. A port is never taken from a
// live session: when none is free the new connection is refused (and counted).
//
// Thread model: worker lcore only, except in_use() (any thread, relaxed).
#pragma once

#include <netinet/in.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "common/flow_key.h"
#include "dataplane/flow_table.h"
#include "common/ip_address.h"

namespace lb::dataplane {

struct NatSession {
  FlowKey client;  // as the client sent it: client -> VIP
  IpAddress backend;
  uint16_t backend_port_be = 0;
  // This session's SNAT port and address index, set by Allocate. They follow from the
  // session's index (NatTable::PortOf, AddressOf), but that costs divisions a packet.
  uint16_t snat_port_be = 0;
  uint8_t snat_address = 0;
  uint8_t state = 0;  // FlowState
  bool in_use = false;
  bool announced = false;     // flow sync: the peers know it
  uint32_t generation = 1;    // 24 bits are kept in the flow entry
  uint32_t backend_slot = 0;  // the backend, as a flow entry pins it
  uint32_t backend_generation = 0;
  Millis deadline = 0;
  // The client side's flow entry, refreshed by replies too (checked before use that it
  // still names this session: the way may have been reclaimed for another flow).
  FlowEntry* entry = nullptr;
  Millis* entry_deadline = nullptr;
};

class NatTable {
 public:
  static constexpr uint32_t kNone = UINT32_MAX;

  // Sessions for `num_addresses` SNAT addresses, ports [port_min, port_max], of which this
  // worker (`worker` of `workers`) owns every workers-th. `port_secret` seeds the choice
  // among free ports, so that nobody outside can predict the next one (RFC 6056 §3.3);
  // 0 hands out the lowest free port first (tests).
  NatTable(uint32_t num_addresses, uint16_t port_min, uint16_t port_max, uint32_t worker, uint32_t workers,
           uint64_t port_secret = 0);

  // Worker lcore, at the start of each burst: the scan for expired sessions that a new
  // connection may do when its range is dry is bounded per burst (kReclaimPerBurst).
  void BeginBurst() { reclaim_budget_ = kReclaimPerBurst; }
  uint32_t reclaim_budget() const { return reclaim_budget_; }
  static constexpr uint32_t kReclaimPerBurst = 512;

  uint32_t num_addresses() const { return num_addresses_; }
  // The worker that owns `port` (host order); kNone when outside the range.
  uint32_t OwnerOf(uint16_t port) const {
    if (port < port_min_ || port > port_max_) return kNone;
    return uint32_t(port - port_min_) % workers_;
  }
  // Ports this worker owns of each address and protocol.
  uint32_t ports_per_address() const { return per_address_; }

  // The session of a reply to (address, port) of protocol `protocol` (TCP or UDP), or
  // nullptr when this worker does not own the port or the session is not live.
  NatSession* Lookup(uint8_t protocol, uint32_t address, uint16_t port, Millis now) {
    if (OwnerOf(port) != worker_ || address >= num_addresses_) return nullptr;
    NatSession& s = sessions_[Index(protocol, address, (port - port_min_) / workers_)];
    return s.in_use && !Expired(s.deadline, now) ? &s : nullptr;
  }
  NatSession& at(uint32_t index) { return sessions_[index]; }
  // Starts bringing session `index` (both of its cache lines) toward the cache.
  void Prefetch(uint32_t index) const {
    const char* p = reinterpret_cast<const char*>(&sessions_[index]);
    __builtin_prefetch(p);
    __builtin_prefetch(p + sizeof(NatSession) - 1);
  }
  uint32_t IndexOf(const NatSession& s) const { return uint32_t(&s - sessions_.get()); }
  uint32_t size() const { return num_sessions_; }

  // Takes a free session of `protocol`, trying address `preferred` first, then the others
  // of the same family (`family_v4[a]` says each address's family). kNone when every
  // port is held by a live session.
  uint32_t Allocate(uint8_t protocol, uint32_t preferred, const bool* family_v4, Millis now);
  // Frees a session now (its connection was replaced).
  void Release(uint32_t index);
  // Frees the expired sessions among the next `count` (round robin); returns how many.
  uint32_t Sweep(Millis now, uint32_t count);

  // Live sessions (ports in use) of address `a`, both protocols. Any thread.
  uint64_t in_use(uint32_t a) const { return in_use_[a].load(std::memory_order_relaxed); }

 private:
  uint32_t AddressOf(uint32_t index) const { return (index / per_address_) % num_addresses_; }
  uint16_t PortOf(uint32_t index) const { return uint16_t(port_min_ + worker_ + (index % per_address_) * workers_); }
  uint32_t Index(uint8_t protocol, uint32_t address, uint32_t slot) const {
    return ((protocol == IPPROTO_TCP ? 0 : 1) * num_addresses_ + address) * per_address_ + slot;
  }
  // Frees expired sessions of one (protocol, address) range, up to `count` examined.
  void Reclaim(uint32_t range, Millis now, uint32_t count);
  void Free(uint32_t index);

  uint32_t num_addresses_, worker_, workers_;
  uint16_t port_min_, port_max_;
  uint32_t per_address_;
  std::unique_ptr<NatSession[]> sessions_;
  uint32_t num_sessions_;
  // Per (protocol, address) range: a stack of free session indexes, and a reclaim cursor.
  std::vector<std::vector<uint32_t>> free_;
  std::vector<uint32_t> reclaim_cursor_;
  uint64_t rng_;  // xorshift64 state; 0: no randomisation
  uint32_t reclaim_budget_ = kReclaimPerBurst;
  uint32_t sweep_cursor_ = 0;
  std::unique_ptr<std::atomic<uint64_t>[]> in_use_;
};

// A NAT session another LB node opened, learned through flow sync (docs/flow-sync.md):
// should ECMP bring its client's packets here, or the ToR route its SNAT address here
// (the backup announcement of a dead node's SNAT prefix), this node translates them
// exactly as the session's node did, so the connection goes on. Two flow entries name
// it: the client's 5-tuple (client -> VIP) and the reply's (backend -> SNAT:port).
struct AdoptedSession {
  FlowKey client;  // as the client sent it: client -> VIP
  IpAddress snat;
  IpAddress backend;
  uint16_t snat_port_be = 0;
  uint16_t backend_port_be = 0;
  uint32_t backend_slot = 0;  // the backend in this node's snapshot
  uint32_t backend_generation = 0;
  uint32_t generation = 1;  // 24 bits are kept in the flow entries
  uint8_t state = 0;        // FlowState
  bool in_use = false;
  bool carried = false;  // a packet of it came here: this node carries (and announces) it
  Millis deadline = 0;
  FlowTable::Slot client_entry, reply_entry;  // checked before use, as NatSession::entry

  // The 5-tuple of the backend's replies.
  FlowKey ReplyKey() const {
    FlowKey k = client;
    k.src = backend;
    k.dst = snat;
    k.src_port_be = backend_port_be;
    k.dst_port_be = snat_port_be;
    return k;
  }
};

// One worker's adopted sessions: a fixed array with a free list. A session is free once
// its deadline passes (Sweep, or Take when none is free); freeing bumps its generation,
// so flow entries that still name it are recognised as stale.
//
// Thread model: worker lcore only.
class AdoptedTable {
 public:
  static constexpr uint32_t kNone = UINT32_MAX;

  explicit AdoptedTable(uint32_t capacity);

  // A free session (marked in use, its other fields the caller's), or kNone when every
  // one is live.
  uint32_t Take(Millis now);
  AdoptedSession& at(uint32_t index) { return sessions_[index]; }
  uint32_t IndexOf(const AdoptedSession& s) const { return uint32_t(&s - sessions_.get()); }
  uint32_t size() const { return capacity_; }
  // Sessions in use, live or expired but not yet swept: 0 lets the hot path skip them.
  uint32_t in_use() const { return in_use_; }
  void Release(uint32_t index);
  // Frees the expired sessions among the next `count` (round robin); returns how many.
  uint32_t Sweep(Millis now, uint32_t count);

 private:
  uint32_t capacity_;
  std::unique_ptr<AdoptedSession[]> sessions_;
  std::vector<uint32_t> free_;
  uint32_t in_use_ = 0;
  uint32_t sweep_cursor_ = 0;
};

}  // namespace lb::dataplane
