#include "dataplane/worker/worker.h"

#include <rte_cycles.h>
#include <rte_pause.h>
#include <rte_ethdev.h>
#include <rte_prefetch.h>

#include "dataplane/rewrite.h"

namespace lb::dataplane {
namespace {

// A flow's deadline is refreshed when it would move by more than this: idle timeouts are
// seconds long, so a flow may expire up to this much early.
constexpr int32_t kDeadlineSlack = 250;  // ms

// The flows worth telling the peers about: a TCP connection once established (a SYN
// flood announces nothing), a UDP flow from its second packet on (a lone DNS query
// neither).
bool Announceable(FlowState s) { return s == FlowState::kTcpEstablished || s == FlowState::kUdp; }

// A NAT session (own or adopted) as flow sync tells it.
SyncedFlow SessionAnnouncement(const FlowKey& client, const IpAddress& backend, uint16_t backend_port_be,
                               const IpAddress& snat, uint16_t snat_port_be, FlowState state) {
  return {.key = client,
          .backend = backend,
          .backend_port = rte_be_to_cpu_16(backend_port_be),
          .state = uint8_t(state),
          .nat = true,
          .snat = snat,
          .snat_port = rte_be_to_cpu_16(snat_port_be)};
}

// The state a flow learned from a peer is kept in: only announceable flows are announced.
FlowState LearnedState(const SyncedFlow& f) {
  return f.key.protocol == IPPROTO_UDP ? FlowState::kUdp : FlowState::kTcpEstablished;
}

bool TakesNewFlows(const BackendRecord& b) {
  return b.state == BackendState::kActive && b.weight > 0;
}

bool IsBareSyn(const ParsedPacket& p) {
  return p.key.protocol == IPPROTO_TCP && (p.tcp_flags & (kTcpSyn | kTcpAck)) == kTcpSyn;
}

// The state of a flow whose first packet (to this LB node) is `p`.
FlowState InitialState(const ParsedPacket& p) {
  if (p.key.protocol == IPPROTO_UDP) return FlowState::kUdp;
  if (p.key.protocol != IPPROTO_TCP) return FlowState::kOther;
  if (p.tcp_flags & (kTcpFin | kTcpRst)) return FlowState::kTcpClosing;
  return IsBareSyn(p) ? FlowState::kTcpSynSent : FlowState::kTcpMidstream;
}

FlowState NextState(FlowState s, const ParsedPacket& p) {
  if (s == FlowState::kTcpClosing || p.key.protocol != IPPROTO_TCP) return s;
  if (p.tcp_flags & (kTcpFin | kTcpRst)) return FlowState::kTcpClosing;
  if (s == FlowState::kTcpSynSent && !IsBareSyn(p)) return FlowState::kTcpEstablished;
  if (s == FlowState::kTcpMidstream) return FlowState::kTcpEstablished;  // a second packet
  return s;
}

// What the node's control plane lives on: ARP (and any other non-IP frame: only the
// link's neighbours can send those), IPv6 neighbour discovery, BGP and BFD (from the
// node's peers, when it knows them), and flow sync from the peer LB nodes.
bool IsControlTraffic(const Snapshot& snap, const ParsedPacket& p) {
  constexpr uint16_t kBgp = 179, kBfd = 3784, kBfdEcho = 3785, kBfdMultihop = 4784;
  switch (p.kind) {
    case PacketKind::kNotIp:
      return true;
    case PacketKind::kOtherIcmp:
      return !p.is_v4 && p.icmp_type >= 133 && p.icmp_type <= 137;  // RFC 4861 §4
    case PacketKind::kTcp:
      return !p.is_fragment &&
             (p.key.src_port_be == rte_cpu_to_be_16(kBgp) || p.key.dst_port_be == rte_cpu_to_be_16(kBgp)) &&
             snap.IsControlPeer(p.key.src);
    case PacketKind::kUdp: {
      if (p.is_fragment) return false;
      const uint16_t port = rte_be_to_cpu_16(p.key.dst_port_be);
      return ((port == kBfd || port == kBfdEcho || port == kBfdMultihop) && snap.IsControlPeer(p.key.src)) ||
             snap.IsFlowSync(p.key.src, port);
    }
    default:
      return false;
  }
}

bool NeedsFlowHash(const ParsedPacket& p) {
  return (p.kind == PacketKind::kTcp || p.kind == PacketKind::kUdp ||
          p.kind == PacketKind::kIcmpError) &&
         !p.is_fragment;
}

}  // namespace

Worker::Worker(const Options& options, SnapshotStore* store)
    : options_(options),
      store_(store),
      flows_(options.flow_capacity),
      nat_(options.nat_addresses, options.nat_port_min, options.nat_port_max, options.id, options.workers,
           options.nat_port_secret),
      adopted_(options.nat_adopted_capacity),
      tsc_per_ms_(std::max<uint64_t>(1, rte_get_tsc_hz() / 1000)) {}

Millis Worker::Now() const { return Millis(rte_get_tsc_cycles() / tsc_per_ms_); }

void Worker::Drop(rte_mbuf* m, DropReason reason) {
  counters_.Add(reason);
  dropped_[num_dropped_++] = m;
}

void Worker::FlushDrops() {
  if (num_dropped_ == 0) return;
  rte_pktmbuf_free_bulk(dropped_.data(), num_dropped_);
  num_dropped_ = 0;
}

void Worker::ProcessBurst(rte_mbuf* const* pkts, uint16_t n, Millis now, BurstOutput& out, bool handed_over) {
  n = std::min(n, kMaxBurst);
  if (!handed_over) counters_.Add(Event::kRxPackets, n);
  const Snapshot* snap = store_->Acquire();  // once per burst (DESIGN.md §3)
  last_service_.svc = nullptr;
  nat_.BeginBurst();

  // Stage 1: bring the headers in, parse, hash, and prefetch the flow-table buckets.
  for (uint16_t i = 0; i < n; ++i) rte_prefetch0(rte_pktmbuf_mtod(pkts[i], void*));
  std::array<Meta, kMaxBurst>& meta = meta_;  // Parse() resets each entry it fills
  for (uint16_t i = 0; i < n; ++i) {
    Meta& mt = meta[i];
    mt.flow = {};
    // Parse sees the first segment only: headers must be contiguous there.
    mt.status = Parse(rte_pktmbuf_mtod(pkts[i], const uint8_t*), pkts[i]->data_len, mt.packet);
    if (mt.status == ParseStatus::kOk && NeedsFlowHash(mt.packet)) {
      if (options_.complete_partial_checksums && rewrite::CompletePartialChecksum(pkts[i], mt.packet)) {
        counters_.Add(Event::kChecksumsCompleted);
      }
      mt.tag = flows_.Tag(mt.packet.key, options_.flow_hasher.Hash(mt.packet.key));
      flows_.Prefetch(mt.tag.hash);
    } else {
      mt.tag = {};  // no flow to look up
    }
  }

  // Stage 2: decide and rewrite; the buckets have had the whole burst's parsing to arrive.
  // NAT sessions: the burst's first few at once, then each the lookahead ahead of its turn.
  const bool nat = nat_.size() > 0;
  if (nat) {
    for (uint16_t i = 0; i < std::min(n, kNatSessionLookahead); ++i) LookUpAhead(meta[i], now);
  }
  for (uint16_t i = 0; i < n; ++i) {
    if (nat && i + kNatSessionLookahead < n) LookUpAhead(meta[i + kNatSessionLookahead], now);
    if (meta[i].status != ParseStatus::kOk) {
      const bool truncated = meta[i].status == ParseStatus::kTruncated;
      Drop(pkts[i], !truncated                ? DropReason::kMalformed
                    : pkts[i]->nb_segs > 1 ? DropReason::kNotContiguous
                                           : DropReason::kTruncated);
      continue;
    }
    if (snap == nullptr) {  // nothing configured yet: nothing is for a VIP
      ToKernel(nullptr, pkts[i], meta[i].packet, now, out);
      continue;
    }
    Handle(*snap, pkts[i], meta[i], now, out);
  }
  FlushDrops();
}

inline const ServiceRecord* Worker::FindService(const Snapshot& snap, const FlowKey& key) {
  LastService& last = last_service_;
  if (last.svc != nullptr && last.port_be == key.dst_port_be && last.protocol == key.protocol && last.vip == key.dst) {
    return last.svc;
  }
  const ServiceRecord* svc = snap.FindService(key.dst, key.protocol, key.dst_port_be);
  if (svc != nullptr) last = {key.dst, key.dst_port_be, key.protocol, svc};
  return svc;
}

inline void Worker::Handle(const Snapshot& snap, rte_mbuf* m, const Meta& meta, Millis now,
                    BurstOutput& out) {
  const ParsedPacket& p = meta.packet;
  // The common case first: TCP or UDP to a service, found with one lookup. Anything else
  // needs the VIP table to tell "for the kernel" from "for a VIP, but not served".
  if ((p.kind == PacketKind::kTcp || p.kind == PacketKind::kUdp) && !p.is_fragment && p.ttl > 1) {
    if (const ServiceRecord* svc = FindService(snap, p.key)) return HandleFlow(snap, m, meta, *svc, now, out);
  }
  // NAT replies (to an SNAT address) before the VIP table: a few compares, not a hash.
  if (p.kind != PacketKind::kNotIp && !snap.nat().addresses.empty()) {
    if (const int a = snap.SnatIndex(p.key.dst); a >= 0) return HandleSnat(snap, m, meta, uint32_t(a), now, out);
  }
  // Replies to another node's SNAT address, of the sessions this node adopted.
  if (adopted_.in_use() != 0) {
    if (AdoptedSession* a = AdoptedReply(meta, now)) return AdoptedToClient(snap, m, p, *a, now, out);
  }
  const VipRecord* vip = p.kind == PacketKind::kNotIp ? nullptr : snap.FindVip(p.key.dst);
  if (vip == nullptr) return ToKernel(&snap, m, p, now, out);
  switch (p.kind) {
    case PacketKind::kIcmpEcho:
      return AnswerEcho(m, p, out);
    case PacketKind::kOtherIcmp:
      return Drop(m, DropReason::kIcmpUnsupported);
    case PacketKind::kOtherIp:
      return Drop(m, DropReason::kNoService);
    default:
      break;
  }
  if (p.ttl <= 1) return Drop(m, DropReason::kTtlExceeded);
  if (p.kind == PacketKind::kIcmpError) return HandleIcmpError(snap, m, meta, now, out);
  if (p.is_fragment) return HandleFragment(snap, m, meta, *vip, now, out);
  // TCP or UDP to a VIP: the service lookup at the top found nothing.
  Drop(m, DropReason::kNoService);
}

void Worker::ToKernel(const Snapshot* snap, rte_mbuf* m, const ParsedPacket& p, Millis now, BurstOutput& out) {
  if (snap != nullptr) {
    if (p.kind != PacketKind::kNotIp && snap->InVipCidrs(p.key.dst)) return Drop(m, DropReason::kNoVip);
    const bool control = IsControlTraffic(*snap, p);
    const uint32_t rate = control ? snap->exception_control_per_second() : snap->exception_per_second();
    if (rate != 0 && !(control ? exception_control_limiter_ : exception_limiter_).Take(rate, now)) {
      return Drop(m, control ? DropReason::kExceptionControlRateLimited : DropReason::kExceptionRateLimited);
    }
  }
  out.kernel[out.num_kernel++] = m;
  counters_.Add(Event::kToKernel);
}

void Worker::AnswerEcho(rte_mbuf* m, const ParsedPacket& p, BurstOutput& out) {
  if (!rewrite::EchoChecksumsValid(m, p)) return Drop(m, DropReason::kBadChecksum);
  rewrite::MakeEchoReply(m, p);
  out.wire[out.num_wire++] = m;
  counters_.Add(Event::kEchoReplies);
}

inline void Worker::HandleFlow(const Snapshot& snap, rte_mbuf* m, const Meta& meta,
                        const ServiceRecord& svc, Millis now, BurstOutput& out) {
  if (svc.mode == ForwardingMode::kNat) return HandleNat(snap, m, meta, svc, now, out);
  const ParsedPacket& p = meta.packet;
  FlowTable::Slot slot = FindFlow(meta, now);
  const BackendRecord* b = nullptr;
  FlowState state;
  const bool hit = bool(slot);
  uint8_t announced = 0;  // kAnnouncedFlag, kept while the flow keeps its backend
  if (slot) {
    counters_.Add(Event::kFlowHits);
    FlowEntry& e = *slot.entry;
    // An entry of a NAT session (the service changed mode) is stale here.
    b = (e.state & kNatEntryFlag) ? nullptr : snap.Pinned(svc, e.backend_slot, e.backend_generation);
    // A SYN that meets a closing flow, or a backend that takes no new flows, opens a
    // new connection on the same 5-tuple: it is balanced afresh. A SYN on a live flow
    // of an active backend is a retransmission and stays.
    if (b != nullptr && IsBareSyn(p) &&
        (FlowState(e.state & kStateMask) == FlowState::kTcpClosing || !TakesNewFlows(*b))) {
      b = nullptr;
    }
    if (b != nullptr) {
      state = NextState(FlowState(e.state & kStateMask), p);
      if (e.state & kLearnedFlag) [[unlikely]] {
        // A flow a peer pinned, whose packets ECMP sends here now: it keeps its backend,
        // and this node, carrying it from now on (the flag goes), tells the peers.
        counters_.Add(Event::kFlowsRescued);
      } else {
        announced = e.state & kAnnouncedFlag;
      }
    } else {
      b = PickAndPin(snap, svc, meta, &e);
      if (b == nullptr) return Drop(m, DropReason::kNoBackend);
      counters_.Add(Event::kFlowRepicks);
      state = InitialState(p);
    }
  } else {
    counters_.Add(Event::kFlowMisses);
    // Not started here, and not learned from a peer: the current Maglev table decides.
    if (p.key.protocol == IPPROTO_TCP && !IsBareSyn(p)) counters_.Add(Event::kFlowsMidstream);
    FlowEntry unpinned{};
    b = PickAndPin(snap, svc, meta, &unpinned);
    if (b == nullptr) return Drop(m, DropReason::kNoBackend);
    state = InitialState(p);
    bool reclaimed = false;
    slot = flows_.Claim(meta.tag, now, &reclaimed);
    if (slot) {
      *slot.entry = unpinned;
      counters_.Add(Event::kFlowInserts);
      if (reclaimed) counters_.Add(Event::kFlowExpired);
    } else {
      counters_.Add(Event::kFlowTableFull);  // forwarded by hash alone
    }
  }
  if (slot) {
    // Written only when they change (the deadline: by more than kDeadlineSlack), so that
    // packets of an established flow do not dirty its cache lines every time.
    const Millis deadline = now + snap.Timeout(state);
    const bool extend = int32_t(deadline - *slot.deadline) > kDeadlineSlack;
    uint8_t value = uint8_t(uint8_t(state) | announced);
    if (options_.flow_sync_announce != nullptr && hit && Announceable(state)) {
      // Once when the flow qualifies (or moved to another backend), then whenever its
      // deadline enters another refresh interval: while it is active, every interval.
      if (!announced || (extend && RefreshDue(*slot.deadline, deadline))) Announce(p.key, *b, state);
      value |= kAnnouncedFlag;
    }
    if (slot.entry->state != value) slot.entry->state = value;
    if (extend) *slot.deadline = deadline;
  }
  Forward(snap, m, p, *b, meta.tag.hash, now, out);
}

void Worker::Announce(const FlowKey& key, const BackendRecord& b, FlowState state) {
  Announce(SyncedFlow{.key = key, .backend = b.address, .backend_port = b.port, .state = uint8_t(state)});
}

void Worker::Announce(const SyncedFlow& f) {
  // The ring copies the element (its API takes no const pointer).
  if (rte_ring_sp_enqueue_elem(options_.flow_sync_announce, const_cast<SyncedFlow*>(&f), sizeof(f)) == 0) {
    counters_.Add(Event::kFlowsAnnounced);
  } else {
    counters_.Add(Event::kFlowAnnouncesLost);
  }
}

uint32_t Worker::Learn(std::span<const SyncedFlow> flows, Millis now) {
  const Snapshot* snap = store_->Acquire();
  if (snap == nullptr) return 0;
  uint32_t taken = 0;
  for (const SyncedFlow& f : flows) taken += f.nat ? LearnSession(*snap, f, now) : LearnFlow(*snap, f, now);
  counters_.Add(Event::kFlowsLearned, taken);
  return taken;
}

FlowTable::Slot Worker::ClaimForLearned(const FlowTag& tag, Millis now) {
  bool reclaimed = false;
  const FlowTable::Slot slot = flows_.Claim(tag, now, &reclaimed);
  if (!slot) counters_.Add(Event::kFlowTableFull);
  if (reclaimed) counters_.Add(Event::kFlowExpired);
  return slot;
}

bool Worker::LearnFlow(const Snapshot& snap, const SyncedFlow& f, Millis now) {
  const ServiceRecord* svc = snap.FindService(f.key.dst, f.key.protocol, f.key.dst_port_be);
  uint32_t slot_id = 0;
  const BackendRecord* b =
      svc != nullptr && svc->mode != ForwardingMode::kNat ? svc->FindBackend(f.backend, f.backend_port, &slot_id) : nullptr;
  if (b == nullptr) {
    counters_.Add(Event::kFlowsLearnedUnknown);
    return false;
  }
  const FlowState state = LearnedState(f);
  const Millis deadline = LearnedDeadline(snap, state, now);
  const FlowEntry learned{slot_id, b->generation, uint8_t(uint8_t(state) | kLearnedFlag | kAnnouncedFlag)};
  const FlowTag tag = flows_.Tag(f.key, options_.flow_hasher.Hash(f.key));
  FlowTable::Slot slot = flows_.Find(tag, now);
  if (slot) {
    // Refreshed when announced again; else this worker carries the flow itself.
    if (!IsLearnedFlowEntry(*slot.entry)) return false;
  } else if (!(slot = ClaimForLearned(tag, now))) {
    return false;
  }
  *slot.entry = learned;
  *slot.deadline = deadline;
  return true;
}

bool Worker::LearnSession(const Snapshot& snap, const SyncedFlow& f, Millis now) {
  const ServiceRecord* svc = snap.FindService(f.key.dst, f.key.protocol, f.key.dst_port_be);
  uint32_t slot_id = 0;
  const BackendRecord* b = nullptr;
  if (svc != nullptr && svc->mode == ForwardingMode::kNat) {
    b = svc->FindBackend(f.backend, f.backend_port, &slot_id);
    // A backend without a port of its own serves on the VIP's.
    if (b == nullptr && f.backend_port == rte_be_to_cpu_16(f.key.dst_port_be)) b = svc->FindBackend(f.backend, 0, &slot_id);
  }
  if (b == nullptr || f.snat.IsV4() != f.backend.IsV4()) {
    counters_.Add(Event::kFlowsLearnedUnknown);
    return false;
  }
  const FlowState state = LearnedState(f);
  const Millis deadline = LearnedDeadline(snap, state, now);
  const uint8_t entry_state = uint8_t(kAdoptedEntry | uint8_t(state));
  const FlowTag client_tag = flows_.Tag(f.key, options_.flow_hasher.Hash(f.key));
  FlowTable::Slot client = flows_.Find(client_tag, now);
  AdoptedSession* a = nullptr;
  if (client) {
    // This worker's own flow or session, or an adopted one it carries: its own word stands.
    a = AdoptedOf(*client.entry, now);
    if (a == nullptr || a->carried || !(a->client == f.key)) return false;
  } else {
    const uint32_t index = adopted_.Take(now);
    if (index == AdoptedTable::kNone) {
      counters_.Add(Event::kNatAdoptedFull);
      return false;
    }
    if (!(client = ClaimForLearned(client_tag, now))) {
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
  if (snap.SnatIndex(f.snat) >= 0 && nat_.OwnerOf(f.snat_port) != options_.id) return true;
  const FlowKey reply_key = a->ReplyKey();
  const FlowTag reply_tag = flows_.Tag(reply_key, options_.flow_hasher.Hash(reply_key));
  FlowTable::Slot reply = flows_.Find(reply_tag, now);
  if (reply) {
    const AdoptedSession* other = AdoptedOf(*reply.entry, now);
    if (other == nullptr || (other != a && other->carried)) return true;  // held by a flow of this node's
  } else if (!(reply = ClaimForLearned(reply_tag, now))) {
    return true;
  }
  *reply.entry = FlowEntry{adopted_.IndexOf(*a), a->generation, entry_state};
  *reply.deadline = deadline;
  a->reply_entry = reply;
  return true;
}

const BackendRecord* Worker::PickAndPin(const Snapshot& snap, const ServiceRecord& svc, const Meta& meta,
                                       FlowEntry* e) {
  uint32_t slot_id;
  const BackendRecord* b =
      snap.Pick(svc, options_.flow_hasher.ServiceHash(meta.packet.key, svc.hash_fields, meta.tag.hash), &slot_id);
  if (b != nullptr) {
    e->backend_slot = slot_id;
    e->backend_generation = b->generation;
  }
  return b;
}

void Worker::HandleFragment(const Snapshot& snap, rte_mbuf* m, const Meta& meta,
                            const VipRecord& vip, Millis now, BurstOutput& out) {
  // Fragments are hashed on addresses only, so that every fragment of a datagram
  // reaches the same backend; they take no flow entry.
  counters_.Add(Event::kFragments);
  const ParsedPacket& p = meta.packet;
  const ServiceRecord* svc = nullptr;
  if (p.is_first_fragment) {
    svc = snap.FindService(p.key.dst, p.key.protocol, p.key.dst_port_be);
  } else {
    const uint32_t i =
        p.key.protocol == IPPROTO_TCP ? vip.fragment_service_tcp : vip.fragment_service_udp;
    if (i == kAmbiguousServiceIndex) return Drop(m, DropReason::kFragmentAmbiguous);
    if (i != kNoServiceIndex) svc = &snap.service(i);
  }
  if (svc == nullptr) return Drop(m, DropReason::kNoService);
  FlowKey key = p.key;
  key.src_port_be = key.dst_port_be = 0;
  const uint32_t hash = options_.flow_hasher.Hash(key);
  uint32_t slot_id;
  const BackendRecord* b = snap.Pick(*svc, options_.flow_hasher.ServiceHash(key, svc->hash_fields, hash), &slot_id);
  if (b == nullptr) return Drop(m, DropReason::kNoBackend);
  Forward(snap, m, p, *b, hash, now, out);
}

void Worker::HandleIcmpError(const Snapshot& snap, rte_mbuf* m, const Meta& meta, Millis now,
                             BurstOutput& out) {
  // The error quotes a packet a backend sent from the VIP (DSR): it belongs to the
  // backend that owns the flow, found as a normal packet of the flow would find it, but
  // without creating an entry.
  const ParsedPacket& p = meta.packet;
  const ServiceRecord* svc = snap.FindService(p.key.dst, p.key.protocol, p.key.dst_port_be);
  if (svc == nullptr) return Drop(m, DropReason::kIcmpUnmatched);
  if (svc->mode == ForwardingMode::kNat) return HandleNatIcmpFromClientSide(snap, *svc, m, meta, now, out);
  const BackendRecord* b = nullptr;
  if (FlowTable::Slot slot = FindFlow(meta, now); slot && !(slot.entry->state & kNatEntryFlag)) {
    b = snap.Pinned(*svc, slot.entry->backend_slot, slot.entry->backend_generation);
  }
  uint32_t slot_id;
  if (b == nullptr) b = snap.Pick(*svc, options_.flow_hasher.ServiceHash(p.key, svc->hash_fields, meta.tag.hash), &slot_id);
  if (b == nullptr) return Drop(m, DropReason::kNoBackend);
  counters_.Add(Event::kIcmpErrorsForwarded);
  Forward(snap, m, p, *b, meta.tag.hash, now, out);
}

inline void Worker::Forward(const Snapshot& snap, rte_mbuf* m, const ParsedPacket& p, const BackendRecord& backend,
                            uint32_t hash, Millis now, BurstOutput& out) {
  const EncapHeader& h = backend.encap;
  if (h.len == 0) return Drop(m, DropReason::kNoEncapSource);
  if (!backend.on_link && !snap.gateway_known()) return Drop(m, DropReason::kNoNextHop);
  const uint16_t overhead = uint16_t(h.len - h.l2_len);
  if (uint32_t(p.ip_len) + overhead > snap.mtu()) {
    if (p.kind == PacketKind::kIcmpError || (p.is_v4 && !p.dont_fragment)) {
      return Drop(m, DropReason::kTooBig);
    }
    if (!too_big_limiter_.Take(snap.icmp_too_big_per_second(), now)) {
      return Drop(m, DropReason::kTooBigRateLimited);
    }
    if (!rewrite::MakeTooBig(m, p, uint16_t(snap.mtu() - overhead))) {
      return Drop(m, DropReason::kNoHeadroom);
    }
    out.wire[out.num_wire++] = m;
    counters_.Add(Event::kTooBigSent);
    return;
  }
  // RFC 2003 §3.1: the encapsulator forwards the inner packet as a router would.
  rewrite::DecrementTtl(rte_pktmbuf_mtod_offset(m, uint8_t*, p.l3_offset), p.is_v4);
  const uint16_t id = next_ip_id_++;
  const bool ok = h.outer_v4 ? (h.gue ? rewrite::Encapsulate<true, true>(m, p, h, hash, id)
                                      : rewrite::Encapsulate<true, false>(m, p, h, hash, id))
                             : (h.gue ? rewrite::Encapsulate<false, true>(m, p, h, hash, id)
                                      : rewrite::Encapsulate<false, false>(m, p, h, hash, id));
  if (!ok) return Drop(m, DropReason::kNoHeadroom);
  out.wire[out.num_wire++] = m;
  counters_.Add(Event::kForwarded);
}

// ---- NAT ----

void Worker::LookUpAhead(Meta& meta, Millis now) {
  if (meta.tag.fingerprint == 0) return;
  meta.flow = flows_.Find(meta.tag, now);
  const FlowEntry* e = meta.flow.entry;
  if (e != nullptr && IsSessionEntry(*e) && e->backend_slot < nat_.size()) nat_.Prefetch(e->backend_slot);
}

NatSession* Worker::SessionOf(const FlowEntry& e, const FlowKey& key, Millis now) {
  if (!IsSessionEntry(e) || e.backend_slot >= nat_.size()) return nullptr;
  NatSession& s = nat_.at(e.backend_slot);
  if (!s.in_use || s.generation != e.backend_generation || Expired(s.deadline, now) || !(s.client == key)) {
    return nullptr;
  }
  return &s;
}

void Worker::RefreshSession(const Snapshot& snap, NatSession& s, const ParsedPacket& p, Millis now,
                            bool from_client) {
  const FlowState state = NextState(FlowState(s.state), p);
  s.state = uint8_t(state);
  const Millis deadline = now + snap.Timeout(state);
  if (options_.flow_sync_announce != nullptr && Announceable(state) &&
      (s.announced ? RefreshDue(s.deadline, deadline) : from_client)) {
    s.announced = true;
    Announce(SessionAnnouncement(s.client, s.backend, s.backend_port_be, snap.nat().addresses[s.snat_address],
                                 s.snat_port_be, state));
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

void Worker::HandleNat(const Snapshot& snap, rte_mbuf* m, const Meta& meta, const ServiceRecord& svc,
                       Millis now, BurstOutput& out) {
  const ParsedPacket& p = meta.packet;
  FlowTable::Slot slot = FindFlow(meta, now);
  counters_.Add(slot ? Event::kFlowHits : Event::kFlowMisses);
  if (slot && IsAdoptedEntry(*slot.entry)) [[unlikely]] {
    if (AdoptedSession* a = AdoptedOf(*slot.entry, now); a != nullptr && a->client == p.key) {
      if (const BackendRecord* b = snap.Pinned(svc, a->backend_slot, a->backend_generation)) {
        return AdoptedToBackend(snap, m, p, *a, *b, now, out);
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
    if (p.key.protocol == IPPROTO_TCP && !IsBareSyn(p)) return Drop(m, DropReason::kNatNotSyn);
    uint32_t backend_slot = 0;
    b = snap.Pick(svc, options_.flow_hasher.ServiceHash(p.key, svc.hash_fields, meta.tag.hash), &backend_slot);
    if (b == nullptr) return Drop(m, DropReason::kNoBackend);
    // An SNAT address of the VIP's family, chosen by the flow hash, then any other.
    const auto& addresses = snap.nat().addresses;
    const uint32_t count = std::min<uint32_t>(uint32_t(addresses.size()), nat_.num_addresses());
    bool family_v4[kMaxSnatAddresses];
    uint32_t same_family = 0;
    for (uint32_t a = 0; a < count; ++a) same_family += (family_v4[a] = addresses[a].IsV4()) == p.is_v4;
    if (same_family == 0) return Drop(m, DropReason::kNatPortsExhausted);
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
    if (index == NatTable::kNone) return Drop(m, DropReason::kNatPortsExhausted);
    if (!slot) {
      bool reclaimed = false;
      slot = flows_.Claim(meta.tag, now, &reclaimed);
      if (!slot) {
        nat_.Release(index);
        return Drop(m, DropReason::kNatFlowTableFull);  // untracked, its replies would be lost
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
    const Millis deadline = now + snap.Timeout(FlowState(s->state));
    s->deadline = deadline;
    *slot.deadline = deadline;
  } else {
    RefreshSession(snap, *s, p, now, /*from_client=*/true);
  }
  NatToBackend(snap, m, p, *b, {&snap.nat().addresses[s->snat_address], s->snat_port_be, &s->backend, s->backend_port_be},
               out);
}

inline void Worker::NatToBackend(const Snapshot& snap, rte_mbuf* m, const ParsedPacket& p, const BackendRecord& b,
                                 const rewrite::NatEndpoints& to, BurstOutput& out) {
  if (!b.on_link && !snap.gateway_known()) return Drop(m, DropReason::kNoNextHop);
  if (!rewrite::NatTranslate(m, p, to, b.on_link ? b.neighbor_mac : snap.next_hop().gateway_mac, snap.next_hop())) {
    return Drop(m, DropReason::kNoHeadroom);
  }
  out.wire[out.num_wire++] = m;
  counters_.Add(Event::kNatForwarded);
}

inline void Worker::NatToClient(const Snapshot& snap, rte_mbuf* m, const ParsedPacket& p, const FlowKey& client,
                                BurstOutput& out) {
  if (!snap.gateway_known()) return Drop(m, DropReason::kNoNextHop);  // clients are beyond it
  const rewrite::NatEndpoints to{&client.dst, client.dst_port_be, &client.src, client.src_port_be};
  if (!rewrite::NatTranslate(m, p, to, snap.next_hop().gateway_mac, snap.next_hop())) {
    return Drop(m, DropReason::kNoHeadroom);
  }
  out.wire[out.num_wire++] = m;
  counters_.Add(Event::kNatReplies);
}

void Worker::HandleSnat(const Snapshot& snap, rte_mbuf* m, const Meta& meta, uint32_t address, Millis now,
                        BurstOutput& out) {
  const ParsedPacket& p = meta.packet;
  if (p.kind == PacketKind::kIcmpEcho) return AnswerEcho(m, p, out);
  const bool error = p.kind == PacketKind::kIcmpError;
  if ((p.kind != PacketKind::kTcp && p.kind != PacketKind::kUdp && !error) || p.is_fragment) {
    return Drop(m, DropReason::kNatNoSession);
  }
  if (p.ttl <= 1) return Drop(m, DropReason::kTtlExceeded);
  // A reply to SNAT:port (or an error quoting a packet from it) belongs to the port's owner.
  const uint16_t port = rte_be_to_cpu_16(p.key.dst_port_be);
  const uint32_t owner = nat_.OwnerOf(port);
  if (owner == NatTable::kNone) return Drop(m, DropReason::kNatNoSession);
  if (owner != options_.id) {
    out.redirect[out.num_redirect] = m;
    out.redirect_to[out.num_redirect++] = uint16_t(owner);
    counters_.Add(Event::kNatRedirected);
    return;
  }
  NatSession* s = nat_.Lookup(p.key.protocol, address, port, now);
  if (s == nullptr || !(s->backend == p.key.src) || s->backend_port_be != p.key.src_port_be) {
    // Not a session of this node's: one it adopted from a peer (this node came back, and
    // its SNAT address with it, while a peer carried its sessions)?
    if (adopted_.in_use() != 0) {
      if (AdoptedSession* a = AdoptedReply(meta, now)) return AdoptedToClient(snap, m, p, *a, now, out);
    }
    return Drop(m, DropReason::kNatNoSession);
  }
  if (error) return NatErrorToClient(snap, m, p, s->client, s->backend, out);
  if (!snap.gateway_known()) return Drop(m, DropReason::kNoNextHop);  // clients are beyond it
  RefreshSession(snap, *s, p, now, /*from_client=*/false);
  NatToClient(snap, m, p, s->client, out);
}

uint32_t Worker::AvoidAdopted(const Snapshot& snap, uint32_t index, const FlowKey& client, const IpAddress& backend,
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
    const FlowTable::Slot held = flows_.Find(flows_.Tag(reply, options_.flow_hasher.Hash(reply)), now);
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

AdoptedSession* Worker::AdoptedOf(const FlowEntry& e, Millis now) {
  if (!IsAdoptedEntry(e) || e.backend_slot >= adopted_.size()) return nullptr;
  AdoptedSession& a = adopted_.at(e.backend_slot);
  return a.in_use && a.generation == e.backend_generation && !Expired(a.deadline, now) ? &a : nullptr;
}

AdoptedSession* Worker::AdoptedReply(const Meta& meta, Millis now) {
  const ParsedPacket& p = meta.packet;
  if ((p.kind != PacketKind::kTcp && p.kind != PacketKind::kUdp && p.kind != PacketKind::kIcmpError) ||
      p.is_fragment) {
    return nullptr;
  }
  const FlowTable::Slot slot = FindFlow(meta, now);
  AdoptedSession* a = slot ? AdoptedOf(*slot.entry, now) : nullptr;
  return a != nullptr && a->ReplyKey() == p.key ? a : nullptr;
}

void Worker::CarryAdopted(const Snapshot& snap, AdoptedSession& a, const ParsedPacket& p, Millis now) {
  const FlowState state = NextState(FlowState(a.state), p);
  a.state = uint8_t(state);
  const Millis deadline = now + snap.Timeout(state);
  const bool rescued = !a.carried;
  if (rescued) {
    // Its node is gone, or ECMP moved its packets here: this node carries it now.
    a.carried = true;
    counters_.Add(Event::kFlowsRescued);
  } else if (int32_t(deadline - a.deadline) <= kDeadlineSlack) {
    return;  // written only when the deadline moves on (HandleFlow)
  }
  if (options_.flow_sync_announce != nullptr && Announceable(state) && (rescued || RefreshDue(a.deadline, deadline))) {
    Announce(SessionAnnouncement(a.client, a.backend, a.backend_port_be, a.snat, a.snat_port_be, state));
  }
  a.deadline = deadline;
  // Both entries live as long as the session, whichever side's packets keep it alive
  // (each is checked to still name it: its way may have been reclaimed for another flow).
  for (const FlowTable::Slot& e : {a.client_entry, a.reply_entry}) {
    if (e && AdoptedOf(*e.entry, now) == &a) *e.deadline = deadline;
  }
}

void Worker::AdoptedToBackend(const Snapshot& snap, rte_mbuf* m, const ParsedPacket& p, AdoptedSession& a,
                              const BackendRecord& b, Millis now, BurstOutput& out) {
  CarryAdopted(snap, a, p, now);
  NatToBackend(snap, m, p, b, {&a.snat, a.snat_port_be, &a.backend, a.backend_port_be}, out);
}

void Worker::AdoptedToClient(const Snapshot& snap, rte_mbuf* m, const ParsedPacket& p, AdoptedSession& a, Millis now,
                             BurstOutput& out) {
  if (p.ttl <= 1) return Drop(m, DropReason::kTtlExceeded);
  if (p.kind == PacketKind::kIcmpError) return NatErrorToClient(snap, m, p, a.client, a.backend, out);
  CarryAdopted(snap, a, p, now);
  NatToClient(snap, m, p, a.client, out);
}

void Worker::HandleNatIcmpFromClientSide(const Snapshot& snap, const ServiceRecord& svc, rte_mbuf* m,
                                         const Meta& meta, Millis now,
                                         BurstOutput& out) {
  // An error about a reply this node translated (VIP -> client), quoted as the client got
  // it: it goes to the backend, quoting the packet as the backend sent it. Only the
  // worker that holds the session can translate it.
  const ParsedPacket& p = meta.packet;
  const FlowTable::Slot slot = FindFlow(meta, now);
  if (const NatSession* s = slot ? SessionOf(*slot.entry, p.key, now) : nullptr) {
    return NatErrorToBackend(snap, m, p, svc.Backend(s->backend_slot, s->backend_generation), s->backend,
                             s->backend_port_be, snap.nat().addresses[s->snat_address], s->snat_port_be, out);
  }
  if (const AdoptedSession* a = slot ? AdoptedOf(*slot.entry, now) : nullptr; a != nullptr && a->client == p.key) {
    return NatErrorToBackend(snap, m, p, svc.Backend(a->backend_slot, a->backend_generation), a->backend,
                             a->backend_port_be, a->snat, a->snat_port_be, out);
  }
  Drop(m, DropReason::kIcmpUnmatched);
}

void Worker::NatErrorToClient(const Snapshot& snap, rte_mbuf* m, const ParsedPacket& p, const FlowKey& client,
                              const IpAddress& backend, BurstOutput& out) {
  if (!snap.gateway_known()) return Drop(m, DropReason::kNoNextHop);  // clients are beyond it
  // From the backend itself (port unreachable...): it appears to come from the VIP.
  const uint8_t* ip = rte_pktmbuf_mtod_offset(m, const uint8_t*, p.l3_offset);
  const IpAddress outer_src = p.is_v4 ? IpAddress::FromV4Bytes(ip + 12) : IpAddress::FromV6Bytes(ip + 8);
  const rewrite::NatEndpoints quoted{&client.src, client.src_port_be, &client.dst, client.dst_port_be};
  if (!rewrite::NatTranslateIcmpError(m, p, outer_src == backend ? &client.dst : nullptr, client.src, quoted,
                                      snap.next_hop().gateway_mac, snap.next_hop())) {
    return Drop(m, DropReason::kNoHeadroom);
  }
  out.wire[out.num_wire++] = m;
  counters_.Add(Event::kNatIcmpErrors);
}

void Worker::NatErrorToBackend(const Snapshot& snap, rte_mbuf* m, const ParsedPacket& p, const BackendRecord* b,
                               const IpAddress& backend, uint16_t backend_port_be, const IpAddress& snat,
                               uint16_t snat_port_be, BurstOutput& out) {
  const bool on_link = b != nullptr && b->on_link;
  if (!on_link && !snap.gateway_known()) return Drop(m, DropReason::kNoNextHop);
  const rewrite::NatEndpoints quoted{&backend, backend_port_be, &snat, snat_port_be};
  if (!rewrite::NatTranslateIcmpError(m, p, nullptr, backend, quoted,
                                      on_link ? b->neighbor_mac : snap.next_hop().gateway_mac, snap.next_hop())) {
    return Drop(m, DropReason::kNoHeadroom);
  }
  out.wire[out.num_wire++] = m;
  counters_.Add(Event::kNatIcmpErrors);
}

uint16_t Worker::PollOnce(PortQueue rx, PortQueue tx, PortQueue kernel) {
  std::array<rte_mbuf*, kMaxBurst> pkts;
  const uint16_t n = rte_eth_rx_burst(rx.port, rx.queue, pkts.data(), kMaxBurst);
  const Millis now = Now();
  if (n > 0) {
    BurstOutput out;
    ProcessBurst(pkts.data(), n, now, out);
    SendBurst(out, tx, kernel);
  }
  store_->Quiescent(options_.id);
  if (const uint32_t freed = flows_.Sweep(now, options_.sweep_buckets_per_poll)) {
    counters_.Add(Event::kFlowExpired, freed);
  }
  if (nat_.size() != 0) {
    if (const uint32_t freed = nat_.Sweep(now, options_.sweep_buckets_per_poll)) counters_.Add(Event::kNatExpired, freed);
  }
  if (adopted_.in_use() != 0) {
    if (const uint32_t freed = adopted_.Sweep(now, options_.sweep_buckets_per_poll)) {
      counters_.Add(Event::kNatExpired, freed);
    }
  }
  return n;
}

void Worker::SendBurst(BurstOutput& out, PortQueue tx, PortQueue kernel) {
  const uint16_t sent = rte_eth_tx_burst(tx.port, tx.queue, out.wire.data(), out.num_wire);
  const uint16_t to_kernel = rte_eth_tx_burst(kernel.port, kernel.queue, out.kernel.data(), out.num_kernel);
  counters_.Add(Event::kTxPackets, sent);
  for (uint16_t i = sent; i < out.num_wire; ++i) Drop(out.wire[i], DropReason::kTxFull);
  for (uint16_t i = to_kernel; i < out.num_kernel; ++i) Drop(out.kernel[i], DropReason::kTxFull);
  for (uint16_t i = 0; i < out.num_redirect; ++i) {
    const uint16_t to = out.redirect_to[i];
    if (to >= nat_inboxes_.size() || rte_ring_mp_enqueue(nat_inboxes_[to], out.redirect[i]) != 0) {
      Drop(out.redirect[i], DropReason::kNatRedirectFull);
    }
  }
  FlushDrops();
}

uint32_t Worker::DrainInbox(rte_ring* inbox, PortQueue tx, PortQueue kernel) {
  std::array<rte_mbuf*, kMaxBurst> pkts;
  const unsigned n = rte_ring_sc_dequeue_burst(inbox, reinterpret_cast<void**>(pkts.data()), kMaxBurst, nullptr);
  if (n == 0) return 0;
  BurstOutput out;
  ProcessBurst(pkts.data(), uint16_t(n), Now(), out, /*handed_over=*/true);
  SendBurst(out, tx, kernel);
  return n;
}

}  // namespace lb::dataplane

namespace lb::dataplane {

void Worker::AnswerQuery(Millis now) {
  // Acquire: the key written before the control thread's release store is visible.
  if (query_.state.load(std::memory_order_acquire) != kAsked) return;
  FlowAnswer answer;
  if (FlowTable::Slot slot = flows_.Find(flows_.Tag(query_.key, options_.flow_hasher.Hash(query_.key)), now)) {
    if (!(slot.entry->state & kNatEntryFlag)) {
      answer = {true, slot.entry->backend_slot, slot.entry->backend_generation};
    } else if (const NatSession* s = SessionOf(*slot.entry, query_.key, now)) {
      answer = {true, s->backend_slot, s->backend_generation};
    } else if (const AdoptedSession* a = AdoptedOf(*slot.entry, now); a != nullptr && a->client == query_.key) {
      answer = {true, a->backend_slot, a->backend_generation};
    }
  }
  query_.answer = answer;
  // Release: the answer is visible to the control thread before the state change.
  query_.state.store(kAnswered, std::memory_order_release);
}

std::optional<FlowAnswer> Worker::QueryFlow(const FlowKey& key, uint32_t timeout_us) {
  const uint64_t deadline = rte_get_tsc_cycles() + rte_get_tsc_hz() / 1'000'000 * timeout_us;
  // A query that timed out earlier may still be pending: wait for the worker to take it.
  while (query_.state.load(std::memory_order_acquire) == kAsked) {
    if (rte_get_tsc_cycles() > deadline) return std::nullopt;
    rte_delay_us_sleep(10);
  }
  query_.key = key;
  query_.state.store(kAsked, std::memory_order_release);  // publishes the key
  while (query_.state.load(std::memory_order_acquire) != kAnswered) {
    if (rte_get_tsc_cycles() > deadline) return std::nullopt;
    rte_delay_us_sleep(10);
  }
  const FlowAnswer answer = query_.answer;
  query_.state.store(kIdle, std::memory_order_relaxed);  // only the control thread reads it next
  return answer;
}

uint32_t Worker::SendFromKernel(rte_ring* ring, PortQueue port) {
  std::array<rte_mbuf*, kMaxBurst> pkts;
  const unsigned n = rte_ring_sc_dequeue_burst(ring, reinterpret_cast<void**>(pkts.data()),
                                               kMaxBurst, nullptr);
  if (n == 0) return 0;
  const uint16_t sent = rte_eth_tx_burst(port.port, port.queue, pkts.data(), uint16_t(n));
  counters_.Add(Event::kFromKernel, sent);
  for (unsigned i = sent; i < n; ++i) Drop(pkts[i], DropReason::kTxFull);
  FlushDrops();
  return n;
}

void Worker::Run(const RunOptions& options, const std::atomic<bool>& stop) {
  uint32_t idle = 0;
  bool online = true;
  nat_inboxes_ = options.nat_inboxes;
  rte_ring* const inbox = options_.id < nat_inboxes_.size() ? nat_inboxes_[options_.id] : nullptr;
  // Relaxed: `stop` only ends the loop; nothing is published through it.
  while (!stop.load(std::memory_order_relaxed)) {
    uint32_t received = 0;
    for (const auto& p : options.ports) {
      if (p.wire_pump != nullptr) p.wire_pump->Pull(counters_);
      received += PollOnce(p.wire, p.wire, p.kernel);
    }
    if (options.from_kernel != nullptr && !options.ports.empty()) {
      received += SendFromKernel(options.from_kernel, options.ports[0].wire);
    }
    if (inbox != nullptr && !options.ports.empty()) {
      received += DrainInbox(inbox, options.ports[0].wire, options.ports[0].kernel);
    }
    for (const auto& p : options.ports) {
      if (p.wire_pump != nullptr) p.wire_pump->Push(counters_);
    }
    if (options.flow_sync_learn != nullptr) {
      std::array<SyncedFlow, kMaxBurst> learned;
      const unsigned n = rte_ring_sc_dequeue_burst_elem(options.flow_sync_learn, learned.data(), sizeof(SyncedFlow),
                                                        kMaxBurst, nullptr);
      if (n != 0) received += Learn({learned.data(), n}, Now()) + 1;
    }
    AnswerQuery(Now());
    loops_.store(loops_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    if (received != 0 || options.idle_polls == 0) {
      idle = 0;
      continue;
    }
    if (++idle < options.idle_polls) continue;
    // Idle: hold no snapshot while asleep, so reclamation does not wait for us.
    if (online) {
      store_->Offline(options_.id);
      online = false;
    }
    rte_delay_us_sleep(options.idle_sleep_us);
    store_->Online(options_.id);
    online = true;
    // Polling again right away; the next empty poll sleeps again (idle stays high).
  }
  if (online) store_->Offline(options_.id);
}

}  // namespace lb::dataplane
