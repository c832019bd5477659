#!/usr/bin/env bash
# Integration test: BGP + ECMP with real BIRD processes.
#
#   client 10.91.0.2 -- tor: BIRD (AS 65000), BFD, kernel ECMP ("merge paths")
#                        |   bridge 10.90.0.1/24 --+-- lb1: lbd (lb0 = 10.90.0.2) + BIRD + lb-bird-gen
#                        |                         +-- lb2: lbd (lb0 = 10.90.0.3) + BIRD + lb-bird-gen
#                        +-- b1, b2: backends (dnsmasq behind user-space decapsulation)
#
# The LB nodes announce 10.100.0.0/24 (AS 65010) over BGP and BFD on lbd's exception
# interface, so a node whose lbd dies loses its sessions within the BFD detection time.
# Usage: bgp_test.sh BUILD_DIR. Root. Removes everything it made, also on failure.
set -uo pipefail
export LB_BUILD=$(cd "$1" && pwd)
export TOPO="lbg$$" TOPO_DIR="/tmp/lb-bgp-$$"
source "$(dirname "$0")/topology.sh"
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

lbctl_on() { local n=$1; shift; "$LB_BUILD/tools/lbctl" --socket "$TOPO_DIR/lb$n/lbd.sock" "$@"; }
next_hops() { nsx tor ip route show 10.100.0.0/24 2>/dev/null | grep -o 'via 10\.90\.0\.[0-9]*' | sort -u | wc -l; }
has_next_hops() { [ "$(next_hops)" -eq "$1" ]; }  # evaluated on every try of topo_wait
now_ms() { date +%s%3N; }

# --- the golden BIRD configurations of the unit tests are valid for BIRD itself
for f in "$SRC"/tests/unit/testdata/bird/*.conf; do
  check "bird -p accepts $(basename "$f")" bird -p -c "$f"
done

# --- topology
mkdir -p "$TOPO_DIR"
: >"$TOPO_DIR/pids"
for ns in "${TOPO_NAMESPACES[@]}"; do ip netns add "$TOPO-$ns"; nsx "$ns" ip link set lo up; done
nsx tor ip link add br-lb type bridge
nsx tor ip link set br-lb up
nsx tor ip addr add 10.90.0.1/24 dev br-lb
for n in 1 2; do
  topo_link tor "tor-lb$n" "lb$n" wire
  nsx tor ip link set "tor-lb$n" master br-lb
  topo_link tor "tor-b$n" "b$n" eth0
  nsx tor ip addr add "10.92.$n.1/24" dev "tor-b$n"
  nsx "b$n" ip addr add "10.92.$n.2/24" dev eth0
  nsx "b$n" ip route add default via "10.92.$n.1"
  nsx "b$n" ip addr add "$VIP_DNS/32" dev lo
  nsx "b$n" ip addr add "$VIP_GUE/32" dev lo
done
topo_link tor tor-cl client eth0
nsx tor ip addr add 10.91.0.1/24 dev tor-cl
nsx client ip addr add 10.91.0.2/24 dev eth0
nsx client ip route add default via 10.91.0.1
nsx tor sysctl -qw net.ipv4.ip_forward=1
nsx tor sysctl -qw net.ipv4.fib_multipath_hash_policy=1

cat >"$TOPO_DIR/tor.conf" <<BIRD
router id 10.90.0.1;
log stderr all;
protocol device { scan time 2; }
protocol bfd { interface "br-lb" { min rx interval 100 ms; min tx interval 100 ms; multiplier 3; }; }
protocol kernel { ipv4 { export all; import none; }; merge paths yes; }
template bgp lbnode {
  local 10.90.0.1 as 65000;
  direct;
  bfd on;
  connect retry time 2;
  error wait time 2, 16;
  ipv4 { import all; export none; };
}
protocol bgp lb1 from lbnode { neighbor 10.90.0.2 as 65010; }
protocol bgp lb2 from lbnode { neighbor 10.90.0.3 as 65010; }
BIRD
topo_bg bird-tor tor bird -f -c "$TOPO_DIR/tor.conf" -s "$TOPO_DIR/tor.ctl" -P "$TOPO_DIR/tor.pid"

start_lbd_on() {  # start_lbd_on N: lbd on node N, its lb0 address, until healthy
  local n=$1
  topo_bg "lbd-lb$n" "lb$n" "$LB_BUILD/control/lbd/lbd" -l 0-1 --no-huge -m 256 --no-shconf --no-pci \
    --file-prefix="$TOPO-lb$n" --log-level=lib.eal:warning --vdev=net_af_packet0,iface=wire -- \
    --port=net_af_packet0 --gateway=10.90.0.1 --encap_source_v4="10.90.0.$((n + 1))/32" \
    --idle_polls=200 --idle_sleep_us=500 --api_socket="$TOPO_DIR/lb$n/lbd.sock"
  topo_wait 30 nsx "lb$n" ip link show lb0 || return 1
  nsx "lb$n" ip addr add "10.90.0.$((n + 1))/24" dev lb0
  nsx "lb$n" ip link set lb0 up
  nsx "lb$n" ip route add default via 10.90.0.1 dev lb0 2>/dev/null
  topo_wait 30 lbctl_on "$n" health
}

for n in 1 2; do
  mkdir -p "$TOPO_DIR/lb$n"
  start_lbd_on "$n" || { echo "lbd on lb$n did not start"; cat "$TOPO_DIR/lbd-lb$n.log"; exit 1; }
  cat >"$TOPO_DIR/lb$n/node.yaml" <<YAML
router_id: 10.90.0.$((n + 1))
local_as: 65010
interface: lb0
vip_prefixes: [10.100.0.0/24]
bfd: {min_rx_ms: 100, min_tx_ms: 100, multiplier: 3}
peers: [{name: tor, address: 10.90.0.1, as: 65000}]
YAML
  topo_bg "gen-lb$n" "lb$n" "$LB_BUILD/control/bird/lb-bird-gen" --config="$TOPO_DIR/lb$n/node.yaml" \
    --output="$TOPO_DIR/lb$n/bird.conf" --lbd_socket="$TOPO_DIR/lb$n/lbd.sock" \
    --birdc_socket="$TOPO_DIR/lb$n/bird.ctl" --interval_ms=300 --up_after=3 --down_after=2
  topo_wait 10 test -s "$TOPO_DIR/lb$n/bird.conf" || { cat "$TOPO_DIR/gen-lb$n.log"; exit 1; }
  topo_bg "bird-lb$n" "lb$n" bird -f -c "$TOPO_DIR/lb$n/bird.conf" -s "$TOPO_DIR/lb$n/bird.ctl" \
    -P "$TOPO_DIR/lb$n/bird.pid"
done
for n in 1 2; do start_backend "$n" || exit 1; done

cat >"$TOPO_DIR/services.yaml" <<YAML
services:
  - key: {vip: $VIP_DNS, protocol: UDP, port: 53}
    backends: [{address: 10.92.1.2}, {address: 10.92.2.2}]
YAML
for n in 1 2; do lbctl_on "$n" apply -f "$TOPO_DIR/services.yaml" >/dev/null; done

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

check_summary
