#!/usr/bin/env bash
# Integration test: dpdk-dumpcap captures on lbd's port (net_ring_wire: the ethdev of
# the af_packet port on "wire"). Capture needs EAL's shared configuration and hugepages (a secondary process maps the primary's memory), so this
# test reserves hugepages, mounts a private hugetlbfs, and gives both back on exit.
#
# Usage: pdump_test.sh BUILD_DIR. Root.
set -uo pipefail
export LB_BUILD=$(cd "$1" && pwd)
export TOPO="lbp$$" TOPO_DIR="/tmp/lb-pdump-$$"
source "$(dirname "$0")/topology.sh"

huge=$TOPO_DIR/huge
pages_before=$(cat /proc/sys/vm/nr_hugepages)
finish() {
  [ "$failed" -ne 0 ] && tail -30 "$TOPO_DIR/lbd.log" 2>/dev/null
  topo_down
  umount "$huge" 2>/dev/null
  echo "$pages_before" >/proc/sys/vm/nr_hugepages
  rm -rf "$TOPO_DIR"
}
trap finish EXIT

mkdir -p "$huge"
echo $((pages_before + 256)) >/proc/sys/vm/nr_hugepages
mount -t hugetlbfs -o pagesize=2M nodev "$huge" || { echo "cannot mount hugetlbfs"; exit 1; }
export LBD_EAL_MEMORY="-m 256 --huge-dir=$huge"

topo_up || exit 1
start_lbd || exit 1
start_backend 1 || exit 1
lbctl service add "$VIP_DNS:53/udp" --backend 10.92.1.2 >/dev/null

timeout 30 dpdk-dumpcap --file-prefix="$TOPO" -i net_ring_wire -f "host $VIP_DNS" -c 6 \
  -w "$TOPO_DIR/capture.pcapng" \
  >"$TOPO_DIR/dumpcap.log" 2>&1 &
capture=$!
sleep 2
for _ in $(seq 10); do nsx client dig +short +tries=1 +time=1 "@$VIP_DNS" whoami.test >/dev/null; done
wait "$capture"
check "dpdk-dumpcap attached to lbd and stopped after 6 packets" test $? -eq 0
# Enhanced packet blocks, and how many of them carry the DNS VIP (10.100.0.10).
read -r blocks vip_packets < <(python3 - "$TOPO_DIR/capture.pcapng" <<'PY'
import struct, sys
data = open(sys.argv[1], "rb").read()
off, packets, vip = 0, 0, 0
while off + 8 <= len(data):
    kind, length = struct.unpack_from("<II", data, off)
    if kind == 6:  # enhanced packet block
        packets += 1
        vip += bytes([10, 100, 0, 10]) in data[off:off + length]
    off += max(length, 12)
print(packets, vip)
PY
)
check "the capture holds at least 6 packets (${blocks:-0})" test "${blocks:-0}" -ge 6
check "every captured packet is the VIP's, as filtered (${vip_packets:-0})" test "${vip_packets:-0}" -eq "${blocks:-0}"
check "lbd still healthy after the capture" lbctl health

check_summary
