#!/usr/bin/env bash
# Integration test: lbd on net_af_packet in network namespaces, real kernel TCP and UDP on
# both ends (dnsmasq, a Python TCP server), DSR over IPIP and GUE, decapsulated on the
# backends by the kernel (lb-dsr-node attach: tc BPF). See topology.sh for the picture.
#
# Usage: dsr_test.sh BUILD_DIR. Root. Cleans up every namespace and process, also on failure.
set -uo pipefail
export LB_BUILD=$(cd "$1" && pwd)
export TOPO="lbi$$" TOPO_DIR="/tmp/lb-integration-$$"
source "$(dirname "$0")/topology.sh"

finish() {
  local rc=$?
  if [ "$failed" -ne 0 ] || [ "$rc" -ne 0 ]; then
    echo "--- lbd log"; cat "$TOPO_DIR/lbd.log" 2>/dev/null | tail -30
  fi
  topo_down
  rm -rf "$TOPO_DIR"
}
trap finish EXIT

dig_vip() { nsx client dig +short +tries=1 +time=2 "@$1" whoami.test; }
answers_from() {  # answers_from VIP COUNT: distinct backends over COUNT queries
  for _ in $(seq "$2"); do dig_vip "$1"; done | sort -u | tr '\n' ' '
}

# A throwaway CA, a server certificate for lbd's TLS API and a client certificate.
make_certs() {
  local d=$TOPO_DIR/tls
  mkdir -p "$d"
  openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=lb-test-ca -keyout "$d/ca.key" -out "$d/ca.pem"
  for who in server client; do
    openssl req -newkey rsa:2048 -nodes -subj "/CN=$who" -keyout "$d/$who.key" -out "$d/$who.csr"
    printf 'subjectAltName=IP:127.0.0.1\n' >"$d/$who.ext"
    openssl x509 -req -days 1 -in "$d/$who.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
      -extfile "$d/$who.ext" -out "$d/$who.pem"
  done
} >/dev/null 2>&1

topo_up || exit 1
make_certs || { echo "openssl failed"; exit 1; }
tls=$TOPO_DIR/tls
(umask 077 && head -c 32 /dev/urandom | base64 >"$TOPO_DIR/flow-hash.secret")
start_lbd --api_address=127.0.0.1:50051 --tls_cert="$tls/server.pem" --tls_key="$tls/server.key" \
  --tls_client_ca="$tls/ca.pem" --flow_hash_secret_file="$TOPO_DIR/flow-hash.secret" || exit 1
for n in 1 2 3 4; do start_backend "$n" || exit 1; done

# --- a bad flag: refused before anything starts, and EAL's runtime directory is not left behind
bad_rc=0
"$LB_BUILD/control/lbd/lbd" --no-huge -m 256 --no-shconf --no-pci --no-telemetry --file-prefix="$TOPO-bad" \
  --log-level=lib.eal:error -- --port=net_null0 --control_peers=none --flow_capacity=0 >/dev/null 2>&1 || bad_rc=$?
check "lbd refuses --flow_capacity=0 with exit status 2 (got $bad_rc)" test "$bad_rc" -eq 2
check "and leaves no EAL runtime directory" test ! -e "/var/run/dpdk/$TOPO-bad"
printf 'short\n' >"$TOPO_DIR/short.secret"
bad_rc=0
"$LB_BUILD/control/lbd/lbd" --no-huge -m 256 --no-shconf --no-pci --no-telemetry --file-prefix="$TOPO-bad" \
  --log-level=lib.eal:error -- --port=net_null0 --gateway_mac=02:00:00:00:00:01 --vip_cidrs=10.100.0.0/24 \
  --control_peers=none --flow_hash_secret_file="$TOPO_DIR/short.secret" >"$TOPO_DIR/short.out" 2>&1 || bad_rc=$?
check "lbd refuses a flow-hash secret of 5 bytes with exit status 2 (got $bad_rc)" \
  sh -c "test $bad_rc -eq 2 && grep -q 'needs at least 16' '$TOPO_DIR/short.out'"

