#!/usr/bin/env bash
# Integration test: established connections survive when backends and LB nodes change
# together (flow sync, docs/flow-sync.md). The seed's topology (ecmp_topology.sh): a BIRD
# ToR with ECMP and BFD, two LB nodes (lbd with --flow_sync_peers, lb-bird-gen, BIRD),
# five kernel backends of which the services start with three. The same services run in
# DSR on one VIP and in NAT on another: each node has an SNAT address of its own, which it
# announces, and announces the other's as a backup (ECMP_NAT=1).
#
# On each VIP, 64 TCP connections and 32 UDP flows (each a line or a query a second), and
# 16 idle TCP connections (a line when they open, and one at the end), are held through:
#   1. a scale-up from 3 to 5 backends on both nodes, then lb1's uplink cut: ECMP moves
#      lb1's flows to lb2, whose current Maglev table would send many to a new backend;
#   2. lb1 back with a fresh lbd (its tables empty): ECMP moves some flows to it; it asks
#      lb2 for every flow lb2 knows, since the idle ones are not announced again;
#   3. a backend drained on both nodes, then lb2's uplink cut: its flows move to lb1.
# Not one may break (reset, silence, or another backend answering).
# FLOW_SYNC=0 runs the same without flow sync, to show what it prevents.
#
# Usage: failover_test.sh BUILD_DIR. Root. Removes everything it made, also on failure.
set -uo pipefail
export LB_BUILD=$(cd "$1" && pwd)
export TOPO="lbf$$" TOPO_DIR="/tmp/lb-failover-$$"
source "$(dirname "$0")/topology.sh"
source "$(dirname "$0")/ecmp_topology.sh"
export ECMP_BACKENDS=5 ECMP_NAT=1
TOPO_NAMESPACES=(tor client lb1 lb2 b1 b2 b3 b4 b5)
TCP=64
UDP=32
IDLE=16
VIP_NAT=10.100.0.30
HOLDS=(hold hold-nat)  # their logs: the DSR VIP's flows, the NAT VIP's

finish() {
  if [ "$failed" -ne 0 ]; then
    for n in 1 2; do echo "--- lb$n"; lbctl_on "$n" stats 2>/dev/null | grep -v " 0$" | sed '/^Maglev/,$d'; done
    for f in lbd-lb1 lbd-lb2 "${HOLDS[@]}"; do echo "--- $f"; tail -15 "$TOPO_DIR/$f.log" 2>/dev/null; done
  fi
  topo_down
  rm -rf "$TOPO_DIR"
}
trap finish EXIT

ecmp_up || exit 1
# NAT's backends serve on their own addresses (ecmp_up's, on the DSR VIP).
for n in $(seq 1 "$ECMP_BACKENDS"); do
  topo_bg "nat-dns-b$n" "b$n" dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts \
    --bind-interfaces --listen-address="10.92.$n.2" --user=root \
    --pid-file="$TOPO_DIR/nat-dnsmasq-b$n.pid" --host-record="whoami.test,10.200.0.$n" --log-facility=-
  topo_bg "nat-tcp-b$n" "b$n" socat "TCP-LISTEN:80,bind=10.92.$n.2,fork,reuseaddr" "EXEC:sed -u s/.*/b$n/"
done
for n in $(seq 1 "$ECMP_BACKENDS"); do
  topo_wait 10 sh -c "ip netns exec '$TOPO-b$n' ss -Hltn 'src 10.92.$n.2 and sport = :80' | grep -q ." || exit 1
  topo_wait 10 nsx "b$n" dig +short +tries=1 +time=1 "@10.92.$n.2" whoami.test >/dev/null || exit 1
