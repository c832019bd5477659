#!/usr/bin/env bash
# Integration test: the LB node's control plane under floods that only look like it.
#
#   client 10.91.0.2 (the attacker, off the link) -- tor: BIRD, BFD (GTSM), ECMP
#                                                     |  bridge 10.90.0.1/24 --+-- lb1, lb2: lbd + lb-bird-gen + BIRD
#                                                     |                        +-- mallory 10.90.0.66 (on the link)
#
# lbd's budgets toward the kernel are scaled down to 1,000 packets a second per class (one
# worker), so that ten times that stays well within what the machine forwards. Each class
# is flooded in turn at 10,000 a second for 8 s, with spoofed sources:
#   - routing: TCP 179, then UDP 3784, "from the ToR" (10.90.0.1), sent from off the link;
#   - flow sync: UDP 7300 "from lb2" (10.90.0.3), sent from off the link;
#   - other: TCP 179 from the attacker's own address;
#   - neighbour: ARP requests from a host on the link.
# Meanwhile the ToR's BGP session and BFD session with lb1 must stay up, and lb1's route
# must be in the ToR's table at every sample. Last, flow-sync datagrams from lb2 to lb1 are
# captured on their way and replayed from off the link: lb1 refuses them as replays. The ToR forwards spoofed sources as a switch
# ASIC would: no reverse-path filter (set explicitly here, with accept_local for the ToR's
# own address).
# Usage: control_flood_test.sh BUILD_DIR. Root. Removes everything it made, also on failure.
set -uo pipefail
export LB_BUILD=$(cd "$1" && pwd)
export TOPO="lbf$$" TOPO_DIR="/tmp/lb-flood-$$"
source "$(dirname "$0")/topology.sh"
source "$(dirname "$0")/ecmp_topology.sh"
TOPO_NAMESPACES=(tor client lb1 lb2 b1 b2 mallory)
SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUDGET=1000
RATE=$((10 * BUDGET))
SECONDS_PER_FLOOD=8
export LBD_EXTRA_FLAGS="--exception_pps=$BUDGET --exception_neighbor_pps=$BUDGET --exception_routing_pps=$BUDGET \
--exception_sync_pps=$BUDGET"

finish() {
  if [ "$failed" -ne 0 ]; then
    nsx tor birdc -s "$TOPO_DIR/tor.ctl" show protocols 2>&1
    nsx tor birdc -s "$TOPO_DIR/tor.ctl" show bfd sessions 2>&1
    for f in lbd-lb1 gen-lb1 bird-lb1 bird-tor; do echo "--- $f"; tail -15 "$TOPO_DIR/$f.log" 2>/dev/null; done
    echo "--- lb1's non-zero counters"
    lbctl_on 1 stats 2>/dev/null | grep -v " 0$" | sed '/^Maglev/,$d'
  fi
  topo_down
  rm -rf "$TOPO_DIR"
}
trap finish EXIT

drop() {  # drop N REASON: lb N's drop counter
  lbctl_on "$1" stats -o json | python3 -c 'import json,sys; print(sum(int(c["value"]) for c in json.load(sys.stdin)["drops"] if c["name"] == sys.argv[1]))' "$2"
}
drops() {  # drops N: lb N's non-zero drop counters, one line
  lbctl_on "$1" stats -o json | python3 -c '
import json, sys
print(", ".join("%s %s" % (c["name"], c["value"]) for c in json.load(sys.stdin)["drops"] if int(c["value"])))'
}
sync_field() { lbctl_on "$1" stats -o json | python3 -c 'import json,sys; print(json.load(sys.stdin).get("flow_sync", {}).get(sys.argv[1], 0))' "$2"; }
bgp_up() { tor_birdc show protocols lb1 | grep -q Established; }
bfd_up() { tor_birdc show bfd sessions | grep "10.90.0.2" | grep -q Up; }
lb1_routed() { nsx tor ip route show 10.100.0.0/24 | grep -q "via 10.90.0.2"; }

# flood_while_watching NAME FLOOD...: runs FLOOD in the background and samples the ToR's
# view of lb1 every 250 ms until it ends; passes when every sample had it all up.
flood_while_watching() {
  local name=$1 bad=0 samples=0
  shift
  "$@" >"$TOPO_DIR/flood-$name.out" 2>&1 &
  local flood=$!
  while kill -0 "$flood" 2>/dev/null; do
    samples=$((samples + 1))
    { bgp_up && bfd_up && lb1_routed; } || { bad=$((bad + 1)); echo "  $name: lb1 down at sample $samples ($(date +%T.%3N))"; }
    sleep 0.25
  done
  wait "$flood"
  echo "$name: $(cat "$TOPO_DIR/flood-$name.out") packets sent; lb1 down in $bad of $samples samples;" \
    "lb1's drops so far: $(drops 1)"
  check "BGP, BFD and lb1's route stay up on the ToR during the $name flood ($bad of $samples samples down)" \
    test "$bad" -eq 0 -a "$samples" -ge $((SECONDS_PER_FLOOD * 3))
}

