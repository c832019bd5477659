#include "dataplane/worker/fast_path.h"

#include <rte_byteorder.h>
#include <rte_prefetch.h>

#include <algorithm>

#include "dataplane/rewrite.h"
#include "dataplane/worker/flow_state.h"

namespace lb::dataplane {
namespace {

bool TakesNewFlows(const BackendRecord& b) { return b.state == BackendState::kActive && b.weight > 0; }

// Which budget a packet for the kernel is taken from. The node's control plane lives on
// ARP and neighbour discovery, BGP and BFD with its ToRs, and flow sync with the other LB
// nodes: each has a budget of its own, so that a flood of packets that only look like one
// class spends that class's budget alone. What can be checked here is: the source, for
// BGP, BFD and flow sync; and, for what must come from the link itself, a TTL or hop
// limit of 255, which no packet routed here can have (GTSM: BIRD's `ttl security` sends
// BGP with 255, RFC 5881 has BFD sent with 255, RFC 4861 ND). Off-link look-alikes are
// dropped: the kernel would drop them anyway.
struct Classified {
  ExceptionClass cls = ExceptionClass::kOther;
  bool off_link = false;
};
Classified Classify(const Snapshot& snap, const ParsedPacket& p) {
  constexpr uint16_t kBgp = 179, kBfd = 3784;
  constexpr uint8_t kOnLink = 255;
  const bool on_link = p.ttl == kOnLink;
  switch (p.kind) {
    case PacketKind::kNotIp:
      return {p.ether_type == kEtherTypeArp ? ExceptionClass::kNeighbor : ExceptionClass::kOther};
    case PacketKind::kOtherIcmp:
      if (p.is_v4 || p.icmp_type < 133 || p.icmp_type > 137) return {};  // RFC 4861 §4
      return {ExceptionClass::kNeighbor, !on_link};
    case PacketKind::kTcp:
      if (p.is_fragment ||
          (p.key.src_port_be != rte_cpu_to_be_16(kBgp) && p.key.dst_port_be != rte_cpu_to_be_16(kBgp)) ||
          !snap.IsControlPeer(p.key.src)) {
        return {};
      }
      return {ExceptionClass::kRouting, !on_link};
    case PacketKind::kUdp: {
      if (p.is_fragment) return {};
      const uint16_t port = rte_be_to_cpu_16(p.key.dst_port_be);
      if (port == kBfd && snap.IsControlPeer(p.key.src)) return {ExceptionClass::kRouting, !on_link};
      if (snap.IsFlowSync(p.key.src, port)) return {ExceptionClass::kFlowSync};
      return {};
    }
    default:
      return {};
  }
}

// The drop reason of each class's budget.
constexpr DropReason kOverBudget[kExceptionClasses] = {
    DropReason::kExceptionRateLimited, DropReason::kExceptionNeighborRateLimited,
    DropReason::kExceptionRoutingRateLimited, DropReason::kExceptionSyncRateLimited};

bool NeedsFlowHash(const ParsedPacket& p) {
  return (p.kind == PacketKind::kTcp || p.kind == PacketKind::kUdp || p.kind == PacketKind::kIcmpError) &&
         !p.is_fragment;
}

// Why a packet Parse() refused is dropped.
DropReason ParseDropReason(ParseStatus status, const rte_mbuf* m) {
  if (status != ParseStatus::kTruncated) return DropReason::kMalformed;
  return m->nb_segs > 1 ? DropReason::kNotContiguous : DropReason::kTruncated;
}

}  // namespace

FastPath::FastPath(const Options& options)
    : options_(options),
      traffic_(options.traffic),
      flows_(options.flow_capacity),
      announcer_(options.flow_sync_announce, options.flow_sync_refresh_ms, counters_),
      nat_(options.nat, flows_, announcer_, options_.flow_hasher, counters_) {}

void FastPath::ProcessBurst(const Snapshot* snap, rte_mbuf* const* pkts, uint16_t n, Millis now, BurstOutput& out) {
  last_service_.svc = nullptr;
  nat_.BeginBurst();

  // Stage 1: bring the headers in, parse, hash, and prefetch the flow-table buckets.
  for (uint16_t i = 0; i < n; ++i) rte_prefetch0(rte_pktmbuf_mtod(pkts[i], void*));
  std::array<PacketMeta, kMaxBurst>& meta = meta_;  // Parse() resets each entry it fills
  for (uint16_t i = 0; i < n; ++i) {
    PacketMeta& mt = meta[i];
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

  if (snap == nullptr) {  // nothing configured yet: nothing is for a VIP
    for (uint16_t i = 0; i < n; ++i) {
      if (meta[i].status != ParseStatus::kOk) {
        out.Drop(pkts[i], ParseDropReason(meta[i].status, pkts[i]), counters_);
      } else {
        out.kernel[out.num_kernel++] = pkts[i];
        counters_.Add(Event::kToKernel);
      }
    }
    return;
  }

  // Stage 2: decide and rewrite; the buckets have had the whole burst's parsing to arrive.
  // NAT sessions: the burst's first few at once, then each the lookahead ahead of its turn.
  BurstContext ctx{*snap, now, out, counters_, traffic_};
  const bool nat = nat_.enabled();
  if (nat) {
    for (uint16_t i = 0; i < std::min(n, kNatSessionLookahead); ++i) nat_.LookUpAhead(meta[i], now);
  }
  for (uint16_t i = 0; i < n; ++i) {
    if (nat && i + kNatSessionLookahead < n) nat_.LookUpAhead(meta[i + kNatSessionLookahead], now);
    ctx.service = 0;
    if (meta[i].status != ParseStatus::kOk) {
      ctx.Drop(pkts[i], ParseDropReason(meta[i].status, pkts[i]));
      continue;
    }
    Handle(ctx, pkts[i], meta[i]);
  }
}

inline const ServiceRecord* FastPath::FindService(const Snapshot& snap, const FlowKey& key) {
  LastService& last = last_service_;
  if (last.svc != nullptr && last.port_be == key.dst_port_be && last.protocol == key.protocol && last.vip == key.dst) {
    return last.svc;
  }
  const ServiceRecord* svc = snap.FindService(key.dst, key.protocol, key.dst_port_be);
  if (svc != nullptr) last = {key.dst, key.dst_port_be, key.protocol, svc};
  return svc;
}

inline void FastPath::Handle(BurstContext& ctx, rte_mbuf* m, const PacketMeta& meta) {
  const Snapshot& snap = ctx.snap;
  const ParsedPacket& p = meta.packet;
  // The common case first: TCP or UDP to a service, found with one lookup. Anything else
  // needs the VIP table to tell "for the kernel" from "for a VIP, but not served".
  if ((p.kind == PacketKind::kTcp || p.kind == PacketKind::kUdp) && !p.is_fragment && p.ttl > 1) {
    if (const ServiceRecord* svc = FindService(snap, p.key)) return HandleFlow(ctx, m, meta, *svc);
  }
  // NAT replies (to an SNAT address) before the VIP table: a few compares, not a hash.
  if (p.kind != PacketKind::kNotIp && !snap.nat().addresses.empty()) {
    if (const int a = snap.SnatIndex(p.key.dst); a >= 0) return nat_.HandleSnat(ctx, m, meta, uint32_t(a));
  }
  // Replies to another node's SNAT address, of the sessions this node adopted.
  if (nat_.has_adopted() && nat_.HandleAdoptedReply(ctx, m, meta)) return;
  const VipRecord* vip = p.kind == PacketKind::kNotIp ? nullptr : snap.FindVip(p.key.dst);
  if (vip == nullptr) return ToKernel(ctx, m, p);
  switch (p.kind) {
    case PacketKind::kIcmpEcho:
      return ctx.AnswerEcho(m, p);
    case PacketKind::kOtherIcmp:
      return ctx.Drop(m, DropReason::kIcmpUnsupported);
    case PacketKind::kOtherIp:
      return ctx.Drop(m, DropReason::kNoService);
    default:
      break;
  }
  if (p.ttl <= 1) return ctx.Drop(m, DropReason::kTtlExceeded);
  if (p.kind == PacketKind::kIcmpError) return HandleIcmpError(ctx, m, meta);
  if (p.is_fragment) return HandleFragment(ctx, m, meta, *vip);
  // TCP or UDP to a VIP: the service lookup at the top found nothing.
  ctx.Drop(m, DropReason::kNoService);
}

void FastPath::ToKernel(BurstContext& ctx, rte_mbuf* m, const ParsedPacket& p) {
  const Snapshot& snap = ctx.snap;
  if (p.kind != PacketKind::kNotIp && snap.InVipCidrs(p.key.dst)) return ctx.Drop(m, DropReason::kNoVip);
  const Classified c = Classify(snap, p);
  if (c.off_link) return ctx.Drop(m, DropReason::kOffLinkControl);
  const uint32_t rate = snap.exception_per_second(c.cls);
  if (rate != 0 && !exception_limiters_[size_t(c.cls)].Take(rate, ctx.now)) {
    return ctx.Drop(m, kOverBudget[size_t(c.cls)]);
  }
  ctx.ToKernel(m);
}

inline void FastPath::HandleFlow(BurstContext& ctx, rte_mbuf* m, const PacketMeta& meta, const ServiceRecord& svc) {
  ctx.service = svc.traffic_id;
  // Every packet, not only a flow's first: the ranges may have changed since.
  if (!svc.Admits(meta.packet.key.src)) [[unlikely]]
    return ctx.Drop(m, DropReason::kSourceNotAllowed);
  if (svc.mode == ForwardingMode::kNat) return nat_.HandleClientSide(ctx, m, meta, svc);
  const Snapshot& snap = ctx.snap;
  const Millis now = ctx.now;
  const ParsedPacket& p = meta.packet;
  FlowTable::Slot slot = FindFlow(flows_, meta, now);
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
      if (b == nullptr) return ctx.Drop(m, DropReason::kNoBackend);
      counters_.Add(Event::kFlowRepicks);
      ctx.NewFlow();
      state = InitialState(p);
    }
  } else {
    counters_.Add(Event::kFlowMisses);
    // Not started here, and not learned from a peer: the current Maglev table decides.
    if (p.key.protocol == IPPROTO_TCP && !IsBareSyn(p)) counters_.Add(Event::kFlowsMidstream);
    FlowEntry unpinned{};
    b = PickAndPin(snap, svc, meta, &unpinned);
    if (b == nullptr) return ctx.Drop(m, DropReason::kNoBackend);
    ctx.NewFlow();
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
    if (announcer_.enabled() && hit && Announceable(state)) {
      // Once when the flow qualifies (or moved to another backend), then whenever its
      // deadline enters another refresh interval: while it is active, every interval.
      if (!announced || (extend && announcer_.RefreshDue(*slot.deadline, deadline))) {
        announcer_.Announce(p.key, *b, state);
      }
      value |= kAnnouncedFlag;
    }
    if (slot.entry->state != value) slot.entry->state = value;
    if (extend) *slot.deadline = deadline;
  }
  Forward(ctx, m, p, *b, meta.tag.hash);
}

