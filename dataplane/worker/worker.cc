#include "dataplane/worker/worker.h"

#include <rte_cycles.h>
#include <rte_ethdev.h>

#include <algorithm>
#include <array>

namespace lb::dataplane {

Worker::Worker(const Options& options, SnapshotStore* store)
    : options_(options),
      store_(store),
      fast_({.flow_capacity = options.flow_capacity,
             .flow_hasher = options.flow_hasher,
             .complete_partial_checksums = options.complete_partial_checksums,
             .flow_sync_announce = options.flow_sync_announce,
             .flow_sync_refresh_ms = options.flow_sync_refresh_ms,
             .nat = {.worker_id = options.id,
                     .workers = options.workers,
                     .addresses = options.nat_addresses,
                     .port_min = options.nat_port_min,
                     .port_max = options.nat_port_max,
                     .port_secret = options.nat_port_secret,
                     .adopted_capacity = options.nat_adopted_capacity},
             .traffic = options.traffic}),
      learner_(fast_.flows(), fast_.nat(), fast_.announcer(), options_.flow_hasher, fast_.counters()),
      tsc_per_ms_(std::max<uint64_t>(1, rte_get_tsc_hz() / 1000)) {}

Millis Worker::Now() const { return Millis(rte_get_tsc_cycles() / tsc_per_ms_); }

void Worker::ProcessBurst(rte_mbuf* const* pkts, uint16_t n, Millis now, BurstOutput& out, bool handed_over) {
  n = std::min(n, kMaxBurst);
  if (!handed_over) fast_.counters().Add(Event::kRxPackets, n);
  fast_.ProcessBurst(store_->Acquire(), pkts, n, now, out);  // the snapshot once per burst
  out.FreeDropped();
}

uint32_t Worker::Learn(std::span<const SyncedFlow> flows, Millis now) {
  const Snapshot* snap = store_->Acquire();
  if (snap == nullptr) return 0;
  return learner_.Learn(*snap, flows, now);
}

// ---- The poll loop ----

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
  if (const uint32_t freed = fast_.flows().Sweep(now, options_.sweep_buckets_per_poll)) {
    fast_.counters().Add(Event::kFlowExpired, freed);
  }
  fast_.nat().Sweep(now, options_.sweep_buckets_per_poll);
  return n;
}

void Worker::SendBurst(BurstOutput& out, PortQueue tx, PortQueue kernel) {
  const uint16_t sent = rte_eth_tx_burst(tx.port, tx.queue, out.wire.data(), out.num_wire);
  const uint16_t to_kernel = rte_eth_tx_burst(kernel.port, kernel.queue, out.kernel.data(), out.num_kernel);
  fast_.counters().Add(Event::kTxPackets, sent);
  for (uint16_t i = sent; i < out.num_wire; ++i) out.Drop(out.wire[i], DropReason::kTxFull, fast_.counters());
  for (uint16_t i = to_kernel; i < out.num_kernel; ++i) out.Drop(out.kernel[i], DropReason::kTxFull, fast_.counters());
  for (uint16_t i = 0; i < out.num_redirect; ++i) {
    const uint16_t to = out.redirect_to[i];
    if (to >= nat_inboxes_.size() || rte_ring_mp_enqueue(nat_inboxes_[to], out.redirect[i]) != 0) {
      out.Drop(out.redirect[i], DropReason::kNatRedirectFull, fast_.counters());
    }
  }
  out.FreeDropped();
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

uint32_t Worker::SendFromKernel(rte_ring* ring, PortQueue port) {
  std::array<rte_mbuf*, kMaxBurst> pkts;
  const unsigned n = rte_ring_sc_dequeue_burst(ring, reinterpret_cast<void**>(pkts.data()), kMaxBurst, nullptr);
  if (n == 0) return 0;
  const uint16_t sent = rte_eth_tx_burst(port.port, port.queue, pkts.data(), uint16_t(n));
  fast_.counters().Add(Event::kFromKernel, sent);
  if (sent < n) {
    fast_.counters().Add(DropReason::kTxFull, n - sent);
    rte_pktmbuf_free_bulk(pkts.data() + sent, n - sent);
  }
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
      if (p.wire_pump != nullptr) p.wire_pump->Pull(fast_.counters());
      received += PollOnce(p.wire, p.wire, p.kernel);
    }
    if (options.from_kernel != nullptr && !options.ports.empty()) {
      received += SendFromKernel(options.from_kernel, options.ports[0].wire);
    }
    if (inbox != nullptr && !options.ports.empty()) {
      received += DrainInbox(inbox, options.ports[0].wire, options.ports[0].kernel);
    }
    for (const auto& p : options.ports) {
      if (p.wire_pump != nullptr) p.wire_pump->Push(fast_.counters());
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

// ---- The control thread's flow-query mailbox ----

void Worker::AnswerQuery(Millis now) {
  // Acquire: the key written before the control thread's release store is visible.
  if (query_.state.load(std::memory_order_acquire) != kAsked) return;
  FlowAnswer answer;
  if (FlowTable::Slot slot =
          fast_.flows().Find(fast_.flows().Tag(query_.key, options_.flow_hasher.Hash(query_.key)), now)) {
    if (!(slot.entry->state & kNatEntryFlag)) {
      answer = {true, slot.entry->backend_slot, slot.entry->backend_generation};
    } else if (fast_.nat().SessionBackend(*slot.entry, query_.key, now, answer.backend_slot,
                                          answer.backend_generation)) {
      answer.found = true;
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

}  // namespace lb::dataplane
