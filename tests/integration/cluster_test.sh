#!/usr/bin/env bash
# Integration test: the shipped image and manifests on a cluster of two LB nodes in two
# racks, the way a kubelet runs them.
#
#   - The image: a Debian 12 base from Debian's archive alone (mmdebstrap, with
#     docker/runtime-packages), then docker/Dockerfile's `prebuilt` target (that base plus
#     this build's programs).
#   - docker/k8s/lb-node.yaml unchanged, on two LB nodes, by kubelet.py (emptyDir 0777,
#     read-only ConfigMap and Secret mounts, the downward API, containerd's capabilities and
#     read-only roots (no container privileged; RuntimeDefault seccomp),
#     containers in any order and restarted, probes, preStop and the grace period). ONE
#     ConfigMap for both, filled as its comments say: this test's site.yaml.
#   - Rack A: lb-a1's uplink 10.90.1.2/24, gateway and ToR peer 10.90.1.1; rack B: lb-b1's
#     10.90.2.2/24, 10.90.2.1. The ToR (BIRD, BFD, ECMP) routes between the racks, the
#     client and the pods. A management network (10.80.0.0/24) carries the node's own
#     traffic: the API server (10.80.0.2, its own namespace), flow sync, metrics.
#   - Stock backends: dnsmasq (DNS) and python3's http.server (HTTP). A LoadBalancer
#     Service of lbd's class with no annotation: NAT.
# Shows: the pods ready and ECMP over both nodes with DNS and HTTP through the Service's
# address; a rolling update of both nodes under 60 held TCP connections and 500 DNS
# queries a second (figures printed); the API server away for 30 s while both nodes serve;
# a node restarted while the API server is away announcing only once it has the
# configuration; an operator's drain kept through lbd's restart. And DSR: the worker
# node w1 runs docker/k8s/lb-dsr-node.yaml unchanged (hostPID, hostNetwork), and a
# Service asking for dsr-ipip reaches the same stock pods, which the agent makes
# decapsulate.
# Usage: cluster_test.sh BUILD_DIR. Root. Removes everything it made, also on failure.
set -uo pipefail
export LB_BUILD=$(cd "$1" && pwd)
export TOPO="lbk8s$$" TOPO_DIR="/tmp/lb-cluster-$$"
SRC=$(cd "$(dirname "$0")/../.." && pwd)
source "$(dirname "$0")/topology.sh"
TOPO_NAMESPACES=(tor client mgmt api lb1 lb2 w1 b1 b2)
export CONTAINERS_CONF=$TOPO_DIR/containers.conf
export KUBELET_PODMAN_OPTIONS="--root $TOPO_DIR/storage --runroot $TOPO_DIR/run"
pod() { podman $KUBELET_PODMAN_OPTIONS "$@"; }
NODES=(lb-a1 lb-b1)
VIP_CIDR=10.1.0.0/24