# --- least privilege: once started, every thread of lbd keeps NET_ADMIN, NET_RAW and
# IPC_LOCK (0x7000) and nothing else, with no way back
lbd_pid=$(pgrep -f -- "--file-prefix=$TOPO --log-level" | head -1)
caps=$(for t in /proc/"$lbd_pid"/task/*; do grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs):' "$t/status" | awk '{print $2}' | tr '\n' ' '; echo; done | sort | uniq -c)
check "every thread of lbd ($lbd_pid) keeps only NET_ADMIN, NET_RAW, IPC_LOCK: $(echo $caps)" \
  sh -c "[ -n '$lbd_pid' ] && [ \"\$(echo '$caps' | wc -l)\" -eq 1 ] && echo '$caps' | grep -q '0000000000007000 0000000000007000 0000000000007000 1'"
check "and says so" grep -q "capabilities kept: NET_ADMIN,NET_RAW,IPC_LOCK" "$TOPO_DIR/lbd.log"

# --- exception path
check "ARP and ping to the node (tor -> lb0) through the exception path" nsx tor ping -c 2 -W 2 10.90.0.2
check "ping to the node from the client, routed" nsx client ping -c 2 -W 2 10.90.0.2

# --- services
lbctl service add "$VIP_DNS:53/udp" --backend 10.92.1.2 --backend 10.92.2.2 >/dev/null
lbctl service add "$VIP_GUE:53/udp" --mode dsr-gue --backend 10.92.1.2 --backend 10.92.2.2 >/dev/null
lbctl service add "$VIP_DNS:80/tcp" --backend 10.92.1.2 --backend 10.92.2.2 >/dev/null
check "three services listed" test "$(lbctl service list -o json | grep -c '"vip"')" -eq 3

check "DNS over DSR-IPIP answers" test -n "$(dig_vip "$VIP_DNS")"
check "DNS over DSR-GUE answers" test -n "$(dig_vip "$VIP_GUE")"
spread=$(answers_from "$VIP_DNS" 30)
check "DNS queries spread over both backends (got: $spread)" test "$spread" = "10.200.0.1 10.200.0.2 "
check "the VIP answers ping itself" nsx client ping -c 2 -W 2 "$VIP_DNS"
check "explain names a backend" sh -c "'$LB_BUILD/tools/lbctl' --socket '$TOPO_DIR/lbd.sock' explain udp 10.91.0.2 5555 $VIP_DNS 53 | grep -q 'backend:  10.92'"
health_line=$(lbctl health)
check "lbd hashes flows under the secret ($health_line)" sh -c "echo '$health_line' | grep -q 'flow hash keyed/[0-9a-f]\{8\}$'"
# Under the keyed hash, what explain predicts for a source port is where the query goes
# (backend 10.92.N.2 answers 10.200.0.N).
explained_right=0
for port in 41001 41002 41003 41004 41005 41006 41007 41008; do
  predicted=$(lbctl explain udp 10.91.0.2 "$port" "$VIP_DNS" 53 | sed -n 's/.*maglev: *10\.92\.\([0-9]\)\.2.*/10.200.0.\1/p')
  answered=$(nsx client dig +short +tries=1 +time=2 -b "10.91.0.2#$port" "@$VIP_DNS" whoami.test)
  [ -n "$predicted" ] && [ "$predicted" = "$answered" ] && explained_right=$((explained_right + 1))
done
check "explain predicts the backend of 8 of 8 fixed-port queries (got $explained_right)" test "$explained_right" -eq 8

# --- traffic per service and backend: exactly what was sent, where it went
traffic_json() { lbctl stats --service "$VIP_GUE:53/udp" -o json; }
traffic_json >"$TOPO_DIR/traffic-before.json"
for _ in $(seq 20); do dig_vip "$VIP_GUE"; done >"$TOPO_DIR/traffic-answers.txt"
traffic_json >"$TOPO_DIR/traffic-after.json"
traffic_counted=$(python3 - "$TOPO_DIR" <<'PY'
import json, sys
d = sys.argv[1]
before, after = (json.load(open(f"{d}/traffic-{w}.json"))["services"][0] for w in ("before", "after"))
answers = open(f"{d}/traffic-answers.txt").read().split()
# whoami.test answers 10.200.0.N from backend 10.92.N.2
sent = {f"10.92.{a.split('.')[-1]}.2": answers.count(a) for a in set(answers)}
got = {b["address"]: int(b["packets"]) - int(next((o["packets"] for o in before["backends"]
                                                 if o["address"] == b["address"]), 0))
       for b in after["backends"]}
ok = int(after["packets"]) - int(before["packets"]) == 20 and len(answers) == 20 and \
     all(got.get(b, 0) == n for b, n in sent.items()) and sum(got.values()) == 20
print(("ok" if ok else "WRONG") + f" service +{int(after['packets']) - int(before['packets'])}, backends {got}, answered by {sent}")
PY
)
check "20 queries to $VIP_GUE counted exactly in its service and in the backends that answered ($traffic_counted)" \
  sh -c "echo '$traffic_counted' | grep -q '^ok'"
watch_frame=$(lbctl stats --watch --interval 0.5 --count 1 --top 3)
check "lbctl stats --watch draws a frame with the service's rate" sh -c "echo '$watch_frame' | grep -q '^$VIP_GUE:53/udp '"

# --- a backend on the LB's own segment is sent to directly, at its own MAC
lbctl service add 10.100.0.12:53/udp --backend 10.90.0.5 >/dev/null
backend_decapsulates 4 "$VIP_DNS" "$VIP_GUE" 10.100.0.12
topo_bg dns-b4-12 b4 dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts \
  --bind-interfaces --listen-address=10.100.0.12 --user=root --pid-file="$TOPO_DIR/dnsmasq-b4-12.pid" \
  --host-record=whoami.test,10.200.0.4 --log-facility=-
topo_wait 10 nsx b4 dig +short +tries=1 +time=1 @10.100.0.12 whoami.test
b4_mac=$(nsx b4 cat /sys/class/net/eth0/address)
on_link() { lbctl stats --service 10.100.0.12:53/udp -o json | grep -q "\"next_hop\": \"$b4_mac\""; }
check "lbd resolved the on-link backend's MAC ($b4_mac)" topo_wait 10 on_link
check "DNS through a VIP whose backend is on-link" test "$(dig_vip 10.100.0.12)" = "10.200.0.4"

# --- TCP: a held connection keeps its backend when one is added and when it drains
nsx client python3 "$TOPO_SRC/tcp_probe.py" hold "$VIP_DNS" 80 6 >"$TOPO_DIR/hold.out" 2>&1 &
hold=$!
topo_wait 5 test -s "$TOPO_DIR/hold.out"
held=$(head -1 "$TOPO_DIR/hold.out")
held_ip="10.92.${held#b}.2"
lbctl backend add "$VIP_DNS:80/tcp" 10.92.3.2 >/dev/null
sleep 1
lbctl backend drain "$VIP_DNS:80/tcp" "$held_ip" >/dev/null
fresh=$(nsx client python3 "$TOPO_SRC/tcp_probe.py" connect "$VIP_DNS" 80 20 | sort | uniq -c | tr -s ' \n' ' ')
check "new TCP connections avoid the draining backend $held (got:$fresh)" sh -c "! echo '$fresh' | grep -qw '$held'"
check "new TCP connections reach the added backend b3 (got:$fresh)" sh -c "echo '$fresh' | grep -qw b3"
wait "$hold"
check "the held connection stayed on $held through an added backend and its draining" test $? -eq 0

# --- a 200 kB upload: the client's kernel (default offloads) sends it in GSO frames of many
# segments, the ToR forwards them so, and lbd cuts them into segments for the tunnel.
# (DPDK's net_af_packet cut them at 2 kB instead: 9.8 s by retransmissions, 116 dropped.)
upload=$(nsx client timeout 40 python3 "$TOPO_SRC/upload.py" "$VIP_DNS" 80 200000)
echo "   $upload"
check "a 200 kB upload through the VIP is answered, line by line, within 3 s" upload_ok "$upload" 3
check "lbd cut the kernel's GSO frames into segments ($(lb_event gso_frames) frames, $(lb_event gso_segments) segments)" \
  test "$(lb_event gso_frames)" -gt 0

# --- configuration changes under traffic lose nothing
( for _ in $(seq 150); do dig_vip "$VIP_DNS" || echo FAILED; done >"$TOPO_DIR/under-change.out" ) &
queries=$!
for i in $(seq 10); do
  lbctl backend add "$VIP_DNS:53/udp" 10.92.3.2 >/dev/null
  lbctl backend set-weight "$VIP_DNS:53/udp" 10.92.1.2 $((i + 1)) >/dev/null
  lbctl backend remove "$VIP_DNS:53/udp" 10.92.3.2 >/dev/null
done
wait "$queries"
answered=$(grep -c '^10\.200\.0\.' "$TOPO_DIR/under-change.out")
check "150 queries during 30 configuration changes: $answered answered" test "$answered" -eq 150

# --- IPv6 tunnels into a backend (IP6IP6, GUE over IPv6): lbd's IPv6 path is not part of
# this topology, so the tor sends them as lbd encapsulates them (tunnel_probe.py), and a
# socket bound to the IPv6 VIP in b1 must receive the inner datagrams.
nsx b1 sysctl -qw net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.eth0.disable_ipv6=0
nsx tor sysctl -qw net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.tor-b1.disable_ipv6=0
nsx b1 ip -6 addr add fd00:92:1::2/64 dev eth0 nodad
nsx tor ip -6 addr add fd00:92:1::1/64 dev tor-b1 nodad
backend_decapsulates 1 "$VIP_DNS" "$VIP_GUE" fd00:100::10
topo_bg recv6-b1 b1 socat -u UDP6-RECV:5300,bind=[fd00:100::10] "OPEN:$TOPO_DIR/recv6-b1.out,creat,append"
topo_wait 5 sh -c "ip netns exec '$TOPO-b1' ss -Huln 'sport = :5300' | grep -q ."
b1_mac=$(nsx b1 cat /sys/class/net/eth0/address)
for mode in ip6ip6 gue6; do
  nsx tor python3 "$TOPO_SRC/tunnel_probe.py" tor-b1 "$b1_mac" "$mode" fd00:92:1::1 fd00:92:1::2 fd00:91::2 \
    fd00:100::10 5300 "over-$mode"
done
got6() { grep -q over-ip6ip6 "$TOPO_DIR/recv6-b1.out" && grep -q over-gue6 "$TOPO_DIR/recv6-b1.out"; }
check "IP6IP6 and GUE over IPv6: b1's socket on the IPv6 VIP received both inner datagrams" topo_wait 5 got6
backend_decapsulates 1 "$VIP_DNS" "$VIP_GUE"

# --- bad API requests are refused and change nothing
before=$(lbctl service list -o json)
lbctl service add 10.100.0.12:53/udp --backend not-an-ip >/dev/null 2>&1
check "an invalid backend address is refused (exit 4)" test $? -eq 4
lbctl service add "$VIP_DNS:53/udp" --backend 10.92.1.2 >/dev/null 2>&1
check "a duplicate service is refused (exit 4)" test $? -eq 4
lbctl backend remove "$VIP_DNS:53/udp" 10.92.9.9 >/dev/null 2>&1
check "removing an unknown backend is NOT_FOUND (exit 3)" test $? -eq 3
lbctl service add 10.100.0.12:53/udp --table-size 100 --backend 10.92.1.2 >/dev/null 2>&1
check "a table size that is not prime is refused (exit 4)" test $? -eq 4
check "refused requests changed nothing" test "$(lbctl service list -o json)" = "$before"

# --- the TLS API (inside the LB namespace) requires a client certificate
lbctl_tls() { nsx lb "$LB_BUILD/tools/lbctl" --address 127.0.0.1:50051 --tls-ca "$tls/ca.pem" --timeout 5 "$@"; }
check "lbctl over TLS with a client certificate" lbctl_tls --tls-cert "$tls/client.pem" --tls-key "$tls/client.key" health
lbctl_tls health >/dev/null 2>&1
check "lbctl over TLS without a client certificate is refused (exit 5)" test $? -eq 5
check "the API socket is mode 0660" test "$(stat -c %a "$TOPO_DIR/lbd.sock")" = 660
# lbd refuses, before it starts anything, a TCP API that does not authenticate clients and
# a socket directory anyone may write to (and leaves no EAL runtime directory).
lbd_refuses() {  # lbd_refuses WHAT EXPECTED_MESSAGE LBD_FLAGS...
  local what=$1 expected=$2
  shift 2
  local out rc
  out=$(nsx lb "$LB_BUILD/control/lbd/lbd" -l 0-1 --no-huge -m 128 --no-shconf --no-pci --no-telemetry \
    --file-prefix="$TOPO-refused" --log-level=lib.eal:error -- --port=net_null0 --gateway_mac=02:00:00:00:00:01 \
    --control_peers=none "$@" 2>&1)
  rc=$?
  check "lbd refuses $what (exit $rc)" sh -c "[ $rc -eq 2 ] && echo \"\$0\" | grep -q \"\$1\" && [ ! -e /var/run/dpdk/$TOPO-refused ]" \
    "$out" "$expected"
}
lbd_refuses "a TCP API without client certificates" "needs --tls_client_ca" --api_socket= \
  --api_address=127.0.0.1:50999 --tls_cert="$tls/server.pem" --tls_key="$tls/server.key"
# (A 0777 directory that lbd's own user owns, as a kubelet makes an emptyDir, lbd makes 0750
# instead: cluster_test runs that.)
mkdir -p "$TOPO_DIR/open" && chmod 0777 "$TOPO_DIR/open" && chown nobody "$TOPO_DIR/open"
lbd_refuses "an API socket in a world-writable directory another user owns" "is writable by every user" \
  --api_socket="$TOPO_DIR/open/lbd.sock"
# The peers that spend the routing budget are never "anyone on port 179" by omission.
lbd_refuses "to start without --control_peers" "control_peers: required" --control_peers=
# Flow sync: never without the secret, and the list names this node (the datagrams' source,
# bound into their tags) and, when it does NAT, every peer's SNAT address.
lbd_refuses "flow sync without the secret" "needs --flow_hash_secret_file" --flow_sync_peers=10.90.0.2,10.90.0.3
lbd_refuses "a flow-sync list without this node" "must name this node exactly once" \
  --flow_sync_peers=10.90.0.7,10.90.0.3 --flow_hash_secret_file="$TOPO_DIR/flow-hash.secret"
lbd_refuses "NAT with a flow-sync peer of unknown SNAT address" "10.90.0.3 names no SNAT address" \
  --flow_sync_peers=10.90.0.2=10.93.0.1,10.90.0.3 --snat_addresses=10.93.0.1 \
  --flow_hash_secret_file="$TOPO_DIR/flow-hash.secret"

# --- DPDK telemetry serves the same counters
telemetry=$(python3 - "/var/run/dpdk/$TOPO/dpdk_telemetry.v2" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.connect(sys.argv[1])
json.loads(s.recv(4096))
s.send(b"/lb/stats")
print(json.loads(s.recv(65536))["/lb/stats"]["forwarded"])
PY
)
check "DPDK telemetry /lb/stats counts forwarded packets (${telemetry:-none})" test "${telemetry:-0}" -gt 0

# --- declarative apply, from YAML and from JSON
cat >"$TOPO_DIR/apply.yaml" <<YAML
generation: 7
services:
  - key: {vip: $VIP_DNS, protocol: UDP, port: 53}
    backends:
      - {address: 10.92.1.2}
      - {address: 10.92.2.2, weight: 2}
  - key: {vip: $VIP_GUE, protocol: UDP, port: 53}
    mode: DSR_GUE
    backends: [{address: 10.92.3.2}]
YAML
first=$(lbctl apply -f "$TOPO_DIR/apply.yaml" 2>&1)
check "apply -f YAML ($first)" test "$first" = "generation 7: 0 created, 2 updated, 2 deleted, 0 unchanged, 0 refused"
again=$(lbctl apply -f "$TOPO_DIR/apply.yaml" 2>&1)
check "applying it again changes nothing ($again)" test "$again" = "generation 7: 0 created, 0 updated, 0 deleted, 2 unchanged, 0 refused"
# A bad service among good ones: all or nothing by default, alone with --partial.
cat >"$TOPO_DIR/partial.yaml" <<YAML
services:
  - key: {vip: $VIP_DNS, protocol: UDP, port: 53}
    backends: [{address: 10.92.1.2}, {address: 10.92.2.2, weight: 2}]
  - key: {vip: $VIP_GUE, protocol: UDP, port: 53}
    mode: DSR_GUE
    backends: [{address: 10.92.3.2}]
  - key: {vip: 10.100.0.77, protocol: UDP, port: 53}
    table_size: 100
    backends: [{address: 10.92.3.2}]
YAML
lbctl apply -f "$TOPO_DIR/partial.yaml" >/dev/null 2>&1
check "an Apply with a bad service is refused whole by default (exit 4)" test $? -eq 4
partial=$(lbctl apply --partial -f "$TOPO_DIR/partial.yaml" 2>&1)
check "--partial refuses it alone and names the field ($partial)" \
  sh -c "echo '$partial' | grep -q 'refused 10.100.0.77:53/udp: services\[2\].table_size: 100 must be'"
check "and applies the others" test "$(lbctl service list -o json | grep -c '"vip"')" -eq 2
check "after apply only the two services remain" test "$(lbctl service list -o json | grep -c '"vip"')" -eq 2
check "the GUE VIP now answers from b3 alone" test "$(answers_from "$VIP_GUE" 5)" = "10.200.0.3 "
printf '{"generation": 6, "services": []}' >"$TOPO_DIR/stale.json"
lbctl apply -f "$TOPO_DIR/stale.json" >/dev/null 2>&1
check "apply -f JSON with an older generation is refused (exit 4)" test $? -eq 4

# --- the kernel's IP stack stays off lbd's interface (net.ipv4.ip_forward=1 in this namespace)
wire_forwarding() { [ "$(nsx lb cat /proc/sys/net/ipv4/conf/wire/forwarding)" = "$1" ]; }
check "lbd turned forwarding off on wire" wire_forwarding 0
nsx lb sysctl -qw net.ipv4.ip_forward=0 net.ipv4.ip_forward=1  # a change of it resets every interface's forwarding
check "and turns it off again when other software resets it" topo_wait 5 wire_forwarding 0
check "lbd logged why" grep -q "wire/forwarding was changed to 1" "$TOPO_DIR/lbd.log"

# --- the ports' own counters
port_field() {  # port_field ROLE FIELD: that port's counter, from lbctl stats -o json
  lbctl stats -o json | python3 -c 'import json,sys; print(next((int(p.get(sys.argv[2], 0)) for p in json.load(sys.stdin).get("ports", []) if p["role"] == sys.argv[1]), -1))' "$1" "$2"
}
check "the wire port's own counters: $(port_field wire rx_packets) packets in, $(port_field wire tx_packets) out" \
  sh -c "[ $(port_field wire rx_packets) -gt 100 ] && [ $(port_field wire tx_packets) -gt 100 ]"
check "and the exception port's ($(port_field exception rx_packets) in)" test "$(port_field exception rx_packets)" -gt 0
check "lbctl stats shows them" sh -c "'$LB_BUILD/tools/lbctl' --socket '$TOPO_DIR/lbd.sock' stats | grep -q '^  wire .*af_packet:wire .*link up'"

# --- health and counters
check "lbd reports healthy" lbctl health
completed=$(lb_event checksums_completed)
check "lbd completed the checksums the kernel's default offloads left partial ($completed)" test "$completed" -gt 0
drops=$(lbctl stats -o json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(int(c["value"]) for c in d["drops"]))')
check "no packet dropped by the dataplane (drops: $drops)" test "$drops" -eq 0

# --- graceful stop
lbd_pid=$(head -1 "$TOPO_DIR/pids")
kill -TERM "$lbd_pid"
stopped=1
for _ in $(seq 100); do kill -0 "$lbd_pid" 2>/dev/null || { stopped=0; break; }; sleep 0.1; done
check "SIGTERM stops lbd within 10 s" test "$stopped" -eq 0
check "lbd logged a clean stop" grep -q "stopped" "$TOPO_DIR/lbd.log"
check "the TAP interface went with it" sh -c "! ip netns exec '$TOPO-lb' ip link show lb0 >/dev/null 2>&1"
check "lbd (DPDK telemetry on) removed its EAL runtime directory /var/run/dpdk/$TOPO" test ! -e "/var/run/dpdk/$TOPO"
check "lbd gave the wire interface its forwarding back (ip_forward=1 here)" \
  test "$(nsx lb cat /proc/sys/net/ipv4/conf/wire/forwarding)" = 1

check_summary