done
services() {  # services BACKEND_COUNT [DRAINED]: the services' YAML
  local n key mode
  echo "services:"
  for key in "{vip: $VIP_DNS, protocol: TCP, port: 80}/DSR_IPIP" "{vip: $VIP_DNS, protocol: UDP, port: 53}/DSR_IPIP" \
    "{vip: $VIP_NAT, protocol: TCP, port: 80}/NAT" "{vip: $VIP_NAT, protocol: UDP, port: 53}/NAT"; do
    mode=${key##*/}
    echo "  - key: ${key%/*}"
    echo "    mode: $mode"
    echo "    backends:"
    for n in $(seq 1 "$1"); do
      echo "      - {address: 10.92.$n.2$([ "${2:-0}" = "$n" ] && echo ", state: DRAINING")}"
    done
  done
}
apply_on() { services "$2" "${3:-0}" >"$TOPO_DIR/services-$1.yaml" && lbctl_on "$1" apply -f "$TOPO_DIR/services-$1.yaml" >/dev/null; }
for n in 1 2; do apply_on "$n" 3; done
check "the ToR has two next hops for the VIP CIDR" topo_wait 40 has_next_hops 2
# Both nodes get one list of the group's nodes; each skips its own address in it.
check "lb1 syncs with lb2 alone" grep -q "flow sync with 10.90.0.3 on UDP" "$TOPO_DIR/lbd-lb1.log"
check "lb2 syncs with lb1 alone" grep -q "flow sync with 10.90.0.2 on UDP" "$TOPO_DIR/lbd-lb2.log"
event_on() {  # event_on NODE NAME
  lbctl_on "$1" stats -o json | python3 -c 'import json,sys; print(sum(int(c["value"]) for c in json.load(sys.stdin)["events"] if c["name"] == sys.argv[1]))' "$2"
}
uplink() { nsx tor ip link set "tor-lb$1" "$2"; }  # uplink N up|down

snat_via() { nsx tor ip route show "10.93.0.$1" 2>/dev/null | grep -q "via 10.90.0.$(($2 + 1))"; }  # snat_via N NODE
snat_home() { snat_via 1 1 && snat_via 2 2; }
check "the ToR routes each node's SNAT address to the node" topo_wait 20 snat_home

# --- the held flows, spread over both nodes by the ToR's ECMP
topo_bg hold client python3 "$TOPO_SRC/hold_flows.py" "$VIP_DNS" "$TCP" "$UDP" "$TOPO_DIR/stop" "$IDLE"
topo_bg hold-nat client python3 "$TOPO_SRC/hold_flows.py" "$VIP_NAT" "$TCP" "$UDP" "$TOPO_DIR/stop" "$IDLE"
for h in "${HOLDS[@]}"; do
  check "$TCP TCP connections, $IDLE idle ones and $UDP UDP flows answered ($h)" topo_wait 30 grep -q ready "$TOPO_DIR/$h.log"
done
through() { echo "lb1 $(event_on 1 flow_hits), lb2 $(event_on 2 flow_hits)"; }
sleep 3  # a few rounds: established, announced
echo "   flow-table hits so far: $(through)"
check "both nodes carry some of them, and announced them" \
  sh -c "[ $(event_on 1 flows_announced) -gt 0 ] && [ $(event_on 2 flows_announced) -gt 0 ]"

phase() { echo "   $(date +%T.%N | cut -c1-10) $*"; }
phase "holding since $(date -r "$TOPO_DIR/hold.log" +%T)"
# --- 1. scale up to five backends on both nodes, then cut lb1's uplink
for n in 1 2; do apply_on "$n" 5; done
sleep 4
phase "lb1's uplink down"
uplink 1 down
check "lb1's path is withdrawn (BFD)" topo_wait 5 has_next_hops 1
check "lb1's SNAT address is routed to lb2 (its backup announcement)" topo_wait 5 snat_via 1 2
sleep 6
check "lb2 carries lb1's flows on their backends (flows_rescued $(event_on 2 flows_rescued))" \
  test "$(event_on 2 flows_rescued)" -gt 0

# --- 2. lb1 comes back with a fresh lbd (its tables empty)
phase "lb1's lbd stopped"
kill -TERM "$(pgrep -f -- "--file-prefix=$TOPO-lb1 ")"
topo_wait 10 sh -c "! pgrep -f -- '--file-prefix=$TOPO-lb1 ' >/dev/null"
uplink 1 up
start_lbd_on 1 || echo "lbd on lb1 did not restart"
apply_on 1 5
check "both next hops are back" topo_wait 40 has_next_hops 2
sleep 6
check "the fresh lb1 carries flows it learned from lb2 (flows_rescued $(event_on 1 flows_rescued))" \
  test "$(event_on 1 flows_rescued)" -gt 0
sync_field() {  # sync_field NODE FIELD: a field of the node's flow-sync statistics
  lbctl_on "$1" stats -o json | python3 -c 'import json,sys; print(json.load(sys.stdin).get("flow_sync", {}).get(sys.argv[1], 0))' "$2"
}
check "lb2 sent the fresh lb1 every flow it knows, idle ones too (dumps: $(sync_field 2 dumps_sent), journal: $(sync_field 2 journal_flows))" \
  test "$(sync_field 2 dumps_sent)" -ge 1

# --- 3. drain a backend on both nodes, then cut lb2's uplink
for n in 1 2; do apply_on "$n" 5 1; done
sleep 4
phase "lb2's uplink down"
uplink 2 down
check "lb2's path is withdrawn" topo_wait 5 has_next_hops 1
sleep 6

touch "$TOPO_DIR/stop"
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1]).get('$1'))" "$result"; }
for h in "${HOLDS[@]}"; do
  topo_wait 20 grep -q '"broken"' "$TOPO_DIR/$h.log"
  result=$(grep '"broken"' "$TOPO_DIR/$h.log")
  echo "   $h: $result"
  check "$h: no TCP connection or UDP flow broke or changed backend (broken: $(field broken), $(field why))" \
    test "$(field broken)" = 0
  check "$h: they were spread over the three first backends ($(field backends))" \
    python3 -c "import json,sys; sys.exit(len(json.loads(sys.argv[1])['backends']) < 3)" "$result"
