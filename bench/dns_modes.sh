#!/usr/bin/env bash
# DNS through lbd by forwarding mode, against the same backend queried directly, in one
# run: dnsperf (Debian's) from the client namespace of tests/integration/topology.sh to
#   direct   the backend pod's own address (10.92.1.2), no lbd on the path: the reference;
#   dsr      a DSR-IPIP VIP, decapsulated in the pod by lb-dsr-node's tc BPF program (the
#            program the agent loads; `lb-dsr-node attach` here, no API server needed);
#   nat      a NAT VIP to the same pod (lbd's SNAT; the pod sees lbd's address).
# The pod runs a stock dnsmasq on its wildcard address. Rounds are interleaved (direct,
# dsr, nat, direct, ...); each prints dnsperf's queries/s and mean latency, and the end
# prints each mode's median and its ratio to direct's. Everything shares the machine's
# cores (dnsperf, dnsmasq, lbd with its idle back-off, the kernel's veths): the figures
# compare the modes' costs on one machine, they are not line rate. Root.
#
#   bench/dns_modes.sh BUILD_DIR [SECONDS] [ROUNDS]     (defaults 5 s, 3 rounds)
set -uo pipefail
export LB_BUILD=$(cd "$1" && pwd)
SECONDS_PER_RUN=${2:-5}
ROUNDS=${3:-3}
export TOPO="lbdm$$" TOPO_DIR="/tmp/lb-dns-modes-$$"
source "$(dirname "$0")/../tests/integration/topology.sh"
trap 'topo_down; rm -rf "$TOPO_DIR"' EXIT
VIP_NAT=10.100.0.12

topo_up
nsx tor ip route add 10.101.0.1/32 via 10.90.0.2  # lbd's SNAT address
start_lbd --snat_addresses=10.101.0.1 --snat_ports=1024-65535 >/dev/null || exit 1
backend_decapsulates 1 "$VIP_DNS" || exit 1
topo_bg dns-b1 b1 dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts --user=root \
  --pid-file="$TOPO_DIR/dnsmasq-b1.pid" --host-record=whoami.test,10.200.0.1 --log-facility=- --dns-forward-max=1000 \
  --cache-size=1000
lbctl service add "$VIP_DNS:53/udp" --mode dsr-ipip --backend 10.92.1.2 >/dev/null
lbctl service add "$VIP_NAT:53/udp" --mode nat --backend 10.92.1.2 >/dev/null
echo "whoami.test A" >"$TOPO_DIR/queries"
for target in 10.92.1.2 "$VIP_DNS" "$VIP_NAT"; do
  topo_wait 10 nsx client dig +short +tries=1 +time=1 "@$target" whoami.test || { echo "no answer from $target"; exit 1; }
done

run() {  # run TARGET: "QPS LATENCY_MS LOST" from one dnsperf run
  nsx client dnsperf -s "$1" -d "$TOPO_DIR/queries" -l "$SECONDS_PER_RUN" -c 4 -q 64 -t 2 2>&1 |
    awk '/Queries per second:/ {q=$4} /Average Latency \(s\):/ {l=$4*1000} /Queries lost:/ {lost=$3}
         END {printf "%.0f %.3f %s\n", q, l, lost}'
}
declare -A qps latency
for round in $(seq "$ROUNDS"); do
  for mode in direct dsr nat; do
    case $mode in direct) target=10.92.1.2 ;; dsr) target=$VIP_DNS ;; nat) target=$VIP_NAT ;; esac
    read -r q l lost < <(run "$target")
    printf 'round %d %-6s %8s queries/s  %7s ms mean latency  %s lost\n' "$round" "$mode" "$q" "$l" "$lost"
    qps[$mode]+="$q "
    latency[$mode]+="$l "
  done
done
median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
direct=$(echo "${qps[direct]}" | median)
echo
for mode in direct dsr nat; do
  q=$(echo "${qps[$mode]}" | median)
  l=$(echo "${latency[$mode]}" | median)
  printf '%-6s median %8s queries/s (%.2f of direct)  %7s ms mean latency\n' "$mode" "$q" \
    "$(awk -v a="$q" -v b="$direct" 'BEGIN {print (b > 0) ? a / b : 0}')" "$l"
done
[ "${direct%.*}" -gt 0 ]
