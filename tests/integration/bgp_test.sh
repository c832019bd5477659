#!/usr/bin/env bash
# Integration test: BGP + ECMP with real BIRD processes.
#
#   client 10.91.0.2 -- tor: BIRD (AS 65000), BFD, kernel ECMP ("merge paths")
#                        |   bridge 10.90.0.1/24 --+-- lb1: lbd (lb0 = 10.90.0.2) + BIRD + lb-bird-gen
#                        |                         +-- lb2: lbd (lb0 = 10.90.0.3) + BIRD + lb-bird-gen
#                        +-- b1, b2: backends (dnsmasq; lb-dsr-node's tc BPF decapsulation)
#
# The LB nodes announce 10.100.0.0/24 (AS 65010) over BGP and BFD on lbd's exception
# interface, so a node whose lbd dies loses its sessions within the BFD detection time.
# Usage: bgp_test.sh BUILD_DIR. Root. Removes everything it made, also on failure.
set -uo pipefail
export LB_BUILD=$(cd "$1" && pwd)
export TOPO="lbg$$" TOPO_DIR="/tmp/lb-bgp-$$"
source "$(dirname "$0")/topology.sh"
source "$(dirname "$0")/ecmp_topology.sh"
TOPO_NAMESPACES=(tor client lb1 lb2 b1 b2)
SRC=$(cd "$(dirname "$0")/../.." && pwd)
BFD_DETECTION_MS=300  # 3 x 100 ms, as configured on both ends

finish() {
  if [ "$failed" -ne 0 ]; then
    echo "--- tor: kernel route, BIRD's routes and protocols"
    nsx tor ip route show 10.100.0.0/24
    nsx tor birdc -s "$TOPO_DIR/tor.ctl" show route all 2>&1 | head -40
    nsx tor birdc -s "$TOPO_DIR/tor.ctl" show protocols 2>&1
    for f in lbd-lb1 gen-lb1 bird-lb1 bird-tor; do echo "--- $f"; tail -15 "$TOPO_DIR/$f.log" 2>/dev/null; done
  fi
  topo_down
  rm -rf "$TOPO_DIR"
}
trap finish EXIT

now_ms() { date +%s%3N; }