const BackendRecord* FastPath::PickAndPin(const Snapshot& snap, const ServiceRecord& svc, const PacketMeta& meta,
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

void FastPath::HandleFragment(BurstContext& ctx, rte_mbuf* m, const PacketMeta& meta, const VipRecord& vip) {
  // Fragments are hashed on addresses only, so that every fragment of a datagram
  // reaches the same backend; they take no flow entry.
  counters_.Add(Event::kFragments);
  const Snapshot& snap = ctx.snap;
  const ParsedPacket& p = meta.packet;
  const ServiceRecord* svc = nullptr;
  if (p.is_first_fragment) {
    svc = snap.FindService(p.key.dst, p.key.protocol, p.key.dst_port_be);
  } else {
    const uint32_t i = p.key.protocol == IPPROTO_TCP ? vip.fragment_service_tcp : vip.fragment_service_udp;
    if (i == kAmbiguousServiceIndex) return ctx.Drop(m, DropReason::kFragmentAmbiguous);
    if (i != kNoServiceIndex) svc = &snap.service(i);
  }
  if (svc == nullptr) return ctx.Drop(m, DropReason::kNoService);
  ctx.service = svc->traffic_id;
  if (!svc->Admits(p.key.src)) [[unlikely]]
    return ctx.Drop(m, DropReason::kSourceNotAllowed);
  FlowKey key = p.key;
  key.src_port_be = key.dst_port_be = 0;
  const uint32_t hash = options_.flow_hasher.Hash(key);
  uint32_t slot_id;
  const BackendRecord* b = snap.Pick(*svc, options_.flow_hasher.ServiceHash(key, svc->hash_fields, hash), &slot_id);
  if (b == nullptr) return ctx.Drop(m, DropReason::kNoBackend);
  Forward(ctx, m, p, *b, hash);
}

void FastPath::HandleIcmpError(BurstContext& ctx, rte_mbuf* m, const PacketMeta& meta) {
  // The error quotes a packet a backend sent from the VIP (DSR): it belongs to the
  // backend that owns the flow, found as a normal packet of the flow would find it, but
  // without creating an entry.
  const Snapshot& snap = ctx.snap;
  const ParsedPacket& p = meta.packet;
  const ServiceRecord* svc = snap.FindService(p.key.dst, p.key.protocol, p.key.dst_port_be);
  if (svc == nullptr) return ctx.Drop(m, DropReason::kIcmpUnmatched);
  ctx.service = svc->traffic_id;
  if (svc->mode == ForwardingMode::kNat) return nat_.HandleIcmpFromClientSide(ctx, *svc, m, meta);
  const BackendRecord* b = nullptr;
  if (FlowTable::Slot slot = FindFlow(flows_, meta, ctx.now); slot && !(slot.entry->state & kNatEntryFlag)) {
    b = snap.Pinned(*svc, slot.entry->backend_slot, slot.entry->backend_generation);
  }
  uint32_t slot_id;
  if (b == nullptr)
    b = snap.Pick(*svc, options_.flow_hasher.ServiceHash(p.key, svc->hash_fields, meta.tag.hash), &slot_id);
  if (b == nullptr) return ctx.Drop(m, DropReason::kNoBackend);
  counters_.Add(Event::kIcmpErrorsForwarded);
  Forward(ctx, m, p, *b, meta.tag.hash);
}

inline void FastPath::Forward(BurstContext& ctx, rte_mbuf* m, const ParsedPacket& p, const BackendRecord& backend,
                              uint32_t hash) {
  const Snapshot& snap = ctx.snap;
  const EncapHeader& h = backend.encap;
  if (h.len == 0) return ctx.Drop(m, DropReason::kNoEncapSource);
  if (!backend.on_link && !snap.gateway_known()) return ctx.Drop(m, DropReason::kNoNextHop);
  const uint16_t overhead = uint16_t(h.len - h.l2_len);
  if (uint32_t(p.ip_len) + overhead > snap.mtu()) {
    if (p.kind == PacketKind::kIcmpError || (p.is_v4 && !p.dont_fragment)) {
      return ctx.Drop(m, DropReason::kTooBig);
    }
    if (!too_big_limiter_.Take(snap.icmp_too_big_per_second(), ctx.now)) {
      return ctx.Drop(m, DropReason::kTooBigRateLimited);
    }
    if (!rewrite::MakeTooBig(m, p, uint16_t(snap.mtu() - overhead))) {
      return ctx.Drop(m, DropReason::kNoHeadroom);
    }
    return ctx.ToWire(m, Event::kTooBigSent);
  }
  // RFC 2003 §3.1: the encapsulator forwards the inner packet as a router would.
  rewrite::DecrementTtl(rte_pktmbuf_mtod_offset(m, uint8_t*, p.l3_offset), p.is_v4);
  const uint16_t id = next_ip_id_++;
  const bool ok = h.outer_v4 ? (h.gue ? rewrite::Encapsulate<true, true>(m, p, h, hash, id)
                                      : rewrite::Encapsulate<true, false>(m, p, h, hash, id))
                             : (h.gue ? rewrite::Encapsulate<false, true>(m, p, h, hash, id)
                                      : rewrite::Encapsulate<false, false>(m, p, h, hash, id));
  if (!ok) return ctx.Drop(m, DropReason::kNoHeadroom);
  ctx.ToWire(m, Event::kForwarded);
  traffic_.Forwarded(ctx.service, backend.traffic_id, p.ip_len);  // traffic_ at a fixed offset: no ctx.traffic load
}

}  // namespace lb::dataplane