finish() {
  for n in 1 2; do stop_pod "$n" 2>/dev/null; done
  stop_kubelet "$TOPO-w1" 2>/dev/null
  if [ "$failed" -ne 0 ]; then
    [ -n "${CLUSTER_KEEP_LOGS:-}" ] && mkdir -p "$CLUSTER_KEEP_LOGS" && cp -r "$TOPO_DIR"/pod-* "$TOPO_DIR"/*.log "$CLUSTER_KEEP_LOGS/" 2>/dev/null
    for f in "$TOPO_DIR"/pod-*/logs/*.log; do [ -f "$f" ] && { echo "--- $f"; tail -12 "$f"; }; done
    echo "--- api"; tail -5 "$TOPO_DIR/api.log" 2>/dev/null
    nsx tor ip route show 2>/dev/null
  fi
  pod rm --all --force --time 2 >/dev/null 2>&1
  pod system reset --force >/dev/null 2>&1
  topo_down
  rm -rf "$TOPO_DIR"
}
trap finish EXIT
trap 'exit 143' TERM INT  # a timeout's SIGTERM still cleans up
mkdir -p "$TOPO_DIR"

# podman as this machine runs it: runc, cgroupfs, no default ulimits; storage of its own.
cat >"$CONTAINERS_CONF" <<'CONF'
[containers]
default_ulimits = []
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF

# --- the image
packages=$(grep -v '^#' "$SRC/docker/runtime-packages" | paste -sd, -)
check "a Debian 12 base with the run-time packages (mmdebstrap, Debian's archive)" \
  mmdebstrap --quiet --variant=minbase --include="$packages" bookworm "$TOPO_DIR/base.tar"
check "podman imports it" pod import --quiet "$TOPO_DIR/base.tar" localhost/lb-base:test
rm -f "$TOPO_DIR/base.tar"
mkdir -p "$TOPO_DIR/context/docker"
cp "$SRC/docker/runtime-packages" "$TOPO_DIR/context/docker/"
meson install -C "$LB_BUILD" --quiet --destdir "$TOPO_DIR/context/prebuilt" >/dev/null
check "docker/Dockerfile builds (target prebuilt) as lb:0.1.0" \
  pod build --quiet --build-arg BASE=localhost/lb-base:test --target prebuilt -f "$SRC/docker/Dockerfile" \
  -t lb:0.1.0 "$TOPO_DIR/context"
rm -rf "$TOPO_DIR/context"
image=$(/usr/bin/python3 -c 'import sys,yaml; d=[x for x in yaml.safe_load_all(open(sys.argv[1])) if x and x["kind"]=="DaemonSet"][0]; print(sorted({c["image"] for c in d["spec"]["template"]["spec"]["containers"]})[0])' "$SRC/docker/k8s/lb-node.yaml")
check "every program's libraries are in the image ($image)" \
  pod run --rm --entrypoint /bin/sh "$image" -c '! ldd /usr/local/bin/* | grep -q "not found"'


# --- the network
topo_namespaces
for n in 1 2; do
  topo_link tor "tor-lb$n" "lb$n" wire
  nsx tor ip addr add "10.90.$n.1/24" dev "tor-lb$n"
  topo_link tor "tor-b$n" "b$n" eth0
  nsx tor ip addr add "10.92.$n.1/24" dev "tor-b$n"
  nsx "b$n" ip addr add "10.92.$n.2/24" dev eth0
  nsx "b$n" ip route add default via "10.92.$n.1"
done
topo_link tor tor-cl client eth0
nsx tor ip addr add 10.91.0.1/24 dev tor-cl
nsx client ip addr add 10.91.0.2/24 dev eth0
nsx client ip route add default via 10.91.0.1
nsx tor sysctl -qw net.ipv4.ip_forward=1
nsx tor sysctl -qw net.ipv4.fib_multipath_hash_policy=1
# The management network: a bridge, the API server and each node's management NIC (its
# InternalIP, and its default route, as on a DPDK appliance whose uplink lbd owns).
nsx mgmt ip link add br-mgmt type bridge
nsx mgmt ip link set br-mgmt up
topo_link mgmt mgmt-api api eth0
nsx mgmt ip link set mgmt-api master br-mgmt
nsx api ip addr add 10.80.0.2/24 dev eth0
# The worker node w1, whose pods b1 and b2 are: lb-dsr-node.yaml's DaemonSet runs there.
topo_link mgmt mgmt-w1 w1 mgmt0
nsx mgmt ip link set mgmt-w1 master br-mgmt
nsx w1 ip addr add 10.80.0.21/24 dev mgmt0
for n in 1 2; do
  topo_link mgmt "mgmt-lb$n" "lb$n" mgmt0
  nsx mgmt ip link set "mgmt-lb$n" master br-mgmt
  nsx "lb$n" ip addr add "10.80.0.1$n/24" dev mgmt0
  nsx "lb$n" sysctl -qw net.ipv4.ip_forward=1  # as on Kubernetes nodes
done
cat >"$TOPO_DIR/tor.conf" <<BIRD
router id 10.90.1.1;
log stderr all;
protocol device { scan time 2; }
protocol bfd { interface "tor-lb*" { min rx interval 100 ms; min tx interval 100 ms; multiplier 3; }; }
protocol kernel { ipv4 { export all; import none; }; merge paths yes; }
template bgp lbnode { local as 65000; direct; ttl security on; bfd on; connect retry time 2; error wait time 2, 16;
  ipv4 { import all; export none; }; }
protocol bgp lb_a1 from lbnode { local 10.90.1.1; neighbor 10.90.1.2 as 65010; }
protocol bgp lb_b1 from lbnode { local 10.90.2.1; neighbor 10.90.2.2 as 65010; }
BIRD
topo_bg bird-tor tor bird -f -c "$TOPO_DIR/tor.conf" -s "$TOPO_DIR/tor.ctl" -P "$TOPO_DIR/tor.pid"
next_hops() { nsx tor ip route show "$VIP_CIDR" 2>/dev/null | grep -Eo 'via 10\.90\.[12]\.2' | sort -u | wc -l; }
has_next_hops() { [ "$(next_hops)" -eq "$1" ]; }

# --- stock backends: dnsmasq and python3's http.server, on their own addresses
for n in 1 2; do
  # On the wildcard address, as a pod's server listens: DSR's VIP (on lo) is local too.
  topo_bg "dns-b$n" "b$n" dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts \
    --user=root --pid-file="$TOPO_DIR/dnsmasq-b$n.pid" \
    --host-record="whoami.test,10.92.$n.2" --log-facility=- --max-tcp-connections=200
  mkdir -p "$TOPO_DIR/www$n" && echo "b$n" >"$TOPO_DIR/www$n/index.html"
  topo_bg "http-b$n" "b$n" /usr/bin/python3 -m http.server 80 --bind "10.92.$n.2" --directory "$TOPO_DIR/www$n"
done

# --- the cluster: the API server, the site's ConfigMap and Secret
topo_bg api api /usr/bin/python3 "$SRC/tests/integration/cluster_k8s.py" "$TOPO_DIR/k8s" 10.80.0.2 w1 10.92.1.2 10.92.2.2
mkdir -p "$TOPO_DIR/k8s"
topo_wait 20 test -s "$TOPO_DIR/k8s/ready" || { echo "the API server did not start"; cat "$TOPO_DIR/api.log"; exit 1; }
CM=$TOPO_DIR/configmap
mkdir -p "$CM" "$TOPO_DIR/secret"
cat >"$CM/site.yaml" <<YAML
vip_cidrs: [$VIP_CIDR]
backend_cidrs: [10.92.0.0/16]
port: af_packet:wire
bgp:
  local_as: 65010
  bfd: {min_rx_ms: 100, min_tx_ms: 100, multiplier: 3}
racks:
  rack-a:
    gateway: 10.90.1.1
    peers: [{name: tor_a, address: 10.90.1.1, as: 65000}]
  rack-b:
    gateway: 10.90.2.1
    peers: [{name: tor_b, address: 10.90.2.1, as: 65000}]
nodes:
  lb-a1: {rack: rack-a, address: 10.90.1.2/24, snat_address: 10.93.0.1, management: 10.80.0.11}
  lb-b1: {rack: rack-b, address: 10.90.2.2/24, snat_address: 10.93.0.2, management: 10.80.0.12}
YAML
# No hugepages here (--no-huge, which --in-memory does not combine with); idle back-off,
# since two lbd share two cores with everything else.
echo "--no-huge -m 512 --no-shconf" >"$CM/lbd.eal"
cat >"$CM/lbd.flags" <<FLAGS
--tap=lb0
--api_socket=/run/lbd/lbd.sock
--flow_hash_secret_file=/etc/lb-secret/secret
--await_first_apply
--state_dir=/var/lib/lbd
--idle_polls=200
--idle_sleep_us=500
FLAGS
echo 5 >"$CM/drain_seconds"
(umask 077 && head -c 32 /dev/urandom | base64 >"$TOPO_DIR/secret/secret")

start_pod() {  # start_pod N: the DaemonSet's pod on node N, by kubelet.py
  local n=$1
  local name=${NODES[$((n - 1))]}
  rm -rf "$TOPO_DIR/pod-$n"
  mkdir -p "$TOPO_DIR/pod-$n"
  # In the host's namespaces, as a kubelet runs (it enters the node's network for probes).
  /usr/bin/python3 "$SRC/tests/integration/kubelet.py" "$SRC/docker/k8s/lb-node.yaml" \
    "$name" "10.80.0.1$n" "$TOPO-lb$n" "$TOPO_DIR/pod-$n" --configmap-from "$CM" --secret "lbd-flow-hash=$TOPO_DIR/secret" \
    --extra-run-arg="--volume=$TOPO_DIR/k8s/serviceaccount:/var/run/secrets/kubernetes.io/serviceaccount:ro" \
    --extra-run-arg=--env=KUBERNETES_SERVICE_HOST=10.80.0.2 --extra-run-arg=--env=KUBERNETES_SERVICE_PORT=6443 \
    >>"$TOPO_DIR/kubelet-$n.log" 2>&1 &
  echo $! >>"$TOPO_DIR/pids"
}
stop_kubelet() {  # stop_kubelet NETNS: deletes the pod the kubelet.py of node NETNS runs, and waits
  local pid
  pid=$(pgrep -f "kubelet.py .* $1 $TOPO_DIR" | head -1)
  [ -n "$pid" ] || return 0
  kill -TERM "$pid"
  while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
}
stop_pod() { stop_kubelet "$TOPO-lb$1"; }  # stop_pod N: deletes LB node N's pod (preStop, grace period)
start_dsr_agent() {  # lb-dsr-node.yaml's pod on the worker node w1 (hostPID, hostNetwork)
  mkdir -p "$TOPO_DIR/pod-w1"
  /usr/bin/python3 "$SRC/tests/integration/kubelet.py" "$SRC/docker/k8s/lb-dsr-node.yaml" \
    w1 10.80.0.21 "$TOPO-w1" "$TOPO_DIR/pod-w1" \
    --extra-run-arg="--volume=$TOPO_DIR/k8s/serviceaccount:/var/run/secrets/kubernetes.io/serviceaccount:ro" \
    --extra-run-arg=--env=KUBERNETES_SERVICE_HOST=10.80.0.2 --extra-run-arg=--env=KUBERNETES_SERVICE_PORT=6443 \
    >>"$TOPO_DIR/kubelet-w1.log" 2>&1 &
  echo $! >>"$TOPO_DIR/pids"
}
pod_ready() { [ "$(cat "$TOPO_DIR/pod-$1/ready" 2>/dev/null)" = 1 ]; }
lbctl_on() { local n=$1; shift; "$LB_BUILD/tools/lbctl" --socket "$TOPO_DIR/pod-$n/volumes/run-lbd/lbd.sock" "$@"; }

# --- the pods
for n in 1 2; do start_pod "$n"; done
start_dsr_agent
check "both pods ready (every container's readiness probe)" topo_wait 120 sh -c "[ \"\$(cat $TOPO_DIR/pod-1/ready $TOPO_DIR/pod-2/ready 2>/dev/null | tr -d '\n')\" = 11 ]"
check "the kubelet's emptyDir was 0777; lbd made its socket directory 0750" \
  sh -c "grep -q 'made it 0750' '$TOPO_DIR/pod-1/logs/lbd.log' && [ \"\$(stat -c %a '$TOPO_DIR/pod-1/volumes/run-lbd')\" = 750 ]"
check "no container is privileged; lbd keeps NET_ADMIN, NET_RAW and IPC_LOCK once started" \
  sh -c "! grep -q 'privileged: true' '$SRC/docker/k8s/lb-node.yaml' && grep -q 'capabilities kept: NET_ADMIN,NET_RAW,IPC_LOCK' '$TOPO_DIR/pod-1/logs/lbd.log'"
check "each node has its own uplink address from the one ConfigMap" \
  sh -c "ip netns exec $TOPO-lb1 ip -br addr show lb0 | grep -q 10.90.1.2/24 && ip netns exec $TOPO-lb2 ip -br addr show lb0 | grep -q 10.90.2.2/24"
check "the ToR routes the VIP CIDR over both nodes (ECMP)" topo_wait 60 has_next_hops 2
check "the watcher gave the Service an address" topo_wait 30 test -s "$TOPO_DIR/k8s/vip"
vip=$(cat "$TOPO_DIR/k8s/vip" 2>/dev/null)
check "lbd serves $vip:53/udp in NAT mode (no annotation)" sh -c "'$LB_BUILD/tools/lbctl' --socket '$TOPO_DIR/pod-1/volumes/run-lbd/lbd.sock' service list | grep '$vip:53/udp' | grep -qw nat"
answers=$(for i in $(seq 1 20); do nsx client dig +short +tries=2 +time=2 "@$vip" whoami.test; done | sort | uniq -c)
check "20 DNS queries through $vip answered by both pods: $(echo $answers)" \
  sh -c "[ \$(echo '$answers' | awk '{s+=\$1} END {print s}') -eq 20 ] && echo '$answers' | grep -q 10.92.1.2 && echo '$answers' | grep -q 10.92.2.2"
check "HTTP through $vip answered by a pod" sh -c "ip netns exec $TOPO-client /usr/bin/python3 -c \"import urllib.request,sys; sys.exit(urllib.request.urlopen('http://$vip/', timeout=5).read().strip() not in (b'b1', b'b2'))\""
# --- DSR: lb-dsr-node.yaml, unchanged, on the worker node; the Service asks for dsr-ipip
check "lb-dsr-node's pod ready on w1 (hostPID, hostNetwork, its manifest's capabilities and seccomp)" \
  topo_wait 60 pod_ready w1
check "the watcher gave the DSR Service an address" topo_wait 30 test -s "$TOPO_DIR/k8s/vip-dsr"
vip_dsr=$(cat "$TOPO_DIR/k8s/vip-dsr" 2>/dev/null)
dsr_served() { lbctl_on 1 service list | grep "$vip_dsr:53/udp" | grep -qw dsr-ipip; }
check "lbd serves $vip_dsr:53/udp in DSR mode, once the agent's Lease is live" topo_wait 30 dsr_served
decapsulating() { nsx "$1" tc filter show dev eth0 ingress | grep -q dsr_decap && nsx "$1" ip -br addr show lo | grep -q "$vip_dsr/32"; }
check "the agent attached its decapsulation and put the VIP on lo in both pods" \
  topo_wait 30 sh -c "$(declare -f nsx decapsulating); decapsulating b1 && decapsulating b2"
dsr_answers=$(for i in $(seq 1 20); do nsx client dig +short +tries=2 +time=2 "@$vip_dsr" whoami.test; done | sort | uniq -c)
check "20 DNS queries through $vip_dsr (DSR over IPIP) answered by both pods: $(echo $dsr_answers)" \
  sh -c "[ \$(echo '$dsr_answers' | awk '{s+=\$1} END {print s}') -eq 20 ] && echo '$dsr_answers' | grep -q 10.92.1.2 && echo '$dsr_answers' | grep -q 10.92.2.2"
scrape() { nsx "lb$1" /usr/bin/python3 -c "import urllib.request; print(urllib.request.urlopen('http://10.80.0.1$1:$2/metrics', timeout=3).read().decode())"; }
check "metrics on the node's address, each with lb_build_info (7310 lbd, 7311 watcher, 7312 lb-bird-gen)" \
  sh -c "$(declare -f nsx scrape); for p in 7310 7311 7312; do scrape 1 \$p | grep -q '^lb_build_info{' || exit 1; done"

# --- a rolling update under load
monitor() {  # samples the ToR's next hops every 100 ms until $TOPO_DIR/stop-monitor exists
  while [ ! -e "$TOPO_DIR/stop-monitor" ]; do echo "$(date +%s.%N) $(next_hops)"; sleep 0.1; done
}
monitor >"$TOPO_DIR/hops" &
echo $! >>"$TOPO_DIR/pids"
topo_bg load client /usr/bin/python3 "$SRC/tests/integration/cluster_load.py" "$vip" 60 500 "$TOPO_DIR/stop-load"
check "60 TCP connections held and DNS at 500 queries/s through $vip" topo_wait 30 grep -q ready "$TOPO_DIR/load.log"
sleep 3
for n in 1 2; do
  stop_pod "$n"
  deleted[$n]=$(cat "$TOPO_DIR/pod-$n/deleted" 2>/dev/null)
  start_pod "$n"
  check "rolling update: lb-node on ${NODES[$((n - 1))]} deleted in ${deleted[$n]} s, replaced, ready" topo_wait 120 pod_ready "$n"
  check "both next hops again" topo_wait 30 has_next_hops 2
  sleep 10  # the DaemonSet's minReadySeconds
done
touch "$TOPO_DIR/stop-load" "$TOPO_DIR/stop-monitor"
topo_wait 20 grep -q '^{' "$TOPO_DIR/load.log"
result=$(grep '^{' "$TOPO_DIR/load.log")
echo "rolling update under load: $result"
read -r broken lost queries < <(echo "$result" | /usr/bin/python3 -c 'import json,sys; r=json.load(sys.stdin); print(len(r["broken"]), r["lost"], r["queries"])')
one_hop=$(awk 'BEGIN {m=0} {if ($2 == 1) {if (!s) s=$1; if ($1 - s > m) m = $1 - s} else s=0} END {printf "%.1f", m}' "$TOPO_DIR/hops")
zero=$(awk '$2 == 0' "$TOPO_DIR/hops" | wc -l)
echo "longest time with one next hop: $one_hop s; samples with none: $zero of $(wc -l <"$TOPO_DIR/hops")"
check "rolling update: 0 of 60 TCP connections broken (got $broken)" test "${broken:-1}" -eq 0
check "rolling update: at most 0.1% of $queries queries lost (got $lost)" test "$(( ${lost:-999999} * 1000 ))" -le "${queries:-0}"
check "rolling update: the ToR never without a next hop ($zero samples)" test "$zero" -eq 0

# --- the API server away for 30 s: both nodes keep serving
api_down() { nsx api ip link set eth0 down; }
api_up() { nsx api ip link set eth0 up; }
api_down
sleep "${CLUSTER_API_OUTAGE:-30}"
check "API server away 30 s: both next hops still" has_next_hops 2
answers=$(for i in $(seq 1 20); do nsx client dig +short +tries=2 +time=2 "@$vip" whoami.test; done | grep -c '^10\.92\.')
check "API server away 30 s: 20 of 20 queries answered (got $answers)" test "$answers" -eq 20

# --- a node restarted while the API server is away announces nothing until it has the configuration
stop_pod 1
start_pod 1
check "restarted without the API server: lbd up but waiting for the first Apply" \
  topo_wait 60 sh -c "'$LB_BUILD/tools/lbctl' --socket '$TOPO_DIR/pod-1/volumes/run-lbd/lbd.sock' health 2>&1 | grep -q 'waiting for the first Apply'"
sleep 10
check "... and not announcing (one next hop: $(next_hops))" has_next_hops 1
check "... and its pod is not ready" sh -c "! [ \"\$(cat $TOPO_DIR/pod-1/ready)\" = 1 ]"
api_up
check "API server back: the node gets the configuration and announces (two next hops)" topo_wait 90 has_next_hops 2
check "... and its pod is ready" topo_wait 60 pod_ready 1

# --- an operator's drain survives lbd's restart
lbctl_on 2 node drain >/dev/null
check "drained: lb-b1 withdraws" topo_wait 30 has_next_hops 1
pod exec lb-b1-lbd kill 1 2>/dev/null  # lbd exits; the kubelet restarts the container
check "lbd restarted by the kubelet, still drained" topo_wait 60 sh -c "'$LB_BUILD/tools/lbctl' --socket '$TOPO_DIR/pod-2/volumes/run-lbd/lbd.sock' health 2>&1 | grep -q 'drained by the operator'"
check "... and still withdrawn" has_next_hops 1
lbctl_on 2 node undrain >/dev/null
check "undrained: both next hops" topo_wait 30 has_next_hops 2

check_summary
