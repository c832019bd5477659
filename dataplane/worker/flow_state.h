// The life of a flow as the worker tracks it (FlowState, flow_table.h): the state its
// first packet opens, the state each further packet moves it to, and which states flow
// sync tells the peers about. Pure: any thread.
#pragma once

#include <netinet/in.h>

#include <cstdint>

#include "dataplane/flow_table.h"
#include "dataplane/parse.h"

namespace lb::dataplane {

// A flow's deadline is refreshed when it would move by more than this: idle timeouts are
// seconds long, so a flow may expire up to this much early.
inline constexpr int32_t kDeadlineSlack = 250;  // ms

inline bool IsBareSyn(const ParsedPacket& p) {
  return p.key.protocol == IPPROTO_TCP && (p.tcp_flags & (kTcpSyn | kTcpAck)) == kTcpSyn;
}

// The state of a flow whose first packet (to this LB node) is `p`.
inline FlowState InitialState(const ParsedPacket& p) {
  if (p.key.protocol == IPPROTO_UDP) return FlowState::kUdp;
  if (p.key.protocol != IPPROTO_TCP) return FlowState::kOther;
  if (p.tcp_flags & (kTcpFin | kTcpRst)) return FlowState::kTcpClosing;
  return IsBareSyn(p) ? FlowState::kTcpSynSent : FlowState::kTcpMidstream;
}

inline FlowState NextState(FlowState s, const ParsedPacket& p) {
  if (s == FlowState::kTcpClosing || p.key.protocol != IPPROTO_TCP) return s;
  if (p.tcp_flags & (kTcpFin | kTcpRst)) return FlowState::kTcpClosing;
  if (s == FlowState::kTcpSynSent && !IsBareSyn(p)) return FlowState::kTcpEstablished;
  if (s == FlowState::kTcpMidstream) return FlowState::kTcpEstablished;  // a second packet
  return s;
}

// The state a reply (the backend's packet, through NAT) moves a session to: it may close
// it, but only the client's packets open one (a SYN-ACK does not complete a handshake).
inline FlowState NextReplyState(FlowState s, const ParsedPacket& p) {
  if (p.key.protocol == IPPROTO_TCP && (p.tcp_flags & (kTcpFin | kTcpRst))) return FlowState::kTcpClosing;
  return s;
}

// The flows worth telling the peers about: a TCP connection once established (a SYN
// flood announces nothing), a UDP flow from its second packet on (a lone DNS query
// neither).
inline bool Announceable(FlowState s) { return s == FlowState::kTcpEstablished || s == FlowState::kUdp; }

}  // namespace lb::dataplane
