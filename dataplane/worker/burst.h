// What a burst carries through the worker's paths, and where its packets leave.
//
// A burst is classified against one snapshot at one time (the worker reads the snapshot
// once per burst): BurstContext holds that snapshot, the burst's clock and its output,
// and the emit primitives every path uses. Each packet ends in exactly one of the
// output's lists (the wire, the kernel, another worker, or dropped), counted under its
// event or drop reason, and, once its service is known (`service`), in that service's
// traffic (traffic.h). Worker lcore only; no allocation.
#pragma once

#include <rte_mbuf.h>

#include <array>
#include <cstdint>

#include "common/millis.h"
#include "dataplane/counters.h"
#include "dataplane/dpdk/queue_pump.h"
#include "dataplane/flow_table.h"
#include "dataplane/parse.h"
#include "dataplane/rewrite.h"
#include "dataplane/snapshot.h"
#include "dataplane/traffic.h"

namespace lb::dataplane {

struct BurstOutput {
  std::array<rte_mbuf*, kMaxBurst> wire;      // out of the port they came in on
  std::array<rte_mbuf*, kMaxBurst> kernel;    // to the exception path (TAP)
  std::array<rte_mbuf*, kMaxBurst> redirect;  // NAT replies for the worker that owns their port
  std::array<uint16_t, kMaxBurst> redirect_to;
  std::array<rte_mbuf*, kMaxBurst> dropped;  // freed together (FreeDropped)
  uint16_t num_wire = 0;
  uint16_t num_kernel = 0;
  uint16_t num_redirect = 0;
  uint16_t num_dropped = 0;

  void Drop(rte_mbuf* m, DropReason reason, WorkerCounters& counters) {
    counters.Add(reason);
    dropped[num_dropped++] = m;
  }
  void FreeDropped() {
    if (num_dropped == 0) return;
    rte_pktmbuf_free_bulk(dropped.data(), num_dropped);
    num_dropped = 0;
  }
};

// A packet of the burst as stage 1 left it: parsed, hashed, and (NAT) its flow entry
// looked up ahead of its turn.
struct PacketMeta {
  ParsedPacket packet;
  ParseStatus status;
  FlowTag tag;           // of packet.key, when the flow table may be consulted
  FlowTable::Slot flow;  // the flow's live entry, when NatPath::LookUpAhead found it
};

// The flow's live entry: the one looked up ahead, else looked up now (also when the
// look-ahead found none: an earlier packet of the burst may have created it since). A
// found entry stays valid through the burst: ways are only taken when free or expired.
inline FlowTable::Slot FindFlow(FlowTable& flows, const PacketMeta& meta, Millis now) {
  return meta.flow ? meta.flow : flows.Find(meta.tag, now);
}

struct BurstContext {
  const Snapshot& snap;
  Millis now;
  BurstOutput& out;
  WorkerCounters& counters;
  TrafficCells& traffic;
  // The traffic id of the service the current packet is for; 0 (the sink) until it is
  // known. Reset for each packet.
  uint32_t service = 0;

  // The current packet, sent to backend `b` (its `ip_len` bytes, as the client sent them).
  void ToBackend(rte_mbuf* m, Event event, const BackendRecord& b, uint16_t ip_len) {
    ToWire(m, event);
    traffic.Forwarded(service, b.traffic_id, ip_len);
  }
  // The current packet starts a flow of its service: a backend was picked for it.
  void NewFlow() { traffic.NewFlow(service); }

  void ToWire(rte_mbuf* m, Event event) {
    out.wire[out.num_wire++] = m;
    counters.Add(event);
  }
  void ToKernel(rte_mbuf* m) {
    out.kernel[out.num_kernel++] = m;
    counters.Add(Event::kToKernel);
  }
  // To the worker that owns the NAT port the packet is for.
  void ToWorker(rte_mbuf* m, uint16_t worker) {
    out.redirect[out.num_redirect] = m;
    out.redirect_to[out.num_redirect++] = worker;
    counters.Add(Event::kNatRedirected);
  }
  void Drop(rte_mbuf* m, DropReason reason) {
    out.Drop(m, reason, counters);
    traffic.Dropped(service);
  }
  // An echo request to a VIP or an SNAT address, answered in place.
  void AnswerEcho(rte_mbuf* m, const ParsedPacket& p) {
    if (!rewrite::EchoChecksumsValid(m, p)) return Drop(m, DropReason::kBadChecksum);
    rewrite::MakeEchoReply(m, p);
    ToWire(m, Event::kEchoReplies);
  }
};

}  // namespace lb::dataplane
