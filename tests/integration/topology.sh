# A load-balancing topology in network namespaces, sourced by tests and tools/demo.
#
#   client 10.91.0.2 --- tor (router) --- bridge 10.90.0.1/24 --+-- lb: lbd on net_af_packet
#                         |                                      |   over veth "wire", two workers;
#                         |                                      |   kernel interface lb0 = 10.90.0.2
#                         |                                      +-- b4 10.90.0.5 (on the LB's segment)
#                         +--- bN 10.92.N.2 (N = 1..3)
# Every backend: `lb-dsr-node attach` (the dsr_decap tc BPF program on eth0 for IPIP and
# GUE, the VIPs on lo), dnsmasq on VIP:53, socat on VIP:80.
# The tor routes the VIP range 10.100.0.0/24 to 10.90.0.2, as BGP would install it.
# Backends answer clients directly (DSR). Only addresses inside these namespaces are used.
#
# Set before sourcing: TOPO (unique prefix of namespace names), TOPO_DIR (work directory,
# created), LB_BUILD (meson build directory); optionally LBD_EAL_MEMORY (EAL memory
# options of lbd, default "--no-huge -m 512 --no-shconf"), LBD_AF_PACKET_ARGS (appended
# to the net_af_packet devargs, e.g. ",framecnt=16384"). topo_down removes everything
# topo_up made.

TOPO_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOPO_NAMESPACES=(tor lb client b1 b2 b3 b4)
VIP_DNS=10.100.0.10
VIP_GUE=10.100.0.11

# Test checks: `check DESCRIPTION COMMAND...` prints ok/FAIL and counts; check_summary
# prints "N passed, N failed" and fails when any check did.
passed=0
failed=0
check() {
  local what=$1
  shift
  if "$@"; then
    echo "ok   - $what"
    passed=$((passed + 1))
  else
    echo "FAIL - $what"
    failed=$((failed + 1))
  fi
}
check_summary() {
  echo
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}

nsx() {  # nsx NS COMMAND...: run in the topology's namespace NS
  local ns=$1
  shift
  ip netns exec "$TOPO-$ns" "$@"
}

lbctl() { "$LB_BUILD/tools/lbctl" --socket "$TOPO_DIR/lbd.sock" "$@"; }
lb_event() {  # lb_event NAME: lbd's event counter NAME, summed over the workers
  lbctl stats -o json | python3 -c 'import json,sys; print(sum(int(c["value"]) for c in json.load(sys.stdin)["events"] if c["name"] == sys.argv[1]))' "$1"
}
upload_ok() {  # upload_ok RESULT SECONDS: upload.py's RESULT answered every line within SECONDS
  python3 -c 'import json,sys; r=json.loads(sys.argv[1]); sys.exit(not (r["answered"] == r["lines"] and r["seconds"] < float(sys.argv[2])))' "$1" "$2"
}

topo_bg() {  # topo_bg NAME NS COMMAND...: background process, logged, killed by topo_down
  local name=$1 ns=$2
  shift 2
  # exec: the recorded pid is the process itself (ip netns exec execs the command too).
  (exec ip netns exec "$TOPO-$ns" "$@") >"$TOPO_DIR/$name.log" 2>&1 &
  echo $! >>"$TOPO_DIR/pids"
}

topo_wait() {  # topo_wait SECONDS COMMAND...: until COMMAND succeeds
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -ge $deadline ] && return 1
    sleep 0.2
  done
}

topo_link() {  # topo_link NS_A IF_A NS_B IF_B: a veth pair, with the kernel's default offloads
  ip link add "$2" netns "$TOPO-$1" type veth peer name "$4" netns "$TOPO-$3"
  nsx "$1" ip link set "$2" up
  nsx "$3" ip link set "$4" up
}

topo_namespaces() {  # TOPO_DIR, its pids file, and each namespace of TOPO_NAMESPACES (lo up)
  mkdir -p "$TOPO_DIR"
  : >"$TOPO_DIR/pids"
  local ns
  for ns in "${TOPO_NAMESPACES[@]}"; do
    ip netns add "$TOPO-$ns"
    nsx "$ns" ip link set lo up
    # Set, never inherited: a new namespace copies the host's value, which other software
    # changes. Routers and LB nodes (every Kubernetes node) turn it on themselves.
    nsx "$ns" sysctl -qw net.ipv4.ip_forward=0
  done
}

topo_up() {
  topo_namespaces
  nsx lb sysctl -qw net.ipv4.ip_forward=1  # as on a Kubernetes node: lbd keeps the kernel off "wire"
  topo_link tor tor-lb lb wire
  topo_link tor tor-b4 b4 eth0
  nsx tor ip link add br-lb type bridge
  nsx tor ip link set tor-lb master br-lb
  nsx tor ip link set tor-b4 master br-lb
  nsx tor ip link set br-lb up
  topo_link tor tor-cl client eth0
  nsx tor sysctl -qw net.ipv4.ip_forward=1
  nsx tor ip addr add 10.90.0.1/24 dev br-lb
  nsx tor ip addr add 10.91.0.1/24 dev tor-cl
  nsx tor ip route add 10.100.0.0/24 via 10.90.0.2
  nsx client ip addr add 10.91.0.2/24 dev eth0
  nsx client ip route add default via 10.91.0.1
  for n in 1 2 3; do
    topo_link tor "tor-b$n" "b$n" eth0
    nsx tor ip addr add "10.92.$n.1/24" dev "tor-b$n"
    nsx "b$n" ip addr add "10.92.$n.2/24" dev eth0
    nsx "b$n" ip route add default via "10.92.$n.1"
  done
  nsx b4 ip addr add 10.90.0.5/24 dev eth0
  nsx b4 ip route add default via 10.90.0.1
}

