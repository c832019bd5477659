#!/usr/bin/env bash
# Integration test: DSR to stock pods on Kubernetes worker nodes, decapsulated by
# lb-dsr-node's tc BPF program, configured by the agent from a (stand-in) API server.
#
#   client 10.91.0.2 --- tor (router; the API server on 10.90.0.1:6443) --- lb 10.90.0.2
#                          |                                        (lbd, lb-k8s-watcher)
#                          +-- wN 10.93.N.2 (N = 1..3): worker nodes, each a bridge cni0
#                              10.244.N.1/24 with pods pM (network namespaces behind a
#                              veth, as the bridge CNI makes them)
#   pods: p1 on w1, p2 on w2, p4 on w3; p3 on w1 comes later. Agents on w1 and w2, none
#   on w3. Every pod runs stock servers on its wildcard address (dnsmasq, a TCP line
#   server): no VIP, no tunnel, nothing DSR-specific until the agent adds it.
#
# The Service (LoadBalancer, lbd's class, lbd.io/forwarding-mode: dsr-ipip) gets its VIP
# from the watcher. Checked: the agents' Leases and the watcher leaving p4 out (its node
# has no agent, DSRNodeNotReady); the BPF filter and VIPs in exactly the right pods;
# DNS over UDP and TCP and a 200 kB upload through the VIP, over IPIP and GUE; a pod
# added and one deleted; the agent restarted (nothing duplicated, nothing lost, traffic
# flowing meanwhile) and, while it was away, the Service turned to NAT (the new agent
# removes what the old one left; NAT then reaches the same pods). Pods' rp_filter is
# strict, set here, never inherited.
#
# Usage: dsr_node_test.sh BUILD_DIR. Root. Cleans up every namespace and process.
set -uo pipefail
export LB_BUILD=$(cd "$1" && pwd)
export TOPO="lbdn$$" TOPO_DIR="/tmp/lb-dsr-node-$$"
source "$(dirname "$0")/topology.sh"
TOPO_NAMESPACES=(tor lb client w1 w2 w3 p1 p2 p3 p4)
trap 'topo_down; rm -rf "$TOPO_DIR"' EXIT
AGENT="$LB_BUILD/control/dsr_node/lb-dsr-node"

# --- the topology
topo_namespaces
nsx lb sysctl -qw net.ipv4.ip_forward=1
topo_link tor tor-lb lb wire
nsx tor ip link add br-lb type bridge
nsx tor ip link set tor-lb master br-lb
nsx tor ip link set br-lb up
nsx tor ip addr add 10.90.0.1/24 dev br-lb
topo_link tor tor-cl client eth0
nsx tor ip addr add 10.91.0.1/24 dev tor-cl
nsx tor sysctl -qw net.ipv4.ip_forward=1
nsx tor ip route add 10.100.0.0/24 via 10.90.0.2
nsx tor ip route add 10.101.0.1/32 via 10.90.0.2  # lbd's SNAT address, for the Service's turn to NAT
nsx client ip addr add 10.91.0.2/24 dev eth0
nsx client ip route add default via 10.91.0.1
for n in 1 2 3; do
  topo_link tor "tor-w$n" "w$n" eth0
  nsx tor ip addr add "10.93.$n.1/24" dev "tor-w$n"
  nsx tor ip route add "10.244.$n.0/24" via "10.93.$n.2"
  nsx "w$n" ip addr add "10.93.$n.2/24" dev eth0
  nsx "w$n" ip route add default via "10.93.$n.1"
  nsx "w$n" sysctl -qw net.ipv4.ip_forward=1
  nsx "w$n" ip link add cni0 type bridge
  nsx "w$n" ip addr add "10.244.$n.1/24" dev cni0
  nsx "w$n" ip link set cni0 up
done

