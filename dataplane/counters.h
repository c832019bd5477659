// Worker counters: every drop reason and every event a worker counts, from one list.
//
// LB_DROP_REASONS and LB_EVENTS are the single source of the names that the stats API,
// metrics and logs use. Each worker owns one WorkerCounters and is its only writer; the
// control thread sums all workers' copies with relaxed loads.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string_view>

namespace lb::dataplane {

// X(enumerator, metric name, what it means)
#define LB_DROP_REASONS(X)                                                                                          \
  X(kTruncated, "truncated", "a header is cut short by the end of the packet")                                      \
  X(kMalformed, "malformed", "a header field is invalid (version, length, IHL, data offset)")                       \
  X(kNotContiguous, "not_contiguous", "the headers span more than the first mbuf segment")                          \
  X(kNoService, "no_service", "sent to a VIP on a protocol or port no service listens on")                          \
  X(kNoBackend, "no_backend", "the service has no active backend")                                                  \
  X(kTtlExceeded, "ttl_exceeded", "TTL or hop limit would reach zero on forwarding")                                \
  X(kFragmentAmbiguous, "fragment_ambiguous",                                                                       \
    "a non-first fragment for a VIP with several services of its protocol and no all-ports one")                    \
  X(kTooBig, "too_big",                                                                                             \
    "too big once encapsulated, and no ICMP error may be sent (IPv4 DF clear, or itself an ICMP error)")            \
  X(kTooBigRateLimited, "too_big_rate_limited",                                                                     \
    "too big once encapsulated; the ICMP error was suppressed by the rate limit")                                   \
  X(kBadChecksum, "bad_checksum",                                                                                   \
    "an echo request to a VIP with a bad IPv4 header or ICMP checksum (RFC 1122 3.2.1.2)")                          \
  X(kIcmpUnmatched, "icmp_unmatched", "an ICMP error to a VIP quotes no flow of a service")                         \
  X(kIcmpUnsupported, "icmp_unsupported", "an ICMP message to a VIP that is neither an echo request nor an error")  \
  X(kNoNextHop, "no_next_hop", "the gateway's MAC is not known (yet): nowhere to send the packet")                  \
  X(kNoEncapSource, "no_encap_source", "no outer source address is configured for the backend's family")            \
  X(kNoHeadroom, "no_headroom", "the mbuf lacks headroom for the rewrite, or is segmented where it must not be")    \
  X(kTxFull, "tx_full", "the TX queue did not take the packet")                                                     \
  X(kSourceNotAllowed, "source_not_allowed",                                                                        \
    "from a client outside the service's source ranges (Kubernetes' loadBalancerSourceRanges)")                     \
  X(kNoVip, "no_vip", "to an announced VIP CIDR (--vip_cidrs) but no VIP: not the kernel's either")                 \
  X(kExceptionRateLimited, "exception_rate_limited",                                                                \
    "for the kernel, over the worker's --exception_pps (neither neighbour discovery, routing nor flow sync)")       \
  X(kExceptionNeighborRateLimited, "exception_neighbor_rate_limited",                                               \
    "ARP or IPv6 neighbour discovery for the kernel, over the worker's --exception_neighbor_pps")                   \
  X(kExceptionRoutingRateLimited, "exception_routing_rate_limited",                                                 \
    "BGP or BFD from a --control_peers peer, over the worker's --exception_routing_pps")                            \
  X(kExceptionSyncRateLimited, "exception_sync_rate_limited",                                                       \
    "flow sync from a --flow_sync_peers peer, over the worker's --exception_sync_pps")                              \
  X(kOffLinkControl, "off_link_control",                                                                            \
    "BGP or BFD from a peer, or IPv6 neighbour discovery, with a TTL or hop limit below 255: routed here, so not "  \
    "from the link (GTSM, RFC 5082; RFC 4861)")                                                                     \
  X(kNatPortsExhausted, "nat_ports_exhausted",                                                                      \
    "a new NAT connection found every SNAT port of its family held by a live session")                              \
  X(kNatNoSession, "nat_no_session",                                                                                \
    "a packet to an SNAT address and port that no live session holds, or not from its backend")                     \
  X(kNatNotSyn, "nat_not_syn", "a TCP packet without a NAT session that is not a SYN: only a SYN opens a session")  \
  X(kNatFlowTableFull, "nat_flow_table_full",                                                                       \
    "a new NAT connection found its flow-table bucket full of live flows (it cannot be tracked)")                   \
  X(kNatRedirectFull, "nat_redirect_full", "the owning worker's NAT inbox did not take a reply")                    \
  X(kGsoUnsupported, "gso_unsupported",                                                                             \
    "af_packet port: a GSO frame lbd cannot segment (UFO, tunnels, IPv6 extension headers)")                        \
  X(kFrameCut, "frame_cut", "af_packet port: a frame longer than the port's frame size (64 kB), cut by the kernel") \
  X(kOversize, "oversize", "af_packet port: a frame or segment longer than a packet buffer (jumbo MTU)")            \
  X(kNoMbuf, "no_mbuf", "af_packet port: no packet buffer free for a received frame")                               \
  X(kRxRingFull, "rx_ring_full", "af_packet port: frames the kernel dropped, the socket's RX ring full")

#define LB_EVENTS(X)                                                                                                  \
  X(kRxPackets, "rx_packets", "packets received")                                                                     \
  X(kTxPackets, "tx_packets", "packets sent out of a port")                                                           \
  X(kToKernel, "to_kernel", "packets handed to the exception path (not for a VIP)")                                   \
  X(kFromKernel, "from_kernel", "packets the kernel sent, out of the port (exception path)")                          \
  X(kChecksumsCompleted, "checksums_completed",                                                                       \
    "TCP/UDP checksums a sender left partial (veth, virtio: kernel offloads), completed (af_packet ports)")           \
  X(kGsoFrames, "gso_frames", "af_packet port: GSO/GRO frames of the kernel's, cut into segments")                    \
  X(kGsoSegments, "gso_segments", "af_packet port: the segments cut from them")                                       \
  X(kForwarded, "forwarded", "packets encapsulated to a backend")                                                     \
  X(kEchoReplies, "echo_replies", "ICMP/ICMPv6 echo requests to a VIP answered")                                      \
  X(kTooBigSent, "too_big_sent", "ICMP fragmentation-needed / packet-too-big sent")                                   \
  X(kIcmpErrorsForwarded, "icmp_errors_forwarded", "ICMP errors sent to a flow's backend")                            \
  X(kFragments, "fragments", "IP fragments for a VIP (hashed on addresses only)")                                     \
  X(kFlowHits, "flow_hits", "packets whose flow was in the flow table")                                               \
  X(kFlowMisses, "flow_misses", "packets whose flow was not in the flow table")                                       \
  X(kFlowInserts, "flow_inserts", "flows added to the flow table")                                                    \
  X(kFlowTableFull, "flow_table_full", "new flows hashed without an entry: bucket full of live flows")                \
  X(kFlowRepicks, "flow_repicks",                                                                                     \
    "flows moved because their backend went away, went down, or a SYN met a closing or draining entry")               \
  X(kFlowExpired, "flow_expired", "flow entries reclaimed after their timeout")                                       \
  X(kNatSessions, "nat_sessions", "NAT sessions opened (an SNAT port taken)")                                         \
  X(kNatForwarded, "nat_forwarded", "packets translated toward a backend (NAT)")                                      \
  X(kNatReplies, "nat_replies", "backend replies translated back to the client (NAT)")                                \
  X(kNatIcmpErrors, "nat_icmp_errors", "ICMP errors about NAT sessions translated")                                   \
  X(kNatRedirected, "nat_redirected", "replies handed to the worker that owns their SNAT port")                       \
  X(kNatExpired, "nat_expired", "NAT sessions freed after their timeout (own and adopted)")                           \
  X(kNatPortsSkipped, "nat_ports_skipped",                                                                            \
    "SNAT ports passed over for a new session: a session adopted from a peer gives the backend that 4-tuple")         \
  X(kHandshakesYielded, "handshakes_yielded",                                                                         \
    "flow sync: own flows and NAT sessions whose handshake never completed here, replaced by the peer's established " \
    "one")                                                                                                            \
  X(kNatAdoptedFull, "nat_adopted_full",                                                                              \
    "flow sync: NAT sessions of the peers not adopted, every adopted session live (--flow_sync_nat_sessions)")        \
  X(kFlowsAnnounced, "flows_announced",                                                                               \
    "flow sync: flows told to the peer nodes (established, moved to another backend, or active for another refresh "  \
    "interval)")                                                                                                      \
  X(kFlowAnnouncesLost, "flow_announces_lost", "flow sync: announcements the sync thread's ring did not take")        \
  X(kFlowsLearned, "flows_learned",                                                                                   \
    "flow sync: flows the peer nodes pinned (NAT sessions included), taken into the flow table or refreshed there")   \
  X(kFlowsLearnedUnknown, "flows_learned_unknown",                                                                    \
    "flow sync: peer flows of a service or backend this node does not have")                                          \
  X(kFlowsRescued, "flows_rescued",                                                                                   \
    "flow sync: flows a peer pinned whose packets came here: they kept their backend (NAT: their session)")           \
  X(kFlowsMidstream, "flows_midstream",                                                                               \
    "TCP flows first seen here without a SYN and not learned from a peer: the current Maglev table picked their "     \
    "backend")

#define LB_ENUMERATOR(name, metric, help) name,
enum class DropReason : uint16_t { LB_DROP_REASONS(LB_ENUMERATOR) kCount };
enum class Event : uint16_t { LB_EVENTS(LB_ENUMERATOR) kCount };
#undef LB_ENUMERATOR

inline constexpr size_t kNumDropReasons = size_t(DropReason::kCount);
inline constexpr size_t kNumEvents = size_t(Event::kCount);

// A port's own counters, as the NIC or the PMD counts them (rte_eth_stats), since the
// port started. Plain data: any thread.
struct PortCounters {
  uint64_t rx_packets = 0, tx_packets = 0, rx_bytes = 0, tx_bytes = 0;
  uint64_t rx_missed = 0;  // imissed: dropped by the NIC, its RX queues full
  uint64_t rx_errors = 0, tx_errors = 0;
  uint64_t rx_nombuf = 0;  // RX mbuf allocation failures
};

struct CounterInfo {
  std::string_view name;
  std::string_view help;
};

#define LB_COUNTER_INFO(name, metric, help) CounterInfo{metric, help},
inline constexpr std::array<CounterInfo, kNumDropReasons> kDropReasonInfo = {LB_DROP_REASONS(LB_COUNTER_INFO)};
inline constexpr std::array<CounterInfo, kNumEvents> kEventInfo = {LB_EVENTS(LB_COUNTER_INFO)};
#undef LB_COUNTER_INFO

// One worker's counters, on their own cache lines. Written by the owning worker lcore
// only; read by any thread.
class alignas(64) WorkerCounters {
 public:
  // Owner only. A relaxed load + store rather than fetch_add: there is one writer, so
  // no read-modify-write is needed, and on x86 this compiles to a plain add.
  void Add(DropReason r, uint64_t n = 1) { Bump(drops_[size_t(r)], n); }
  void Add(Event e, uint64_t n = 1) { Bump(events_[size_t(e)], n); }

  // Any thread. Relaxed: counters are independent and need no ordering with other data.
  uint64_t Get(DropReason r) const { return drops_[size_t(r)].load(std::memory_order_relaxed); }
  uint64_t Get(Event e) const { return events_[size_t(e)].load(std::memory_order_relaxed); }

 private:
  static void Bump(std::atomic<uint64_t>& c, uint64_t n) {
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }

  std::array<std::atomic<uint64_t>, kNumDropReasons> drops_{};
  std::array<std::atomic<uint64_t>, kNumEvents> events_{};
};

}  // namespace lb::dataplane