done
for n in 1 2; do
  echo "   lb$n: announced $(event_on "$n" flows_announced), learned $(event_on "$n" flows_learned), rescued $(event_on "$n" flows_rescued), midstream $(event_on "$n" flows_midstream)"
done
echo "   lb2's flow sync: flows sent $(sync_field 2 flows_sent), bytes sent $(sync_field 2 bytes_sent)"
check "no flow-sync datagram was rejected" test "$(sync_field 2 datagrams_rejected)" = 0
peer_view=$(lbctl_on 2 stats -o json | python3 -c '
import json, sys, time
p = next(p for p in json.load(sys.stdin)["flow_sync"]["peer_stats"] if p["address"] == "10.90.0.2")
ago = time.time() - int(p["last_heard_unix_ms"]) / 1000
ok = int(p["datagrams"]) > 0 and int(p["flows_learned"]) > 0 and 0 <= ago < 30 and int(p["datagrams_rejected"]) == 0
print(("ok" if ok else "WRONG"), "datagrams", p["datagrams"], "flows learned", p["flows_learned"],
      "heard %.1f s ago, delay %.1f ms" % (ago, int(p["delay_us"]) / 1000))')
check "lb2 accounts for its peer lb1: $peer_view" sh -c "echo '$peer_view' | grep -q '^ok'"

# --- docker/monitoring names only what lbd and lb-bird-gen export (NAT, flow sync, BGP,
#     BFD and the ports are all on here)
nsx lb2 curl -s http://127.0.0.1:7310/metrics >"$TOPO_DIR/lbd.metrics"
nsx lb2 curl -s http://127.0.0.1:7312/metrics >"$TOPO_DIR/bird-gen.metrics"
check "the alert rules and the dashboard name only exported metrics, and promtool accepts the rules" \
  /usr/bin/python3 "$TOPO_SRC/monitoring_check.py" "$TOPO_SRC/../.." "$TOPO_DIR/lbd.metrics" "$TOPO_DIR/bird-gen.metrics"

check_summary
