#!/usr/bin/env bash
# Integration test of NAT mode: lbd on an af_packet port in network namespaces, backends
# that run plain servers on their own addresses (no decapsulation, no VIP): dnsmasq on
# port 5353 behind a VIP's port 53 (port translation), and a TCP server taking 10,000
# concurrent connections through the LB, none lost or misrouted. The ToR routes the SNAT
# range 10.101.0.0/24 to the LB node, as it does the VIPs. See topology.sh for the picture.
#
# Usage: nat_test.sh BUILD_DIR. Root. Cleans up every namespace and process, also on failure.
set -uo pipefail
export LB_BUILD=$(cd "$1" && pwd)
export TOPO="lbn$$" TOPO_DIR="/tmp/lb-nat-$$"
source "$(dirname "$0")/topology.sh"
VIP=10.100.0.20
SNAT=10.101.0.1

finish() {
  local rc=$?
  if [ "$failed" -ne 0 ] || [ "$rc" -ne 0 ]; then
    echo "--- lbd log"; tail -30 "$TOPO_DIR/lbd.log" 2>/dev/null
    lbctl stats 2>/dev/null | head -60
  fi
  topo_down
  rm -rf "$TOPO_DIR"
}
trap finish EXIT

topo_up || exit 1
nsx tor ip route add 10.101.0.0/24 via 10.90.0.2
# The 10,000-connection burst arrives at workers that share a CPU with the clients and
# the backends (and sleep in idle back-off): a deeper RX ring than the default 512
# frames, or the kernel drops frames (rx_ring_full) and the connections retransmit.
start_lbd --snat_addresses=$SNAT --snat_ports=1024-65535 --af_packet_frames=4096 || exit 1
for n in 1 2 3; do
  topo_bg "dns-b$n" "b$n" dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts \
    --bind-interfaces --listen-address="10.92.$n.2" --port=5353 --user=root \
    --pid-file="$TOPO_DIR/dnsmasq-b$n.pid" --host-record="whoami.test,10.200.0.$n" --log-facility=-
  topo_bg "tcp-b$n" "b$n" sh -c "ulimit -n 20000; exec python3 '$TOPO_SRC/tcp_fleet.py' serve b$n 10.92.$n.2 8080"
done
for n in 1 2 3; do
  topo_wait 10 grep -q ready "$TOPO_DIR/tcp-b$n.log" || { cat "$TOPO_DIR/tcp-b$n.log"; exit 1; }
  topo_wait 10 nsx "b$n" dig +short +tries=1 +time=1 -p 5353 "@10.92.$n.2" whoami.test || exit 1
done

lbctl service add "$VIP:53/udp" --mode nat >/dev/null
lbctl service add "$VIP:53/tcp" --mode nat >/dev/null
lbctl service add "$VIP:80/tcp" --mode nat >/dev/null
for n in 1 2 3; do
  lbctl backend add "$VIP:53/udp" "10.92.$n.2" --port 5353 >/dev/null
  lbctl backend add "$VIP:53/tcp" "10.92.$n.2" --port 5353 >/dev/null
  lbctl backend add "$VIP:80/tcp" "10.92.$n.2" --port 8080 >/dev/null
done
check "NAT services listed with mode nat" test "$(lbctl service list | grep -c ' nat ')" -eq 3

# --- DNS: port 53 on the VIP -> 5353 on plain backends, answered through the LB
dig_vip() { nsx client dig +short +tries=1 +time=2 "@$VIP" whoami.test; }
answer_ok() { echo "$1" | grep -Eq '^10\.200\.0\.[123]$'; }
check "DNS through NAT answers" answer_ok "$(dig_vip)"
spread=$(for _ in $(seq 30); do dig_vip; done | sort -u | tr '\n' ' ')
check "DNS queries spread over the three backends (got: $spread)" test "$spread" = "10.200.0.1 10.200.0.2 10.200.0.3 "
check "DNS over TCP through NAT" answer_ok "$(nsx client dig +short +tcp +tries=1 +time=2 "@$VIP" whoami.test)"

# --- one TCP connection: the backend sees the SNAT address, the client the VIP
one=$(printf 'hello\n' | nsx client timeout 5 socat -t 2 - "TCP:$VIP:80")
check "TCP through NAT: the backend saw the SNAT address (answer: $one)" sh -c "echo '$one' | grep -Eq '^b[123] hello $SNAT\$'"

# --- a 200 kB upload, echoed back: GSO frames from the client's kernel and from the
# backend's (default offloads) both pass through lbd, cut into segments
upload=$(nsx client timeout 40 python3 "$TOPO_SRC/upload.py" "$VIP" 80 200000)
echo "   $upload"
check "a 200 kB upload through NAT is echoed back, line by line, within 3 s" upload_ok "$upload" 3
check "lbd cut the kernel's GSO frames into segments ($(lb_event gso_frames) frames, $(lb_event gso_segments) segments)" \
  test "$(lb_event gso_frames)" -gt 0

# --- 10,000 concurrent connections, each asked twice while all are open
result=$(nsx client sh -c "ulimit -n 20000; exec python3 '$TOPO_SRC/tcp_fleet.py' connect $VIP 80 10000" | tail -1)
echo "   $result"
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1]).get('$1'))" "$result"; }
check "10000 concurrent connections all answered twice" test "$(field answered_twice)" = 10000
check "no connection changed backend" test "$(field moved)" = 0
check "no connection failed (failures: $(field failures))" test "$(field failures)" = "{}"
check "backends saw only the SNAT address ($(field peers_seen_by_backends))" test "$(field peers_seen_by_backends)" = "{'$SNAT': 10000}"
check "the connections spread over the three backends ($(field backends))" \
  python3 -c "import json,sys; b=json.loads(sys.argv[1])['backends']; sys.exit(not (len(b) == 3 and min(b.values()) > 2500))" "$result"

# --- the pool: ports in use, per address
used=$(lbctl stats -o json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(int(a.get("ports_in_use", 0)) for a in d.get("snat", [])))')
check "SNAT port use reported ($used ports held by closing sessions)" test "$used" -ge 10000
sessions=$(lbctl stats -o json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(int(c["value"]) for c in d["events"] if c["name"]=="nat_sessions"))')
check "one NAT session per connection or query ($sessions)" test "$sessions" -ge 10000
redirected=$(lbctl stats -o json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(int(c["value"]) for c in d["events"] if c["name"]=="nat_redirected"))')
echo "   replies handed to the owning worker: $redirected"
# rx_ring_full is the kernel's AF_PACKET ring (the NIC's, on a real port), not lbd's
# decision: it can fill when the 10,000-connection burst meets workers asleep in idle
# back-off on a CPU shared with the clients and the backends (seen once in CI, 3087 frames
# at 4096 frames a ring). The connections then retransmit, and every one completed above.
drops=$(lbctl stats -o json | python3 -c 'import json,sys; d=json.load(sys.stdin); print({c["name"]: int(c["value"]) for c in d["drops"] if int(c["value"]) and c["name"] != "rx_ring_full"})')
ring=$(lbctl stats -o json | python3 -c 'import json,sys; print(sum(int(c["value"]) for c in json.load(sys.stdin)["drops"] if c["name"] == "rx_ring_full"))')
check "no packet dropped by the dataplane (drops: $drops; frames the kernel's ring dropped: $ring)" test "$drops" = "{}"

check_summary
