#!/usr/bin/env bash
# Integration test: the control plane at cluster scale must not take the VIPs offline.
#
# The seed's topology (ecmp_topology.sh: a BIRD ToR with ECMP and BFD 100 ms x 3, two LB
# nodes each running lbd + lb-bird-gen + BIRD, DNS backends). Both nodes are loaded with
# SERVICES x BACKENDS (default 1000 x 100), then get CHANGES_PER_SECOND single-backend
# changes each (default 20) for CHURN_SECONDS (default 30), as every node's watcher sends
# them, while a client queries DNS through the VIP. Required: no BFD or BGP session flaps
# at the ToR (the "since" times of `show protocols` and `show bfd sessions` do not move,
# and the ToR keeps both next hops in every sample), and every DNS query is answered.
#
# Usage: scale_test.sh BUILD_DIR [SERVICES BACKENDS CHANGES_PER_SECOND CHURN_SECONDS]. Root.
# Removes everything it made, also on failure.
set -uo pipefail
export LB_BUILD=$(cd "$1" && pwd)
SERVICES=${2:-1000} BACKENDS=${3:-100} RATE=${4:-20} CHURN_SECONDS=${5:-30}
export TOPO="lbs$$" TOPO_DIR="/tmp/lb-scale-$$"
source "$(dirname "$0")/topology.sh"
source "$(dirname "$0")/ecmp_topology.sh"
TOPO_NAMESPACES=(tor client lb1 lb2 b1 b2)

finish() {
  if [ "$failed" -ne 0 ]; then
    tor_birdc show protocols 2>&1
    tor_birdc show bfd sessions 2>&1
    for f in lbd-lb1 lbd-lb2 gen-lb1 bird-lb1 bird-tor; do echo "--- $f"; tail -15 "$TOPO_DIR/$f.log" 2>/dev/null; done
  fi
  topo_down
  rm -rf "$TOPO_DIR"
}
trap finish EXIT

# The ToR's view of both sessions, with the time each last changed state: one line per
# session, "NAME STATE MILLISECONDS-OF-THE-DAY".
sessions() {
  { tor_birdc show protocols 2>/dev/null | awk '$1 == "lb1" || $1 == "lb2" {print $1, $4 "/" $6, $5}'
    tor_birdc show bfd sessions 2>/dev/null | awk '$1 ~ /^10\.90\.0\./ {print $1, $3, $4}'
  } | awk '{split($3, t, /[:.]/); print $1, $2, ((t[1] * 60 + t[2]) * 60 + t[3]) * 1000 + t[4]}' | sort
}
# Whether two `sessions` listings show the same sessions in the same states, changed last
# at the same moment: BIRD derives the BFD "since" from the session's age, so it may read a
# millisecond apart between two calls; a flap moves it by seconds (down after 300 ms, up
# again after a new three-way handshake).
same_sessions() {
  [ "$(echo "$1" | wc -l)" -eq 4 ] && [ "$(echo "$1" | cut -d' ' -f1,2)" = "$(echo "$2" | cut -d' ' -f1,2)" ] &&
    paste -d' ' <(echo "$1") <(echo "$2") | awk '{d = $3 - $6; if (d < 0) d = -d; if (d > 50) exit 1}'
}
established() { [ "$(tor_birdc show protocols 2>/dev/null | grep -cE '^lb[12] .*Established')" -eq 2 ]; }
# Both BFD sessions Up too: BFD comes up a moment after BGP (the session asks for it), and
# a listing taken meanwhile would show a session still in Init.
bfd_up() { [ "$(tor_birdc show bfd sessions 2>/dev/null | grep -cE '^10\.90\.0\.[23] .* Up ')" -eq 2 ]; }

ecmp_up || exit 1
for n in 1 2; do
  lbctl_on "$n" service add "$VIP_DNS:53/udp" --backend 10.92.1.2 --backend 10.92.2.2 >/dev/null ||
    { echo "cannot create the DNS service on lb$n"; exit 1; }
done
sessions_up() { established && bfd_up; }
check "both sessions are established, with BFD up" topo_wait 60 sessions_up
check "the ToR has the VIP CIDR with two next hops" topo_wait 30 has_next_hops 2
before=$(sessions)
echo "$before"

