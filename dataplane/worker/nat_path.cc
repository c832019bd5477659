#include "dataplane/worker/nat_path.h"

#include <rte_byteorder.h>
#include <rte_mbuf.h>

#include <algorithm>
#include <array>

#include "dataplane/worker/flow_state.h"
#include "dataplane/worker/flow_announcer.h"

namespace lb::dataplane {

NatPath::NatPath(const Options& options, FlowTable& flows, FlowAnnouncer& announcer, const FlowHasher& hasher,
                 WorkerCounters& counters)
    : worker_id_(options.worker_id),
      nat_(options.addresses, options.port_min, options.port_max, options.worker_id, options.workers,
           options.port_secret),
      adopted_(options.adopted_capacity),
      flows_(flows),
      announcer_(announcer),
      hasher_(hasher),
      counters_(counters) {}

NatSession* NatPath::SessionOf(const FlowEntry& e, const FlowKey& key, Millis now) {
  if (!IsSessionEntry(e) || e.backend_slot >= nat_.size()) return nullptr;
  NatSession& s = nat_.at(e.backend_slot);
  if (!s.in_use || s.generation != e.backend_generation || Expired(s.deadline, now) || !(s.client == key)) {
    return nullptr;
  }
  return &s;
}

bool NatPath::SessionBackend(const FlowEntry& e, const FlowKey& client, Millis now, uint32_t& slot,
                             uint32_t& generation) {
  if (const NatSession* s = SessionOf(e, client, now)) {
    slot = s->backend_slot;
    generation = s->backend_generation;
    return true;
  }
  if (const AdoptedSession* a = AdoptedOf(e, now); a != nullptr && a->client == client) {
    slot = a->backend_slot;
    generation = a->backend_generation;
    return true;
  }
  return false;
}

void NatPath::Sweep(Millis now, uint32_t buckets) {
  if (nat_.size() != 0) {
    if (const uint32_t freed = nat_.Sweep(now, buckets)) counters_.Add(Event::kNatExpired, freed);
  }
  if (adopted_.in_use() != 0) {
    if (const uint32_t freed = adopted_.Sweep(now, buckets)) counters_.Add(Event::kNatExpired, freed);
  }
}

void NatPath::RefreshSession(const Snapshot& snap, NatSession& s, const ParsedPacket& p, Millis now, bool from_client) {
  // Only the client's ACK completes the handshake: a SYN-ACK from the backend to a SYN
  // nobody will acknowledge (a spoofed source) keeps the handshake's short timeout.
  const FlowState state = from_client ? NextState(FlowState(s.state), p) : NextReplyState(FlowState(s.state), p);
  s.state = uint8_t(state);
  // Nor do the backend's SYN-ACK retransmissions keep a half-open session alive.
  if (!from_client && state == FlowState::kTcpSynSent) return;
  const Millis deadline = now + snap.Timeout(state);
  if (announcer_.enabled() && Announceable(state) &&
      (s.announced ? announcer_.RefreshDue(s.deadline, deadline) : from_client)) {
    s.announced = true;
    announcer_.Announce(SessionAnnouncement(s.client, s.backend, s.backend_port_be,
                                            snap.nat().addresses[s.snat_address], s.snat_port_be, state));
  }
  s.deadline = deadline;
  // The client side's entry lives as long as the session, also when only replies flow.
  if (s.entry != nullptr && IsSessionEntry(*s.entry) && s.entry->backend_slot == nat_.IndexOf(s) &&
      s.entry->backend_generation == s.generation) {
    const uint8_t entry_state = uint8_t(kNatEntryFlag | uint8_t(state));
    if (s.entry->state != entry_state) s.entry->state = entry_state;
    if (int32_t(deadline - *s.entry_deadline) > kDeadlineSlack) *s.entry_deadline = deadline;
  }
}

void NatPath::HandleClientSide(BurstContext& ctx, rte_mbuf* m, const PacketMeta& meta, const ServiceRecord& svc) {
  const Snapshot& snap = ctx.snap;
  const Millis now = ctx.now;
  const ParsedPacket& p = meta.packet;
  FlowTable::Slot slot = FindFlow(flows_, meta, now);
  counters_.Add(slot ? Event::kFlowHits : Event::kFlowMisses);
  if (slot && IsAdoptedEntry(*slot.entry)) [[unlikely]] {
    if (AdoptedSession* a = AdoptedOf(*slot.entry, now); a != nullptr && a->client == p.key) {
      if (const BackendRecord* b = snap.Pinned(svc, a->backend_slot, a->backend_generation)) {
        return AdoptedToBackend(ctx, m, p, *a, *b);
      }
      // Its backend went away: the connection cannot go on, and the packet starts a new one.
      adopted_.Release(adopted_.IndexOf(*a));
      counters_.Add(Event::kFlowRepicks);
    }
  }
  NatSession* s = slot ? SessionOf(*slot.entry, p.key, now) : nullptr;
  uint32_t index = s != nullptr ? slot.entry->backend_slot : NatTable::kNone;
  const BackendRecord* b = nullptr;
  if (s != nullptr) {
    b = snap.Pinned(svc, s->backend_slot, s->backend_generation);
    // The connection cannot move to another backend: when its backend went away, or a
    // SYN reopens a closed one, the session ends and the packet starts a new one.
    if (b == nullptr || (IsBareSyn(p) && FlowState(s->state) == FlowState::kTcpClosing)) {
      nat_.Release(index);
      counters_.Add(Event::kFlowRepicks);
      s = nullptr;
    }
  }
  if (s == nullptr) {
    // A TCP connection through NAT starts with a SYN: anything else without a session
    // (a spoofed ACK, or a connection whose session is gone) would hold an SNAT port for
    // nothing. The client's stack retransmits, and the backend would reset it anyway.
    if (p.key.protocol == IPPROTO_TCP && !IsBareSyn(p)) return ctx.Drop(m, DropReason::kNatNotSyn);
    uint32_t backend_slot = 0;
    b = snap.Pick(svc, hasher_.ServiceHash(p.key, svc.hash_fields, meta.tag.hash), &backend_slot);
    if (b == nullptr) return ctx.Drop(m, DropReason::kNoBackend);
    // An SNAT address of the VIP's family, chosen by the flow hash, then any other.
    const auto& addresses = snap.nat().addresses;
    const uint32_t count = std::min<uint32_t>(uint32_t(addresses.size()), nat_.num_addresses());
    bool family_v4[kMaxSnatAddresses];
    uint32_t same_family = 0;
    for (uint32_t a = 0; a < count; ++a) same_family += (family_v4[a] = addresses[a].IsV4()) == p.is_v4;
    if (same_family == 0) return ctx.Drop(m, DropReason::kNatPortsExhausted);
    uint32_t preferred = 0;
    for (uint32_t a = 0, k = meta.tag.hash % same_family; a < count; ++a) {
      if (family_v4[a] == p.is_v4 && k-- == 0) {
        preferred = a;
        break;
      }
    }
    index = nat_.Allocate(p.key.protocol, preferred, family_v4, now);
    const uint16_t backend_port_be = b->port != 0 ? rte_cpu_to_be_16(b->port) : p.key.dst_port_be;
    if (index != NatTable::kNone && adopted_.in_use() != 0) {
      index = AvoidAdopted(snap, index, p.key, b->address, backend_port_be, preferred, family_v4, now);
    }
    if (index == NatTable::kNone) return ctx.Drop(m, DropReason::kNatPortsExhausted);
    if (!slot) {
      bool reclaimed = false;
      slot = flows_.Claim(meta.tag, now, &reclaimed);
      if (!slot) {
        nat_.Release(index);
        return ctx.Drop(m, DropReason::kNatFlowTableFull);  // untracked, its replies would be lost
      }
      counters_.Add(Event::kFlowInserts);
      if (reclaimed) counters_.Add(Event::kFlowExpired);
    }
    s = &nat_.at(index);
    s->client = p.key;
    s->backend = b->address;
    s->backend_port_be = backend_port_be;
    s->backend_slot = backend_slot;
    s->backend_generation = b->generation;
    s->state = uint8_t(InitialState(p));
    s->announced = false;
    s->entry = slot.entry;
    s->entry_deadline = slot.deadline;
    slot.entry->backend_slot = index;
    slot.entry->backend_generation = s->generation;
    slot.entry->state = uint8_t(kNatEntryFlag | s->state);
    counters_.Add(Event::kNatSessions);
    ctx.NewFlow();
    const Millis deadline = now + snap.Timeout(FlowState(s->state));
    s->deadline = deadline;
    *slot.deadline = deadline;
  } else {
    RefreshSession(snap, *s, p, now, /*from_client=*/true);
  }
  ToBackend(ctx, m, p, *b, {&snap.nat().addresses[s->snat_address], s->snat_port_be, &s->backend, s->backend_port_be});
}

inline void NatPath::ToBackend(BurstContext& ctx, rte_mbuf* m, const ParsedPacket& p, const BackendRecord& b,
                               const rewrite::NatEndpoints& to) {
  const Snapshot& snap = ctx.snap;
  if (!b.on_link && !snap.gateway_known()) return ctx.Drop(m, DropReason::kNoNextHop);
  if (!rewrite::NatTranslate(m, p, to, b.on_link ? b.neighbor_mac : snap.next_hop().gateway_mac, snap.next_hop())) {
    return ctx.Drop(m, DropReason::kNoHeadroom);
  }
  ctx.ToBackend(m, Event::kNatForwarded, b, p.ip_len);
}

inline void NatPath::ToClient(BurstContext& ctx, rte_mbuf* m, const ParsedPacket& p, const FlowKey& client) {
  const Snapshot& snap = ctx.snap;
  if (!snap.gateway_known()) return ctx.Drop(m, DropReason::kNoNextHop);  // clients are beyond it
  const rewrite::NatEndpoints to{&client.dst, client.dst_port_be, &client.src, client.src_port_be};
  if (!rewrite::NatTranslate(m, p, to, snap.next_hop().gateway_mac, snap.next_hop())) {
    return ctx.Drop(m, DropReason::kNoHeadroom);
  }
  ctx.ToWire(m, Event::kNatReplies);
}

void NatPath::HandleSnat(BurstContext& ctx, rte_mbuf* m, const PacketMeta& meta, uint32_t address) {
  const ParsedPacket& p = meta.packet;
  if (p.kind == PacketKind::kIcmpEcho) return ctx.AnswerEcho(m, p);
  const bool error = p.kind == PacketKind::kIcmpError;
  if ((p.kind != PacketKind::kTcp && p.kind != PacketKind::kUdp && !error) || p.is_fragment) {
    return ctx.Drop(m, DropReason::kNatNoSession);
  }
  if (p.ttl <= 1) return ctx.Drop(m, DropReason::kTtlExceeded);
  // A reply to SNAT:port (or an error quoting a packet from it) belongs to the port's owner.
  const uint16_t port = rte_be_to_cpu_16(p.key.dst_port_be);
  const uint32_t owner = nat_.OwnerOf(port);
  if (owner == NatTable::kNone) return ctx.Drop(m, DropReason::kNatNoSession);
  if (owner != worker_id_) return ctx.ToWorker(m, uint16_t(owner));
  NatSession* s = nat_.Lookup(p.key.protocol, address, port, ctx.now);
  if (s == nullptr || !(s->backend == p.key.src) || s->backend_port_be != p.key.src_port_be) {
    // Not a session of this node's: one it adopted from a peer (this node came back, and
    // its SNAT address with it, while a peer carried its sessions)?
    if (adopted_.in_use() != 0 && HandleAdoptedReply(ctx, m, meta)) return;
    return ctx.Drop(m, DropReason::kNatNoSession);
  }
  if (error) return ErrorToClient(ctx, m, p, s->client, s->backend);
  if (!ctx.snap.gateway_known()) return ctx.Drop(m, DropReason::kNoNextHop);  // clients are beyond it
  RefreshSession(ctx.snap, *s, p, ctx.now, /*from_client=*/false);
  ToClient(ctx, m, p, s->client);
}

uint32_t NatPath::AvoidAdopted(const Snapshot& snap, uint32_t index, const FlowKey& client, const IpAddress& backend,
                               uint16_t backend_port_be, uint32_t preferred, const bool* family_v4, Millis now) {
  // The backend would take a new connection from the 4-tuple of one it has: a port is
  // held by a session this node adopted (it came back while a peer carried its sessions).
  std::array<uint32_t, 4> skipped;
  uint32_t num_skipped = 0;
  while (index != NatTable::kNone) {
    const NatSession& s = nat_.at(index);
    const FlowKey reply{.src = backend,
                        .dst = snap.nat().addresses[s.snat_address],
                        .src_port_be = backend_port_be,
                        .dst_port_be = s.snat_port_be,
                        .protocol = client.protocol};
    const FlowTable::Slot held = flows_.Find(flows_.Tag(reply, hasher_.Hash(reply)), now);
    if (!held || AdoptedOf(*held.entry, now) == nullptr) break;
    counters_.Add(Event::kNatPortsSkipped);
    if (num_skipped == skipped.size()) {
      nat_.Release(index);
      index = NatTable::kNone;
      break;
    }
    skipped[num_skipped++] = index;  // kept until another is found, so that it is not given again
    index = nat_.Allocate(client.protocol, preferred, family_v4, now);
  }
  for (uint32_t i = 0; i < num_skipped; ++i) nat_.Release(skipped[i]);
  return index;
}

void NatPath::HandleIcmpFromClientSide(BurstContext& ctx, const ServiceRecord& svc, rte_mbuf* m,
                                       const PacketMeta& meta) {
  // Only the worker that holds the session can translate it.
  const ParsedPacket& p = meta.packet;
  const FlowTable::Slot slot = FindFlow(flows_, meta, ctx.now);
  if (const NatSession* s = slot ? SessionOf(*slot.entry, p.key, ctx.now) : nullptr) {
    return ErrorToBackend(ctx, m, p, svc.Backend(s->backend_slot, s->backend_generation), s->backend,
                          s->backend_port_be, ctx.snap.nat().addresses[s->snat_address], s->snat_port_be);
  }
  if (const AdoptedSession* a = slot ? AdoptedOf(*slot.entry, ctx.now) : nullptr; a != nullptr && a->client == p.key) {
    return ErrorToBackend(ctx, m, p, svc.Backend(a->backend_slot, a->backend_generation), a->backend,
                          a->backend_port_be, a->snat, a->snat_port_be);
  }
  ctx.Drop(m, DropReason::kIcmpUnmatched);
}

void NatPath::ErrorToClient(BurstContext& ctx, rte_mbuf* m, const ParsedPacket& p, const FlowKey& client,
                            const IpAddress& backend) {
  const Snapshot& snap = ctx.snap;
  if (!snap.gateway_known()) return ctx.Drop(m, DropReason::kNoNextHop);  // clients are beyond it
  // From the backend itself (port unreachable...): it appears to come from the VIP.
  const uint8_t* ip = rte_pktmbuf_mtod_offset(m, const uint8_t*, p.l3_offset);
  const IpAddress outer_src = p.is_v4 ? IpAddress::FromV4Bytes(ip + 12) : IpAddress::FromV6Bytes(ip + 8);
  const rewrite::NatEndpoints quoted{&client.src, client.src_port_be, &client.dst, client.dst_port_be};
  if (!rewrite::NatTranslateIcmpError(m, p, outer_src == backend ? &client.dst : nullptr, client.src, quoted,
                                      snap.next_hop().gateway_mac, snap.next_hop())) {
    return ctx.Drop(m, DropReason::kNoHeadroom);
  }
  ctx.ToWire(m, Event::kNatIcmpErrors);
}

void NatPath::ErrorToBackend(BurstContext& ctx, rte_mbuf* m, const ParsedPacket& p, const BackendRecord* b,
                             const IpAddress& backend, uint16_t backend_port_be, const IpAddress& snat,
                             uint16_t snat_port_be) {
  const Snapshot& snap = ctx.snap;
  const bool on_link = b != nullptr && b->on_link;
  if (!on_link && !snap.gateway_known()) return ctx.Drop(m, DropReason::kNoNextHop);
  const rewrite::NatEndpoints quoted{&backend, backend_port_be, &snat, snat_port_be};
  if (!rewrite::NatTranslateIcmpError(m, p, nullptr, backend, quoted,
                                      on_link ? b->neighbor_mac : snap.next_hop().gateway_mac, snap.next_hop())) {
    return ctx.Drop(m, DropReason::kNoHeadroom);
  }
  ctx.ToWire(m, Event::kNatIcmpErrors);
}

// ---- Sessions adopted from peer nodes ----

AdoptedSession* NatPath::AdoptedOf(const FlowEntry& e, Millis now) {
  if (!IsAdoptedEntry(e) || e.backend_slot >= adopted_.size()) return nullptr;
  AdoptedSession& a = adopted_.at(e.backend_slot);
  return a.in_use && a.generation == e.backend_generation && !Expired(a.deadline, now) ? &a : nullptr;
}

AdoptedSession* NatPath::AdoptedReply(const PacketMeta& meta, Millis now) {
  const ParsedPacket& p = meta.packet;
  if ((p.kind != PacketKind::kTcp && p.kind != PacketKind::kUdp && p.kind != PacketKind::kIcmpError) || p.is_fragment) {
    return nullptr;
  }
  const FlowTable::Slot slot = FindFlow(flows_, meta, now);
  AdoptedSession* a = slot ? AdoptedOf(*slot.entry, now) : nullptr;
  return a != nullptr && a->ReplyKey() == p.key ? a : nullptr;
}

bool NatPath::HandleAdoptedReply(BurstContext& ctx, rte_mbuf* m, const PacketMeta& meta) {
  AdoptedSession* a = AdoptedReply(meta, ctx.now);
  if (a == nullptr) return false;
  AdoptedToClient(ctx, m, meta.packet, *a);
  return true;
}

void NatPath::CarryAdopted(const Snapshot& snap, AdoptedSession& a, const ParsedPacket& p, Millis now) {
  const FlowState state = NextState(FlowState(a.state), p);
  a.state = uint8_t(state);
  const Millis deadline = now + snap.Timeout(state);
  const bool rescued = !a.carried;
  if (rescued) {
    // Its node is gone, or ECMP moved its packets here: this node carries it now.
    a.carried = true;
    counters_.Add(Event::kFlowsRescued);
  } else if (int32_t(deadline - a.deadline) <= kDeadlineSlack) {
    return;  // written only when the deadline moves on (as for a flow entry)
  }
  if (announcer_.enabled() && Announceable(state) && (rescued || announcer_.RefreshDue(a.deadline, deadline))) {
    announcer_.Announce(SessionAnnouncement(a.client, a.backend, a.backend_port_be, a.snat, a.snat_port_be, state));
  }
  a.deadline = deadline;
  // Both entries live as long as the session, whichever side's packets keep it alive
  // (each is checked to still name it: its way may have been reclaimed for another flow).
  for (const FlowTable::Slot& e : {a.client_entry, a.reply_entry}) {
    if (e && AdoptedOf(*e.entry, now) == &a) *e.deadline = deadline;
  }
}

void NatPath::AdoptedToBackend(BurstContext& ctx, rte_mbuf* m, const ParsedPacket& p, AdoptedSession& a,
                               const BackendRecord& b) {
  CarryAdopted(ctx.snap, a, p, ctx.now);
  ToBackend(ctx, m, p, b, {&a.snat, a.snat_port_be, &a.backend, a.backend_port_be});
}

void NatPath::AdoptedToClient(BurstContext& ctx, rte_mbuf* m, const ParsedPacket& p, AdoptedSession& a) {
  if (p.ttl <= 1) return ctx.Drop(m, DropReason::kTtlExceeded);
  if (p.kind == PacketKind::kIcmpError) return ErrorToClient(ctx, m, p, a.client, a.backend);
  CarryAdopted(ctx.snap, a, p, ctx.now);
  ToClient(ctx, m, p, a.client);
}

bool NatPath::YieldToPeer(const FlowEntry& e, const FlowKey& client, Millis now) {
  NatSession* s = SessionOf(e, client, now);
  if (s == nullptr || FlowState(s->state) != FlowState::kTcpSynSent) return false;
  nat_.Release(nat_.IndexOf(*s));
  counters_.Add(Event::kHandshakesYielded);
  return true;
}

bool NatPath::Adopt(const Snapshot& snap, const SyncedFlow& f, Millis now) {
  const ServiceRecord* svc = snap.FindService(f.key.dst, f.key.protocol, f.key.dst_port_be);
  uint32_t slot_id = 0;
  const BackendRecord* b = nullptr;
  if (svc != nullptr && svc->mode == ForwardingMode::kNat) {
    b = svc->FindBackend(f.backend, f.backend_port, &slot_id);
    // A backend without a port of its own serves on the VIP's.
    if (b == nullptr && f.backend_port == rte_be_to_cpu_16(f.key.dst_port_be))
      b = svc->FindBackend(f.backend, 0, &slot_id);
  }
  if (b == nullptr || f.snat.IsV4() != f.backend.IsV4()) {
    counters_.Add(Event::kFlowsLearnedUnknown);
    return false;
  }
  const FlowState state = LearnedState(f);
  const Millis deadline = announcer_.LearnedDeadline(snap, state, now);
  const uint8_t entry_state = uint8_t(kAdoptedEntry | uint8_t(state));
  const FlowTag client_tag = flows_.Tag(f.key, hasher_.Hash(f.key));
  FlowTable::Slot client = flows_.Find(client_tag, now);
  AdoptedSession* a = client ? AdoptedOf(*client.entry, now) : nullptr;
  if (a != nullptr) {
    // An adopted one this node carries: its own word stands.
    if (a->carried || !(a->client == f.key)) return false;
  } else {
    // This worker's own flow or session: its own word stands, but for a session whose
    // handshake never completed here. Its SYN came here and the rest of the connection
    // went to the peer (ECMP changed in between, or the SYN was retransmitted after a
    // route change): the peer's established session is the connection.
    if (client && !YieldToPeer(*client.entry, f.key, now)) return false;
    const uint32_t index = adopted_.Take(now);
    if (index == AdoptedTable::kNone) {
      counters_.Add(Event::kNatAdoptedFull);
      return false;
    }
    if (!client && !(client = ClaimForLearned(flows_, counters_, client_tag, now))) {
      adopted_.Release(index);
      return false;
    }
    a = &adopted_.at(index);
    a->client = f.key;
    a->client_entry = client;
    *client.entry = FlowEntry{index, a->generation, entry_state};
  }
  a->snat = f.snat;
  a->snat_port_be = rte_cpu_to_be_16(f.snat_port);
  a->backend = f.backend;
  a->backend_port_be = rte_cpu_to_be_16(f.backend_port);
  a->backend_slot = slot_id;
  a->backend_generation = b->generation;
  a->state = uint8_t(state);
  a->deadline = deadline;
  *client.deadline = deadline;
  // The reply's entry: on every worker for another node's SNAT address (the NIC's RSS or
  // the kernel's fanout may give the replies to any), on the port's owner alone for one of
  // this node's own (HandleSnat hands the replies to it).
  if (snap.SnatIndex(f.snat) >= 0 && nat_.OwnerOf(f.snat_port) != worker_id_) return true;
  const FlowKey reply_key = a->ReplyKey();
  const FlowTag reply_tag = flows_.Tag(reply_key, hasher_.Hash(reply_key));
  FlowTable::Slot reply = flows_.Find(reply_tag, now);
  if (reply) {
    const AdoptedSession* other = AdoptedOf(*reply.entry, now);
    if (other == nullptr || (other != a && other->carried)) return true;  // held by a flow of this node's
  } else if (!(reply = ClaimForLearned(flows_, counters_, reply_tag, now))) {
    return true;
  }
  *reply.entry = FlowEntry{adopted_.IndexOf(*a), a->generation, entry_state};
  *reply.deadline = deadline;
  a->reply_entry = reply;
  return true;
}

}  // namespace lb::dataplane