add_pod() {  # add_pod POD NODE IP: the pod's namespace on the node's bridge, and its servers
  local pod=$1 node=$2 ip=$3
  nsx "$pod" sysctl -qw net.ipv4.conf.all.rp_filter=1 net.ipv4.conf.default.rp_filter=1
  ip link add "veth-$pod" netns "$TOPO-$node" type veth peer name eth0 netns "$TOPO-$pod"
  nsx "$node" ip link set "veth-$pod" master cni0 up
  nsx "$pod" ip link set eth0 up
  nsx "$pod" ip addr add "$ip/24" dev eth0
  nsx "$pod" ip route add default via "${ip%.*}.1"
  topo_bg "dns-$pod" "$pod" dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts --user=root \
    --pid-file="$TOPO_DIR/dnsmasq-$pod.pid" --host-record="whoami.test,10.200.0.${pod#p}" --log-facility=-
  topo_bg "tcp-$pod" "$pod" socat TCP-LISTEN:80,fork,reuseaddr "EXEC:sed -u s/.*/$pod/"
  topo_wait 10 sh -c "ip netns exec '$TOPO-$pod' ss -Hltn 'sport = :80' | grep -q ." || { echo "$pod: no server"; return 1; }
}
k8s_do() {  # k8s_do JSON: one command to the stand-in cluster, and its completion
  local n
  n=$(date +%s%N)
  echo "$1" >"$TOPO_DIR/k8s/commands/$n.tmp" && mv "$TOPO_DIR/k8s/commands/$n.tmp" "$TOPO_DIR/k8s/commands/$n"
  topo_wait 10 test -e "$TOPO_DIR/k8s/commands/$n.done" || { cat "$TOPO_DIR/k8s/commands/$n.failed" 2>/dev/null; return 1; }
}
start_agent() {  # start_agent N: lb-dsr-node on node wN
  topo_bg "agent-w$1" "w$1" "$AGENT" --kubeconfig="$TOPO_DIR/k8s/kubeconfig" --node_name="w$1" \
    --lease_namespace=lb-system --lease_duration_seconds=6 --resync_seconds=2 --listen_address=127.0.0.1:9104
}
stop_agent() {  # stop_agent N: SIGTERM, and wait until it is gone (its port is free again)
  local pid
  pid=$(pgrep -f "lb-dsr-node.*--node_name=w$1") || return 1
  kill -TERM "$pid"
  topo_wait 10 sh -c "! kill -0 $pid"
}
agent_ready() { nsx "w$1" curl -sf http://127.0.0.1:9104/healthz >/dev/null; }
# What lb-dsr-node show reports in pod $1 (iproute2 6.1 does not show an address's proto).
show() { nsx "$1" "$AGENT" show 2>/dev/null; }
filters() { nsx "$1" tc filter show dev eth0 ingress | grep -c "dsr_decap"; }
filter_id() { show "$1" | sed -n 's/^filter eth0 program \([0-9]*\) .*/\1/p'; }
our_vips() { show "$1" | grep -c "^vip "; }
decapsulated_by() { show "$1" | sed -n 's/.* decapsulated=\([0-9]*\) .*/\1/p'; }
backends() { lbctl service list -o json | /usr/bin/python3 -c '
import json,sys
s=[x for x in json.load(sys.stdin)["services"] if x["key"].get("port")==53 and x["key"]["protocol"]=="UDP"]
print(" ".join(sorted(b["address"] for b in s[0]["backends"])) if s else "")'; }
answers() { for _ in $(seq "$1"); do nsx client dig +short +tries=1 +time=2 "@$vip" whoami.test; done | sort | uniq -c | tr -s ' \n' ' '; }
all_answered() { ! answers "$1" | grep -q "timed out\|no servers"; }

for p in "p1 w1 10.244.1.2" "p2 w2 10.244.2.2" "p4 w3 10.244.3.2"; do add_pod $p || exit 1; done
mkdir -p "$TOPO_DIR/k8s"
topo_bg k8s tor python3 "$TOPO_SRC/dsr_node_k8s.py" "$TOPO_DIR/k8s" 10.90.0.1 w1:p1:10.244.1.2 w2:p2:10.244.2.2 \
  w3:p4:10.244.3.2
topo_wait 20 test -e "$TOPO_DIR/k8s/ready" || { cat "$TOPO_DIR/k8s.log"; exit 1; }
start_lbd --snat_addresses=10.101.0.1 --snat_ports=1024-65535 || exit 1
topo_bg watcher lb "$LB_BUILD/control/k8s/lb-k8s-watcher" --kubeconfig="$TOPO_DIR/k8s/kubeconfig" \
  --lbd_socket="$TOPO_DIR/lbd.sock" --vip_cidrs=10.100.0.0/24 --dsr_lease_namespace=lb-system --node_name=lb \
  --debounce_ms=50
start_agent 1
start_agent 2
check "the agents become ready" topo_wait 20 sh -c "$(declare -f nsx agent_ready); TOPO=$TOPO; agent_ready 1 && agent_ready 2"
check "the watcher allocated the Service's VIP" topo_wait 20 test -s "$TOPO_DIR/k8s/vip"
vip=$(cat "$TOPO_DIR/k8s/vip")

# --- who decapsulates
pods_configured() { [ "$(filters p1)$(filters p2)$(our_vips p1)$(our_vips p2)" = 1111 ]; }
check "p1 and p2 got the filter on eth0 and the VIP on lo, once each" topo_wait 10 pods_configured
check "the VIP on lo is $vip" sh -c "$(declare -f nsx show); TOPO=$TOPO AGENT=$AGENT show p1 | grep -qx 'vip $vip'"
check "p4 (its node runs no agent) got nothing" test "$(filters p4)$(our_vips p4)" = "00"
check "the agents set their pods' strict rp_filter to loose" test "$(nsx p1 sysctl -n net.ipv4.conf.eth0.rp_filter)" = 2
check "the watcher serves p1 and p2, not p4 (no agent on w3)" topo_wait 10 sh -c "[ \"\$($(declare -f lbctl backends); LB_BUILD=$LB_BUILD TOPO_DIR=$TOPO_DIR backends)\" = '10.244.1.2 10.244.2.2' ]"
k8s_do '{"op": "dump"}'
leases=$(/usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(" ".join(sorted(l["spec"]["holderIdentity"] for l in d["leases"])))' "$TOPO_DIR/k8s/dump.json")
check "each agent holds its Lease (holders: $leases)" test "$leases" = "w1 w2"
check "the Service got a DSRNodeNotReady Event naming w3" /usr/bin/python3 -c '
import json,sys
d=json.load(open(sys.argv[1]))
sys.exit(not any(e.get("reason")=="DSRNodeNotReady" and "w3" in e.get("message","") for e in d["events"]))' "$TOPO_DIR/k8s/dump.json"

# --- traffic over IPIP
check "DNS over UDP through $vip: 20 of 20 answered" all_answered 20
spread=$(answers 20)
check "both pods answered ($spread)" sh -c "echo '$spread' | grep -q 10.200.0.1 && echo '$spread' | grep -q 10.200.0.2"
check "DNS over TCP through the VIP" test -n "$(nsx client dig +tcp +short +tries=1 +time=2 "@$vip" whoami.test)"
upload=$(nsx client timeout 40 python3 "$TOPO_SRC/upload.py" "$vip" 80 200000)
check "a 200 kB upload through the VIP is answered line by line ($upload)" upload_ok "$upload" 5
metrics=$(nsx w1 curl -s http://127.0.0.1:9104/metrics)
decapsulated=$(echo "$metrics" | sed -n 's/^lb_dsr_node_packets_total{result="decapsulated"} //p')
in_pods=$(($(decapsulated_by p1) + $(decapsulated_by p2)))
check "the agent counts what its pod decapsulated ($decapsulated; p1 and p2 together: $in_pods)" test "${decapsulated:-0}" -gt 0

# --- GUE
k8s_do '{"op": "set_mode", "mode": "dsr-gue"}'
gue_mode() { lbctl service list -o json | grep -q DSR_GUE; }
check "the Service turned to GUE" topo_wait 10 gue_mode
check "DNS over GUE: 20 of 20 answered" all_answered 20
upload=$(nsx client timeout 40 python3 "$TOPO_SRC/upload.py" "$vip" 80 200000)
check "a 200 kB upload over GUE is answered line by line" upload_ok "$upload" 5
k8s_do '{"op": "set_mode", "mode": "dsr-ipip"}'

# --- a pod added, one deleted
add_pod p3 w1 10.244.1.3 || exit 1
k8s_do '{"op": "add_pod", "name": "p3", "node": "w1", "ip": "10.244.1.3"}'
p3_configured() { [ "$(filters p3)$(our_vips p3)" = 11 ]; }
check "the added pod p3 got the filter and the VIP" topo_wait 10 p3_configured
check "the watcher serves it" topo_wait 10 sh -c "[ \"\$($(declare -f lbctl backends); LB_BUILD=$LB_BUILD TOPO_DIR=$TOPO_DIR backends)\" = '10.244.1.2 10.244.1.3 10.244.2.2' ]"
spread=$(answers 30)
check "p3 answers through the VIP ($spread)" sh -c "echo '$spread' | grep -q 10.200.0.3"
k8s_do '{"op": "delete_pod", "name": "p3"}'
p3_clean() { [ "$(filters p3)$(our_vips p3)" = 00 ]; }
check "the deleted pod's filter and VIP are removed" topo_wait 10 p3_clean
check "queries go on: 20 of 20 answered" all_answered 20

# --- the agent restarted
before=$(filter_id p1)
check "the agent on w1 stops on SIGTERM" stop_agent 1
check "the stopped agent left p1 decapsulating" test "$(filter_id p1)" = "$before"
check "DNS while the agent is away: 20 of 20 answered" all_answered 20
start_agent 1
check "the new agent is ready" topo_wait 20 agent_ready 1
after=$(filter_id p1)
check "it replaced p1's program in place: one filter, a new program ($before, then $after)" \
  sh -c "[ '$(filters p1)' = 1 ] && [ -n '$before' ] && [ -n '$after' ] && [ '$before' != '$after' ]"
check "and kept one VIP address" test "$(our_vips p1)" = 1
check "DNS after the restart: 20 of 20 answered" all_answered 20

# --- what an agent left behind while away
stop_agent 1
k8s_do '{"op": "set_mode", "mode": "nat"}'
sleep 1
start_agent 1
p1_clean() { [ "$(filters p1)$(our_vips p1)" = 00 ]; }
check "the Service turned to NAT while w1's agent was away: the new agent removed p1's filter and VIP" \
  topo_wait 15 p1_clean
check "and w2's agent removed p2's" test "$(filters p2)$(our_vips p2)" = "00"
check "DNS through NAT to the same stock pods: 20 of 20 answered" all_answered 20

check_summary || { for f in agent-w1 agent-w2 watcher k8s; do echo "--- $f"; tail -30 "$TOPO_DIR/$f.log"; done; exit 1; }