# --- topology: the ECMP pair, with the attacker's host on the LB link
ecmp_up || exit 1
ecmp_apply_dns
topo_link tor tor-mal mallory eth0
nsx tor ip link set tor-mal master br-lb
nsx mallory ip addr add 10.90.0.66/24 dev eth0
nsx tor sysctl -qw net.ipv4.conf.all.rp_filter=0
nsx tor sysctl -qw net.ipv4.conf.tor-cl.rp_filter=0
nsx tor sysctl -qw net.ipv4.conf.tor-cl.accept_local=1
check "the ToR has both next hops" topo_wait 40 has_next_hops 2
check "and BFD is up with lb1" topo_wait 10 bfd_up
check "lb-bird-gen's BIRD speaks GTSM" grep -q "ttl security on" "$TOPO_DIR/lb1/bird.conf"

flood() { nsx "$1" python3 "$SRC/tests/integration/flood.py" "${@:2}" --pps "$RATE" --seconds "$SECONDS_PER_FLOOD"; }

# --- routing: BGP and BFD claiming the ToR's address, routed here (TTL below 255)
flood_while_watching bgp flood client ip --src 10.90.0.1 --dst 10.90.0.2 --proto tcp --sport 40000 --dport 179 --ttl 255
flood_while_watching bfd flood client ip --src 10.90.0.1 --dst 10.90.0.2 --proto udp --sport 49152 --dport 3784 --ttl 255
off_link=$(drop 1 off_link_control)
check "lb1 dropped every routed look-alike as off_link_control ($off_link)" \
  test "$off_link" -ge $((2 * RATE * SECONDS_PER_FLOOD * 99 / 100))
check "and spent none of the routing budget on them" test "$(drop 1 exception_routing_rate_limited)" -eq 0

# --- flow sync: datagrams claiming lb2's address, from off the link
rejected_before=$(sync_field 1 datagrams_rejected)
flood_while_watching sync flood client ip --src 10.90.0.3 --dst 10.90.0.2 --proto udp --sport 7300 --dport 7300
sync_limited=$(drop 1 exception_sync_rate_limited)
rejected=$(($(sync_field 1 datagrams_rejected) - rejected_before))
check "they spent the flow-sync budget ($sync_limited over it)" test "$sync_limited" -ge $((RATE * SECONDS_PER_FLOOD / 2))
check "and the sync thread refused what reached it ($rejected datagrams)" test "$rejected" -ge "$BUDGET"
check "and spent none of the routing budget" test "$(drop 1 exception_routing_rate_limited)" -eq 0

# --- other: BGP from a stranger (its own address)
flood_while_watching other flood client ip --src 10.91.0.2 --dst 10.90.0.2 --proto tcp --dport 179
other_limited=$(drop 1 exception_rate_limited)
check "a stranger's BGP spent the other budget ($other_limited over it)" \
  test "$other_limited" -ge $((RATE * SECONDS_PER_FLOOD / 2))

# --- neighbour: ARP from a host on the link
flood_while_watching neighbour flood mallory arp --iface eth0 --src 10.90.0.66 --dst 10.90.0.2
neighbor_limited=$(drop 1 exception_neighbor_rate_limited)
check "the ARP flood spent the neighbour budget ($neighbor_limited over it)" \
  test "$neighbor_limited" -ge $((RATE * SECONDS_PER_FLOOD / 2))
check "and none of the routing budget" test "$(drop 1 exception_routing_rate_limited)" -eq 0

# --- flow sync replayed: datagrams lb2 sent lb1, captured on lb1's link as they passed
# and sent again ten times each from off the link (before: 270 of 280 were taken). Within
# the clock window they are refused as replays, after it as stale.
nsx lb1 python3 "$SRC/tests/integration/flood.py" capture --iface lb0 --src 10.90.0.3 --dport 7300 --seconds 3 \
  --file "$TOPO_DIR/captured" >"$TOPO_DIR/captured.count" &
capturing=$!
sleep 0.5
# Two queries a flow: a flow is announced from its second packet on.
query() { nsx client dig +short +tries=1 +time=1 -b "10.91.0.2#$1" "@$VIP_DNS" whoami.test >/dev/null; }
for i in $(seq 1 40); do (query $((21000 + i)); query $((21000 + i))) & done
wait "$capturing"
captured=$(cat "$TOPO_DIR/captured.count")
refused() { echo $(($(sync_field 1 datagrams_replayed) + $(sync_field 1 datagrams_stale))); }
refused_before=$(refused)
received_before=$(sync_field 1 flows_received)
sent=$(flood client replay --file "$TOPO_DIR/captured" --src 10.90.0.3 --dst 10.90.0.2 --dport 7300 --times 10)
sleep 1
refused_now=$(($(refused) - refused_before))
echo "replay: $captured datagrams captured, $sent sent again; lb1 refused $refused_now" \
  "($(sync_field 1 datagrams_replayed) replayed, $(sync_field 1 datagrams_stale) stale in all)," \
  "took $(($(sync_field 1 flows_received) - received_before)) flows meanwhile (lb2's own announcements)"
check "lb1 refused every replayed flow-sync datagram it got ($refused_now of $sent; a few may be lost on the way)" \
  test "$captured" -gt 0 -a "$refused_now" -ge $((sent * 95 / 100)) -a "$refused_now" -le "$sent"

check "DNS through the VIP still answers" test -n "$(nsx client dig +short +tries=2 +time=2 "@$VIP_DNS" whoami.test)"
check_summary