# --- load: SERVICES x BACKENDS on both nodes at once (one Apply each, as the watchers
#     send it after they start), then the DNS service again (the Apply replaced it)
sockets="$TOPO_DIR/lb1/lbd.sock,$TOPO_DIR/lb2/lbd.sock"
hops_low=0
monitor_hops() {  # samples the ToR's next hops every 100 ms until $TOPO_DIR/stop exists
  local low=0 samples=0
  until [ -e "$TOPO_DIR/stop" ]; do
    [ "$(next_hops)" -lt 2 ] && low=$((low + 1))
    samples=$((samples + 1))
    sleep 0.1
  done
  echo "$low of $samples" >"$TOPO_DIR/hops"
}
monitor_hops &
monitor=$!
"$LB_BUILD/bench/control_bench" --sockets="$sockets" --load --services="$SERVICES" --backends="$BACKENDS" \
  --vip_offset=256 --changes=0 --wait_visible=false >"$TOPO_DIR/load.log" 2>&1
check "both nodes accept $SERVICES x $BACKENDS ($(grep -o 'Apply.*ms' "$TOPO_DIR/load.log" | head -1))" test $? -eq 0
for n in 1 2; do
  lbctl_on "$n" service add "$VIP_DNS:53/udp" --backend 10.92.1.2 --backend 10.92.2.2 >/dev/null
done
check "DNS through the VIP after the load" test -n "$(nsx client dig +short +tries=2 +time=2 "@$VIP_DNS" whoami.test)"

# --- churn: RATE changes a second on both nodes, while the client queries DNS and floods
#     unused addresses of the announced CIDR (bounded: 5000 packets a second for the churn)
nsx client python3 "$TOPO_SRC/dns_probe.py" "$VIP_DNS" whoami.test 10 "$CHURN_SECONDS" >"$TOPO_DIR/probe.log" 2>&1 &
probe=$!
nsx client python3 - "$CHURN_SECONDS" >"$TOPO_DIR/flood.log" 2>&1 <<'PY' &
import socket, sys, time
end = time.monotonic() + float(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sent = 0
while time.monotonic() < end:
    for i in range(500):
        s.sendto(b"x" * 64, ("10.100.0.%d" % (200 + i % 50), 1000 + i))
    sent += 500
    time.sleep(0.1)
print("sent", sent)
PY
flood=$!
"$LB_BUILD/bench/control_bench" --sockets="$sockets" --services="$SERVICES" --backends="$BACKENDS" \
  --vip_offset=256 --rate="$RATE" --duration="$CHURN_SECONDS" --wait_visible=false >"$TOPO_DIR/churn.log" 2>&1
churn=$?
wait "$probe"
probe_rc=$?
wait "$flood"
touch "$TOPO_DIR/stop"
wait "$monitor"
cat "$TOPO_DIR/churn.log"
check "$((RATE * CHURN_SECONDS)) changes applied on each node, none failed" test "$churn" -eq 0
check "every DNS query through the VIP was answered ($(tail -1 "$TOPO_DIR/probe.log"))" test "$probe_rc" -eq 0
after=$(sessions)
echo "$after"
check "no BGP or BFD session flapped at the ToR" same_sessions "$before" "$after"
check "the ToR kept both next hops in every sample ($(cat "$TOPO_DIR/hops") samples with fewer)" \
  test "$(cut -d' ' -f1 "$TOPO_DIR/hops")" -eq 0
no_vip() { lbctl_on "$1" stats -o json | python3 -c 'import json,sys; print(next(int(c["value"]) for c in json.load(sys.stdin)["drops"] if c["name"] == "no_vip"))'; }
drops=$(( $(no_vip 1) + $(no_vip 2) ))
check "the flood to unused VIP addresses ($(cat "$TOPO_DIR/flood.log")) was dropped by lbd, not handed to the kernel (no_vip $drops)" \
  test "$drops" -gt 1000
for n in 1 2; do
  check "lb$n holds $((SERVICES + 1)) services" test "$(lbctl_on "$n" stats | sed -n 2p | awk '{print $2}')" = "$((SERVICES + 1)),"
done
check_summary
