#!/usr/bin/env bash
# What a change to a running lbd costs: lbd (two workers with idle back-off, on a veth in
# a namespace of its own) loaded with a large state through its API, then timed
# single-backend changes (bench/control_bench.cc), and lbd's resident memory at that
# state. Root. Cleans up everything it made.
#
#   bench/control.sh BUILD_DIR [control_bench flags]
#     default: --services=4096 --backends=100 --changes=200 (the issue-13 targets)
#   CONTROL_MILLION=1 also applies 1M backends in one request (4096 x 256) and reports it.
set -uo pipefail
export LB_BUILD=$(cd "$1" && pwd)
shift
export TOPO="lbc$$" TOPO_DIR="/tmp/lb-control-$$"
source "$(dirname "$0")/../tests/integration/topology.sh"
TOPO_NAMESPACES=(lb peer)
trap 'topo_down; rm -rf "$TOPO_DIR"' EXIT

topo_namespaces
topo_link lb wire peer eth0
topo_bg lbd lb "$LB_BUILD/control/lbd/lbd" --lcores=0@0,1@1,2@1 --no-huge -m 3072 --no-shconf --no-pci \
  --file-prefix="$TOPO" --log-level=lib.eal:warning -- \
  --port=af_packet:wire --gateway_mac=02:00:00:00:00:01 --encap_source_v4=10.90.0.2/32 \
  --idle_polls=200 --idle_sleep_us=500 --api_socket="$TOPO_DIR/lbd.sock" --max_table_memory=$((2 << 30)) \
  --control_peers=none
lbd_pid=$(tail -1 "$TOPO_DIR/pids")
topo_wait 30 "$LB_BUILD/tools/lbctl" --socket "$TOPO_DIR/lbd.sock" health || {
  echo "lbd did not start"; cat "$TOPO_DIR/lbd.log"; exit 1; }

rss_mib() { awk '/^VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$lbd_pid/status"; }
echo "lbd resident memory at start: $(rss_mib) MiB"
args=("$@")
[ ${#args[@]} -eq 0 ] && args=(--services=4096 --backends=100 --changes=200)
"$LB_BUILD/bench/control_bench" --sockets="$TOPO_DIR/lbd.sock" --load "${args[@]}" || {
  echo "control_bench failed"; tail -20 "$TOPO_DIR/lbd.log"; exit 1; }
echo "lbd resident memory at that state: $(rss_mib) MiB"
"$LB_BUILD/tools/lbctl" --socket "$TOPO_DIR/lbd.sock" stats | sed -n 2p
if [ "${CONTROL_MILLION:-0}" = 1 ]; then
  "$LB_BUILD/bench/control_bench" --sockets="$TOPO_DIR/lbd.sock" --load --services=4096 --backends=256 --changes=20 || {
    echo "the 1M-backend Apply failed"; tail -20 "$TOPO_DIR/lbd.log"; exit 1; }
  echo "lbd resident memory with 1M backends: $(rss_mib) MiB"
  "$LB_BUILD/tools/lbctl" --socket "$TOPO_DIR/lbd.sock" stats | sed -n 2p
fi
kill -0 "$lbd_pid" || { echo "lbd died"; exit 1; }
