#!/usr/bin/env bash
# lbbench's live mode against a running lbd, with dpdk-testpmd (MAC swap forwarding) on
# the same virtual device as the same-run reference: lbbench in namespace "gen" sends over
# a veth pair to namespace "dut", where first testpmd and then lbd (a DSR-IPIP service for
# lbbench's VIP, its gateway MAC = lbbench's port, so every encapsulated packet comes
# back) forward what they get, lbd once on its own af_packet port and once on DPDK's
# net_af_packet. Prints the runs and their ratios to the reference. Root.
#
#   bench/live.sh BUILD_DIR [SECONDS] [FLOWS]     (defaults 2 s, 10000 flows)
#
# Set LIVE_BUSY_POLL=1 for a busy-polling lbd worker (the measurement); the default uses
# lbd's idle back-off, as tests must on a shared machine. Cleans up everything it made.
set -uo pipefail
export LB_BUILD=$(cd "$1" && pwd)
SECONDS_PER_RUN=${2:-2}
FLOWS=${3:-10000}
export TOPO="lbl$$" TOPO_DIR="/tmp/lb-live-$$"
source "$(dirname "$0")/../tests/integration/topology.sh"
TOPO_NAMESPACES=(gen dut)
trap 'topo_down; rm -rf "$TOPO_DIR"' EXIT

topo_namespaces
topo_link gen gen0 dut dut0
gen_mac=$(nsx gen cat /sys/class/net/gen0/address)
dut_mac=$(nsx dut cat /sys/class/net/dut0/address)
eal_mem="--no-huge -m 512 --no-shconf --no-pci --log-level=lib.eal:error"

lbbench() {  # lbbench LABEL: one live run, JSON on stdout
  nsx gen "$LB_BUILD/bench/lbbench" --lcores=0@0,1@0 $eal_mem --file-prefix="$TOPO-gen" --no-telemetry \
    --vdev=net_af_packet0,iface=gen0 -- --live_port=net_af_packet0 --live_dst_mac="$dut_mac" \
    --flows="$FLOWS" --seconds="$SECONDS_PER_RUN" --json
}

# Reference: testpmd swaps the MACs and sends every frame straight back.
topo_bg testpmd dut sh -c "sleep 600 | exec stdbuf -oL dpdk-testpmd --lcores=0@1,1@1 $eal_mem --file-prefix=$TOPO-dut \
  --no-telemetry --vdev=net_af_packet0,iface=dut0 -- --forward-mode=macswap --auto-start --stats-period=0 --total-num-mbufs=16384"
topo_wait 20 grep -q "Press enter to exit" "$TOPO_DIR/testpmd.log" || { cat "$TOPO_DIR/testpmd.log"; exit 1; }
reference=$(lbbench) || { echo "lbbench failed"; exit 1; }
# The pattern's brackets keep pgrep from matching a shell whose command line holds it.
stop_dut() { pkill -TERM -f "file-prefix=$TOPO-du[t]"; topo_wait 10 eval '! pgrep -f "file-prefix=$TOPO-du[t]" >/dev/null'; }
stop_dut || { echo "testpmd did not stop"; exit 1; }

# lbd: one worker, a DSR-IPIP service for lbbench's VIP (10.1.0.0:53/udp) with 16 backends,
# on each of its two ports for a kernel interface: its own (af_packet:IFACE, GSO frames
# segmented) and DPDK's net_af_packet.
idle="--idle_polls=200 --idle_sleep_us=50"
[ "${LIVE_BUSY_POLL:-0}" = 1 ] && idle=""
measure_lbd() {  # measure_lbd NAME EAL_PORT_ARGS LBD_PORT: one lbbench run against lbd on that port
  local name=$1 eal_port=$2 port=$3
  # shellcheck disable=SC2086
  topo_bg "lbd-$name" dut "$LB_BUILD/control/lbd/lbd" --lcores=0@0,1@1 $eal_mem --file-prefix="$TOPO-dut" \
    --no-telemetry $eal_port -- --port="$port" --tap=lb0 --gateway_mac="$gen_mac" \
    --encap_source_v4=10.255.0.0/24 --api_socket="$TOPO_DIR/lbd.sock" --control_peers=none $idle
  topo_wait 30 lbctl health || { echo "lbd did not become healthy" >&2; cat "$TOPO_DIR/lbd-$name.log" >&2; return 1; }
  local backends=() b
  for b in $(seq 0 15); do backends+=(--backend "10.2.0.$b"); done
  lbctl service add 10.1.0.0:53/udp "${backends[@]}" >/dev/null
  lbbench || { echo "lbbench failed" >&2; return 1; }
  stop_dut || { echo "lbd did not stop" >&2; return 1; }
}
own=$(measure_lbd af_packet "" af_packet:dut0) || exit 1
pmd=$(measure_lbd net_af_packet --vdev=net_af_packet0,iface=dut0 net_af_packet0) || exit 1

python3 - "$reference" "$own" "$pmd" <<'PY'
import json, sys
ref, own, pmd = (json.loads(a) for a in sys.argv[1:4])
print("lbbench live, %d flows, %.1f s per run, over a veth pair" % (own["flows"], own["seconds"]))
print("%-30s %10s %10s %12s %8s %8s %7s %6s" % ("device under test", "sent", "received", "encapsulated", "tx-Mpps", "rx-Mpps", "loss%", "ratio"))
runs = (("dpdk-testpmd macswap", ref), ("lbd on af_packet:dut0", own), ("lbd on net_af_packet", pmd))
ratio = {}
for name, r in runs:
    ratio[name] = r["rx_mpps"] / ref["rx_mpps"] if ref["rx_mpps"] else 0
    print("%-30s %10d %10d %12d %8.3f %8.3f %7.2f %6.2f" % (name, r["sent"], r["received"], r["encapsulated"], r["tx_mpps"], r["rx_mpps"], r["loss_percent"], ratio[name]))
print("ratio (lbd rx / reference rx): af_packet port %.2f, net_af_packet %.2f" % (ratio[runs[1][0]], ratio[runs[2][0]]))
print(json.dumps({"reference": ref, "lbd": own, "lbd_net_af_packet": pmd, "ratio": round(ratio[runs[1][0]], 3),
                  "ratio_net_af_packet": round(ratio[runs[2][0]], 3)}))
# What comes back is lbd's encapsulated output, plus at most a little of the kernel's own
# chatter on the veth (IPv6 ND, MLD).
ok = all(r["encapsulated"] > 0 and r["encapsulated"] >= 0.95 * r["received"] for r in (own, pmd)) and ref["received"] > 0
sys.exit(0 if ok else 1)
PY
