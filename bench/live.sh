#!/usr/bin/env bash
# lbbench's live mode against a running lbd, with dpdk-testpmd (MAC swap forwarding) on
# the same virtual device as the same-run reference: lbbench in namespace "gen" sends over
# a veth pair to namespace "dut", where first testpmd and then lbd (a DSR-IPIP service for
# lbbench's VIP, its gateway MAC = lbbench's port, so every encapsulated packet comes
# back) forward what they get. Prints both runs and the ratio. Root.
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
pkill -TERM -f "file-prefix=$TOPO-dut" 2>/dev/null
topo_wait 10 sh -c "! pgrep -f 'file-prefix=$TOPO-dut' >/dev/null"

# lbd: one worker, a DSR-IPIP service for lbbench's VIP (10.1.0.0:53/udp) with 16 backends.
idle="--idle_polls=200 --idle_sleep_us=50"
[ "${LIVE_BUSY_POLL:-0}" = 1 ] && idle=""
# shellcheck disable=SC2086
topo_bg lbd dut "$LB_BUILD/control/lbd/lbd" --lcores=0@0,1@1 $eal_mem --file-prefix="$TOPO-dut" --no-telemetry \
  --vdev=net_af_packet0,iface=dut0 -- --port=net_af_packet0 --tap=lb0 --gateway_mac="$gen_mac" \
  --encap_source_v4=10.255.0.0/24 --api_socket="$TOPO_DIR/lbd.sock" $idle
topo_wait 30 lbctl health || { echo "lbd did not become healthy"; cat "$TOPO_DIR/lbd.log"; exit 1; }
backends=()
for b in $(seq 0 15); do backends+=(--backend "10.2.0.$b"); done
lbctl service add 10.1.0.0:53/udp "${backends[@]}" >/dev/null
measured=$(lbbench) || { echo "lbbench failed"; exit 1; }

python3 - "$reference" "$measured" <<'PY'
import json, sys
ref, lbd = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print("lbbench live, %d flows, %.1f s per run, net_af_packet over a veth pair" % (lbd["flows"], lbd["seconds"]))
print("%-22s %10s %10s %12s %8s %8s %7s" % ("device under test", "sent", "received", "encapsulated", "tx-Mpps", "rx-Mpps", "loss%"))
for name, r in (("dpdk-testpmd macswap", ref), ("lbd (DSR-IPIP)", lbd)):
    print("%-22s %10d %10d %12d %8.3f %8.3f %7.2f" % (name, r["sent"], r["received"], r["encapsulated"], r["tx_mpps"], r["rx_mpps"], r["loss_percent"]))
ratio = lbd["rx_mpps"] / ref["rx_mpps"] if ref["rx_mpps"] else 0
print("ratio (lbd rx / reference rx): %.2f" % ratio)
print(json.dumps({"reference": ref, "lbd": lbd, "ratio": round(ratio, 3)}))
# What comes back is lbd's encapsulated output, plus at most a little of the kernel's own
# chatter on the veth (IPv6 ND, MLD).
ok = lbd["encapsulated"] > 0 and lbd["encapsulated"] >= 0.95 * lbd["received"] and ref["received"] > 0
sys.exit(0 if ok else 1)
PY