start_lbd() {  # start_lbd [extra lbd flags]
  # Two workers (lcores 1 and 2 share the second CPU; idle back-off keeps that cheap), so
  # that RSS over several queues is exercised.
  # shellcheck disable=SC2086 # LBD_EAL_MEMORY is a list of options
  topo_bg lbd lb "$LB_BUILD/control/lbd/lbd" --lcores=0@0,1@1,2@1 ${LBD_EAL_MEMORY:---no-huge -m 512 --no-shconf} \
    --no-pci --file-prefix="$TOPO" --log-level=lib.eal:warning -- \
    --port=af_packet:wire --tap=lb0 --gateway=10.90.0.1 --encap_source_v4=10.90.0.2/32 \
    --idle_polls=200 --idle_sleep_us=500 --api_socket="$TOPO_DIR/lbd.sock" --vip_cidrs=10.100.0.0/24 \
    --tap_addresses=10.90.0.2/24 --control_peers=none "$@"
  topo_wait 30 sh -c "ip netns exec '$TOPO-lb' ip -br addr show lb0 | grep -q ' 10.90.0.2/24'" ||
    { echo "lbd did not bring up lb0 with 10.90.0.2/24"; cat "$TOPO_DIR/lbd.log"; return 1; }
  nsx lb ip route add default via 10.90.0.1 dev lb0
  topo_wait 30 lbctl health || { echo "lbd did not become healthy"; lbctl health; cat "$TOPO_DIR/lbd.log"; return 1; }
}

backend_decapsulates() {  # backend_decapsulates N VIP...: bN's eth0 decapsulates exactly these VIPs (IPIP, GUE)
  local n=$1
  shift
  local IFS=,
  nsx "b$n" "$LB_BUILD/control/dsr_node/lb-dsr-node" attach --interface=eth0 --vips="$*" --gue_port=6080 >/dev/null
}

start_backend() {  # start_backend N [VIP...]: DNS on every VIP (default $VIP_DNS $VIP_GUE), TCP 80 on the first
  # With BACKEND_DECAP=agent: a stock pod instead (servers on the wildcard address, no
  # VIP, no decapsulation): lb-dsr-node's agent is to make it decapsulate.
  local n=$1
  shift
  if [ "${BACKEND_DECAP:-attach}" = agent ]; then
    start_stock_backend "$n"
    return
  fi
  local vips=("$@")
  [ ${#vips[@]} -eq 0 ] && vips=("$VIP_DNS" "$VIP_GUE")
  local listen=() vip
  for vip in "${vips[@]}"; do listen+=(--listen-address="$vip"); done
  backend_decapsulates "$n" "${vips[@]}" || return 1
  topo_bg "dns-b$n" "b$n" dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts \
    --bind-interfaces "${listen[@]}" --user=root \
    --pid-file="$TOPO_DIR/dnsmasq-b$n.pid" --host-record="whoami.test,10.200.0.$n" --log-facility=-
  # A TCP server from Debian's packages: answers each line with the backend's name.
  topo_bg "tcp-b$n" "b$n" socat "TCP-LISTEN:80,bind=${vips[0]},fork,reuseaddr" "EXEC:sed -u s/.*/b$n/"
  topo_wait 10 sh -c "ip netns exec '$TOPO-b$n' ss -Hltn 'sport = :80' | grep -q ." || { cat "$TOPO_DIR/tcp-b$n.log"; return 1; }
  topo_wait 10 nsx "b$n" dig +short +tries=1 +time=1 "@${vips[0]}" whoami.test || { cat "$TOPO_DIR/dns-b$n.log"; return 1; }
}

start_stock_backend() {  # start_stock_backend N: dnsmasq and the TCP line server on bN's wildcard address
  local n=$1
  topo_bg "dns-b$n" "b$n" dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts --user=root \
    --pid-file="$TOPO_DIR/dnsmasq-b$n.pid" --host-record="whoami.test,10.200.0.$n" --log-facility=-
  topo_bg "tcp-b$n" "b$n" socat TCP-LISTEN:80,fork,reuseaddr "EXEC:sed -u s/.*/b$n/"
  topo_wait 10 sh -c "ip netns exec '$TOPO-b$n' ss -Hltn 'sport = :80' | grep -q ." || { cat "$TOPO_DIR/tcp-b$n.log"; return 1; }
  topo_wait 10 nsx "b$n" dig +short +tries=1 +time=1 @127.0.0.1 whoami.test || { cat "$TOPO_DIR/dns-b$n.log"; return 1; }
}

topo_down() {  # safe under set -e: every step may find its target gone already
  if [ -f "$TOPO_DIR/pids" ]; then
    # Gracefully first (SIGTERM), so that lbd releases its ports; then by force.
    while read -r pid; do kill -TERM "$pid" 2>/dev/null || true; done <"$TOPO_DIR/pids"
    local deadline=$((SECONDS + 10))
    while read -r pid; do
      while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    done <"$TOPO_DIR/pids"
  fi
  # Whatever still runs inside a namespace (a child the pids file missed) goes too.
  local ns left
  for ns in "${TOPO_NAMESPACES[@]}"; do
    left=$(ip netns pids "$TOPO-$ns" 2>/dev/null || true)
    if [ -n "$left" ]; then kill -KILL $left 2>/dev/null || true; fi
    ip netns del "$TOPO-$ns" 2>/dev/null || true
  done
  rm -rf "/var/run/dpdk/$TOPO" "/var/run/dpdk/$TOPO"-*  # lbd's EAL runtime directories
  rmdir /var/run/dpdk 2>/dev/null || true  # and their parent, when no one else has one there
  return 0
}
