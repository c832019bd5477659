#!/usr/bin/env bash
# Integration test: the LB-node image, built and run as docker/k8s/lb-node.yaml runs it.
#
#   - A base image from Debian's archive alone (mmdebstrap, with docker/runtime-packages),
#     then docker/Dockerfile's `prebuilt` target: that base plus this build's programs
#     (meson install). The from-source target is the same Dockerfile's last stage.
#   - The DaemonSet's containers (lbd, lb-k8s-watcher, BIRD, lb-bird-gen) run with podman
#     exactly as the manifest says: image, command, args, env, securityContext, volumes
#     (manifest_pod.py reads them), in the LB node's network namespace (hostNetwork). Only
#     the ConfigMap's data, the Secret and what the kubelet adds (the service account,
#     KUBERNETES_SERVICE_HOST) are this test's.
#   - The ToR (BIRD, ECMP, BFD) learns the VIP CIDR from the node; the watcher, against a
#     stand-in API server, gives the Service its address and programs lbd; a client's
#     `dig` through that address is answered by a pod.
# Usage: image_test.sh BUILD_DIR. Root. Removes everything it made, also on failure.
set -uo pipefail
export LB_BUILD=$(cd "$1" && pwd)
export TOPO="lbimg$$" TOPO_DIR="/tmp/lb-image-$$"
SRC=$(cd "$(dirname "$0")/../.." && pwd)
source "$(dirname "$0")/topology.sh"
source "$(dirname "$0")/ecmp_topology.sh"
TOPO_NAMESPACES=(tor client lb1 lb2 b1 b2)
VOL=$TOPO_DIR/volumes
export CONTAINERS_CONF=$TOPO_DIR/containers.conf
pod() { podman --root "$TOPO_DIR/storage" --runroot "$TOPO_DIR/run" "$@"; }

finish() {
  if [ "$failed" -ne 0 ]; then
    for c in lbd lb-k8s-watcher lb-bird-gen bird; do echo "--- container $c"; pod logs "$c" 2>&1 | tail -15; done
    echo "--- image_k8s"; tail -5 "$TOPO_DIR/k8s.log" 2>/dev/null
    nsx tor ip route show 2>/dev/null
  fi
  pod rm --all --force --time 2 >/dev/null 2>&1
  pod system reset --force >/dev/null 2>&1
  topo_down
  rm -rf "$TOPO_DIR"
}
trap finish EXIT
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

# --- the network: ToR with BIRD, the LB node's namespace, a client, two pods
ecmp_network
VIP_CIDR=10.1.0.0/24  # the manifest's
nsx tor ip route del 10.100.0.0/24 2>/dev/null

# --- the pod's volumes: the ConfigMap's data and the Secret are this site's
mkdir -p "$VOL"/{config,flow-hash,run-lbd,run-bird,hugepages}
# No hugepages here: --no-huge (which --in-memory does not combine with).
echo "-l 0-1 --no-huge -m 512 --no-shconf" >"$VOL/config/lbd.eal"
cat >"$VOL/config/lbd.flags" <<FLAGS
--port=af_packet:wire
--tap=lb0
--tap_addresses=10.90.0.2/24
--gateway=10.90.0.1
--encap_source_v4=10.90.0.2/32
--metrics_address=127.0.0.1:9100
--api_socket=/run/lbd/lbd.sock
--vip_cidrs=$VIP_CIDR
--control_peers=10.90.0.1
--flow_hash_secret_file=/etc/lb-secret/secret
--idle_polls=200
--idle_sleep_us=500
FLAGS
cat >"$VOL/config/bird-gen.yaml" <<YAML
router_id: 10.90.0.2
local_as: 65010
interface: lb0
vip_prefixes: [$VIP_CIDR]
bfd: {min_rx_ms: 100, min_tx_ms: 100, multiplier: 3}
peers: [{name: tor, address: 10.90.0.1, as: 65000}]
YAML
(umask 077 && head -c 32 /dev/urandom | base64 >"$VOL/flow-hash/secret")

# --- the cluster: a stand-in API server in the node's namespace
topo_bg k8s lb1 /usr/bin/python3 "$SRC/tests/integration/image_k8s.py" "$TOPO_DIR/k8s" 10.92.1.2 10.92.2.2
mkdir -p "$TOPO_DIR/k8s"
topo_wait 20 test -s "$TOPO_DIR/k8s/port" || { echo "the API server did not start"; cat "$TOPO_DIR/k8s.log"; exit 1; }

run_container() {  # run_container NAME [extra podman args]: as the manifest says
  local name=$1 args
  shift
  mapfile -d '' args < <(/usr/bin/python3 "$SRC/tests/integration/manifest_pod.py" "$SRC/docker/k8s/lb-node.yaml" \
    "$name" "/run/netns/$TOPO-lb1" "$VOL" lb1 "$@")
  pod run "${args[@]}" >/dev/null
}
lbctl1() { "$LB_BUILD/tools/lbctl" --socket "$VOL/run-lbd/lbd.sock" "$@"; }

check "the lbd container starts" run_container lbd
check "lbd in its container becomes healthy" topo_wait 40 lbctl1 health
check "it hashes flows under the mounted secret" sh -c "'$LB_BUILD/tools/lbctl' --socket '$VOL/run-lbd/lbd.sock' health | grep -q 'flow hash keyed/'"
check "the lb-k8s-watcher container starts (in-cluster service account)" run_container lb-k8s-watcher \
  --volume "$TOPO_DIR/k8s/serviceaccount:/var/run/secrets/kubernetes.io/serviceaccount:ro" \
  --env KUBERNETES_SERVICE_HOST=127.0.0.1 --env "KUBERNETES_SERVICE_PORT=$(cat "$TOPO_DIR/k8s/port")"
check "the lb-bird-gen container starts" run_container lb-bird-gen
check "lb-bird-gen renders bird.conf into the shared volume" topo_wait 20 test -s "$VOL/run-bird/bird.conf"
check "the BIRD container starts" run_container bird
check "the watcher gave the Service an address" topo_wait 30 test -s "$TOPO_DIR/k8s/vip"
vip=$(cat "$TOPO_DIR/k8s/vip" 2>/dev/null)
check "the watcher programmed lbd with $vip:53/udp" topo_wait 20 sh -c "'$LB_BUILD/tools/lbctl' --socket '$VOL/run-lbd/lbd.sock' service list | grep -q '$vip:53/udp'"
healthz() { nsx lb1 /usr/bin/python3 -c 'import urllib.request; urllib.request.urlopen("http://127.0.0.1:9101/healthz", timeout=2)'; }
check "the watcher's readiness probe (GET 127.0.0.1:9101/healthz) passes" topo_wait 20 healthz
check "the ToR learned $VIP_CIDR from the node's BIRD over BGP" \
  topo_wait 60 sh -c "ip netns exec '$TOPO-tor' ip route show $VIP_CIDR | grep -q 'via 10.90.0.2'"

# --- the pods answer on the Service's address (DSR: it is on their loopback)
for n in 1 2; do
  nsx "b$n" ip addr add "$vip/32" dev lo
  start_backend "$n" "$vip" || exit 1
done
answer=$(nsx client dig +short +tries=3 +time=2 "@$vip" whoami.test)
check "dig @$vip from the client is answered by a pod through the containers' lbd (got: $answer)" \
  sh -c "echo '$answer' | grep -Eq '^10\\.200\\.0\\.[12]$'"

check_summary