# --- the golden BIRD configurations of the unit tests are valid for BIRD itself
for f in "$SRC"/tests/unit/testdata/bird/*.conf; do
  check "bird -p accepts $(basename "$f")" bird -p -c "$f"
done

# --- topology
ecmp_up || exit 1

ecmp_apply_dns

# --- both nodes announce: the ToR has two next hops
check "the ToR's kernel has the VIP CIDR with two next hops" topo_wait 40 has_next_hops 2
check "DNS through the ECMP'd VIP" test -n "$(nsx client dig +short +tries=2 +time=2 "@$VIP_DNS" whoami.test)"
same=1
for port in 1000 2000 3000 4000 5000; do
  a=$(lbctl_on 1 explain udp 10.91.0.2 "$port" "$VIP_DNS" 53 | awk '/^maglev:/ {print $2}')
  b=$(lbctl_on 2 explain udp 10.91.0.2 "$port" "$VIP_DNS" 53 | awk '/^maglev:/ {print $2}')
  [ -n "$a" ] && [ "$a" = "$b" ] || same=0
done
check "both LB nodes pick the same backend for the same flow (consistent Maglev)" test "$same" -eq 1
flow_hash() { lbctl_on "$1" health -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["flow_hash"])'; }
check "both LB nodes hash under the one secret ($(flow_hash 1), $(flow_hash 2))" \
  sh -c "test '$(flow_hash 1)' = '$(flow_hash 2)' && echo '$(flow_hash 1)' | grep -q '^keyed/'"

# --- lb1's lbd dies: its BFD session fails and the ToR withdraws its path
lbd1=$(pgrep -f -- "--file-prefix=$TOPO-lb1 ")
start=$(now_ms)
kill -KILL "$lbd1"
until [ "$(next_hops)" -eq 1 ] || [ $(($(now_ms) - start)) -gt 10000 ]; do sleep 0.02; done
took=$(($(now_ms) - start))
check "lb1's path withdrawn ${took} ms after its lbd died (BFD detection ${BFD_DETECTION_MS} ms, +700 ms allowed)" \
  test "$took" -le $((BFD_DETECTION_MS + 700))
check "traffic continues through lb2" test -n "$(nsx client dig +short +tries=2 +time=2 "@$VIP_DNS" whoami.test)"

# --- lb1's lbd is back: both next hops return
start_lbd_on 1 || { echo "lbd on lb1 did not restart"; }
lbctl_on 1 apply -f "$TOPO_DIR/services.yaml" >/dev/null
check "both next hops are back after lb1's lbd restarts" topo_wait 40 has_next_hops 2

# --- the operator drains lb2: lb-bird-gen withdraws its VIPs
lbctl_on 2 node drain >/dev/null
check "draining lb2 withdraws its path" topo_wait 15 has_next_hops 1
check "only lb1 remains" sh -c "ip netns exec $TOPO-tor ip route show 10.100.0.0/24 | grep -q 'via 10.90.0.2'"
check "lb-bird-gen logged why" grep -q "withdrawing the VIP prefixes: lbd unhealthy: drained by the operator" "$TOPO_DIR/gen-lb2.log"
lbctl_on 2 node undrain >/dev/null
check "undraining lb2 brings its path back" topo_wait 20 has_next_hops 2

# --- BGP as an operator sees it: lb-bird-gen's metrics (read from birdc at each scrape)
metric() { nsx "lb$1" curl -s http://127.0.0.1:7312/metrics | awk -v m="$2" '$1 == m {print $2}'; }
session='lb_bgp_session_up{peer="tor",neighbor="10.90.0.1"}'
check "lb-bird-gen exports lb1's BGP session as up" test "$(metric 1 "$session")" = 1
check "with one prefix announced to the ToR" test "$(metric 1 'lb_bgp_prefixes_announced{peer="tor",neighbor="10.90.0.1"}')" = 1
check "and its BFD session up" test "$(metric 1 'lb_bfd_session_up{neighbor="10.90.0.1",interface="lb0"}')" = 1
check "and its decision: announcing" test "$(metric 1 'lb_bird_gen_decision{decision="announcing"}')" = 1
changed_before=$(metric 1 'lb_bgp_session_state_change_timestamp_seconds{peer="tor",neighbor="10.90.0.1"}')
tor_birdc disable lb1 >/dev/null
session_down() { [ "$(metric 1 "$session")" = 0 ]; }
check "the ToR shuts lb1's session down: a scrape within 2 s says so" topo_wait 2 session_down
changed_after=$(metric 1 'lb_bgp_session_state_change_timestamp_seconds{peer="tor",neighbor="10.90.0.1"}')
check "and the time of the change moved ($changed_before, then $changed_after)" \
  sh -c "[ -n '$changed_after' ] && [ '$changed_after' -gt '${changed_before:-0}' ]"
status=$(nsx lb1 "$LB_BUILD/control/bird/lb-bird-gen" status --output="$TOPO_DIR/lb1/bird.conf" \
  --birdc_socket="$TOPO_DIR/lb1/bird.ctl")
echo "$status" | sed 's/^/   /'
check "lb-bird-gen status names the decision and the session's last error" \
  sh -c "echo \"\$0\" | grep -q '^decision: announced' && echo \"\$0\" | grep -q 'tor .*Administrative shutdown'" "$status"
tor_birdc enable lb1 >/dev/null
session_up() { [ "$(metric 1 "$session")" = 1 ]; }
check "the session comes back" topo_wait 20 session_up

# --- a drain file withdraws too (lb-bird-gen runs with --drain_file on no node above:
#     here a second generator for lb1 renders into a scratch file)
gen=("$LB_BUILD/control/bird/lb-bird-gen" --config="$TOPO_DIR/lb1/node.yaml"  # an array: timeout runs it
     --lbd_socket="$TOPO_DIR/lb1/lbd.sock" --birdc_socket="$TOPO_DIR/none.ctl")
check "--dry_run prints the announcing configuration for a healthy lbd" \
  sh -c "'$LB_BUILD/control/bird/lb-bird-gen' --config='$TOPO_DIR/lb1/node.yaml' --lbd_socket='$TOPO_DIR/lb1/lbd.sock' --dry_run | grep -q 'route 10.100.0.0/24 via \"lb0\"'"
touch "$TOPO_DIR/drain"
timeout 3 "${gen[@]}" --output="$TOPO_DIR/scratch.conf" --drain_file="$TOPO_DIR/drain" --interval_ms=100 \
  >"$TOPO_DIR/gen-drainfile.log" 2>&1
check "a drain file renders the VIPs withdrawn" grep -q "WITHDRAWN (drained ($TOPO_DIR/drain exists))" "$TOPO_DIR/scratch.conf"
# --- a configuration BIRD refuses is not installed: the last good one stays
echo "# last good" >"$TOPO_DIR/keep.conf"
timeout 2 "${gen[@]}" --output="$TOPO_DIR/keep.conf" --bird=false --interval_ms=100 >"$TOPO_DIR/gen-refused.log" 2>&1
check "a refused configuration leaves the last good file in place" test "$(cat "$TOPO_DIR/keep.conf")" = "# last good"
check "and the refusal is logged" grep -q "bird -p refused the rendered configuration" "$TOPO_DIR/gen-refused.log"

# --- bird.conf may hold MD5 passwords: only its owner reads it
check "bird.conf is mode 0600" test "$(stat -c %a "$TOPO_DIR/lb1/bird.conf")" = 600
# --- a node config of the wrong shape: exit 2 naming the field, no abort
printf 'router_id: 10.90.0.2\nlocal_as: 65010\nvip_prefixes: [10.100.0.0/24]\nbfd: true\npeers: [tor]\n' >"$TOPO_DIR/bad.yaml"
bad=$("$LB_BUILD/control/bird/lb-bird-gen" --config="$TOPO_DIR/bad.yaml" --dry_run 2>&1)
rc=$?
check "lb-bird-gen refuses a config of the wrong shape (exit $rc: $(echo "$bad" | tail -1 | cut -c1-120))" \
  sh -c "[ $rc -eq 2 ] && echo \"\$0\" | grep -q 'bfd: must be a mapping'" "$bad"

check_summary
