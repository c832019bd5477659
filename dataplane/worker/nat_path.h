// The worker's NAT path (docs/dataplane.md, NAT): the client side of a NAT service, the
// replies that come to an SNAT address, the sessions adopted from peer nodes, and the
// ICMP errors about any of them.
//
// A client's first packet takes an SNAT port (NatTable) and a flow entry naming the
// session; its packets go to the backend from SNAT:port, and the backend's replies,
// found by SNAT address and port, go back to the client from the VIP. The worker that
// owns the port translates them: a reply another worker received is handed over
// (BurstContext::ToWorker). Sessions a peer node announced are adopted (AdoptedTable):
// this node translates them exactly as their node did, should their packets come here.
// Worker lcore only, except table().in_use().
#pragma once

#include <rte_mbuf.h>

#include <cstdint>

#include "common/flow_key.h"
#include "common/millis.h"
#include "dataplane/counters.h"
#include "dataplane/flow_sync_wire.h"
#include "dataplane/flow_table.h"
#include "dataplane/nat.h"
#include "dataplane/rewrite.h"
#include "dataplane/snapshot.h"
#include "dataplane/worker/burst.h"

namespace lb::dataplane {

class FlowAnnouncer;

class NatPath {
 public:
  struct Options {
    uint32_t worker_id = 0;
    // The workers that share the SNAT ports (ids 0..workers-1), and the SNAT pool (as
    // DataplaneConfig::nat: its address count and port range).
    uint32_t workers = 1;
    uint32_t addresses = 0;
    uint16_t port_min = 1024;
    uint16_t port_max = 65535;
    uint64_t port_secret = 0;       // seeds the random choice of ports; 0: lowest free first
    uint32_t adopted_capacity = 0;  // the peers' sessions this worker can adopt
  };

  NatPath(const Options& options, FlowTable& flows, FlowAnnouncer& announcer, const FlowHasher& hasher,
          WorkerCounters& counters);

  // Whether this worker translates at all (it has SNAT addresses).
  bool enabled() const { return nat_.size() > 0; }
  void BeginBurst() { nat_.BeginBurst(); }

  // A packet of a known flow reads its bucket, then the session the bucket names, a
  // second dependent miss: so the pipeline looks the flow up ahead of its turn (the entry
  // is kept in meta.flow) and prefetches its session.
  void LookUpAhead(PacketMeta& meta, Millis now) {
    if (meta.tag.fingerprint == 0) return;
    meta.flow = flows_.Find(meta.tag, now);
    const FlowEntry* e = meta.flow.entry;
    if (e != nullptr && IsSessionEntry(*e) && e->backend_slot < nat_.size()) nat_.Prefetch(e->backend_slot);
  }

  // A client's TCP/UDP packet to a NAT service.
  void HandleClientSide(BurstContext& ctx, rte_mbuf* m, const PacketMeta& meta, const ServiceRecord& svc);
  // What comes to the SNAT address at `address` (its index in the snapshot's pool).
  void HandleSnat(BurstContext& ctx, rte_mbuf* m, const PacketMeta& meta, uint32_t address);
  // A reply to another node's SNAT address, of a session this node adopted: translated,
  // and true; false when it is none.
  bool HandleAdoptedReply(BurstContext& ctx, rte_mbuf* m, const PacketMeta& meta);
  bool has_adopted() const { return adopted_.in_use() != 0; }
  // An ICMP error about a reply this node translated (VIP -> client), quoted as the client
  // got it: it goes to the backend, quoting the packet as the backend sent it.
  void HandleIcmpFromClientSide(BurstContext& ctx, const ServiceRecord& svc, rte_mbuf* m, const PacketMeta& meta);

  // Flow sync: adopts a peer's session (or refreshes the adoption); whether it took it.
  bool Adopt(const Snapshot& snap, const SyncedFlow& f, Millis now);

  // The backend (slot and generation) of the live session, own or adopted, that flow entry
  // `e` of `client` names; false when it names none.
  bool SessionBackend(const FlowEntry& e, const FlowKey& client, Millis now, uint32_t& slot, uint32_t& generation);

  // Frees a slice of the expired sessions, own and adopted.
  void Sweep(Millis now, uint32_t buckets);

  const NatTable& table() const { return nat_; }

 private:
  // The live session a flow entry names, or nullptr.
  NatSession* SessionOf(const FlowEntry& e, const FlowKey& key, Millis now);
  // A packet of session `s` (`from_client`: of the client side) keeps it alive; flow sync
  // announces it once established (on a packet of the client's), then every interval.
  void RefreshSession(const Snapshot& snap, NatSession& s, const ParsedPacket& p, Millis now, bool from_client);
  // Adopt: whether this worker's entry `e` for `client` is its own session whose
  // handshake never completed here, which it then ends so that the peer's is adopted.
  bool YieldToPeer(const FlowEntry& e, const FlowKey& client, Millis now);
  // Another SNAT port when the one allocated (`index`) would give the backend the 4-tuple
  // of an adopted session; kNone when a few tries find none.
  uint32_t AvoidAdopted(const Snapshot& snap, uint32_t index, const FlowKey& client, const IpAddress& backend,
                        uint16_t backend_port_be, uint32_t preferred, const bool* family_v4, Millis now);
  // A session's packet (own or adopted), translated: toward the backend `b` as `to` says
  // (from the session's SNAT address and port), or toward the client from the VIP.
  void ToBackend(BurstContext& ctx, rte_mbuf* m, const ParsedPacket& p, const BackendRecord& b,
                 const rewrite::NatEndpoints& to);
  void ToClient(BurstContext& ctx, rte_mbuf* m, const ParsedPacket& p, const FlowKey& client);
  // ICMP errors about a session (own or adopted): one about what the backend sent goes to
  // the client, quoting what the client sent; one about what the client got (from the
  // VIP) goes to the backend `b` (nullptr: gone), quoting what it sent.
  void ErrorToClient(BurstContext& ctx, rte_mbuf* m, const ParsedPacket& p, const FlowKey& client,
                     const IpAddress& backend);
  void ErrorToBackend(BurstContext& ctx, rte_mbuf* m, const ParsedPacket& p, const BackendRecord* b,
                      const IpAddress& backend, uint16_t backend_port_be, const IpAddress& snat, uint16_t snat_port_be);

  // Adopted sessions: the live one a flow entry names, or nullptr; the one whose reply (or
  // ICMP error about one) `meta` is, or nullptr; and their translation each way.
  AdoptedSession* AdoptedOf(const FlowEntry& e, Millis now);
  AdoptedSession* AdoptedReply(const PacketMeta& meta, Millis now);
  void AdoptedToBackend(BurstContext& ctx, rte_mbuf* m, const ParsedPacket& p, AdoptedSession& a,
                        const BackendRecord& b);
  void AdoptedToClient(BurstContext& ctx, rte_mbuf* m, const ParsedPacket& p, AdoptedSession& a);
  // A packet of adopted session `a` came here: this node carries it from now on (counted
  // as rescued, and announced), and keeps it and its entries alive.
  void CarryAdopted(const Snapshot& snap, AdoptedSession& a, const ParsedPacket& p, Millis now);

  const uint32_t worker_id_;
  NatTable nat_;
  AdoptedTable adopted_;
  FlowTable& flows_;
  FlowAnnouncer& announcer_;
  const FlowHasher& hasher_;
  WorkerCounters& counters_;
};

}  // namespace lb::dataplane
