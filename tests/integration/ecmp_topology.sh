# The seed's topology, sourced by bgp_test.sh and scale_test.sh after topology.sh:
#
#   client 10.91.0.2 -- tor: BIRD (AS 65000), BFD, kernel ECMP ("merge paths")
#                        |   bridge 10.90.0.1/24 --+-- lb1: lbd (lb0 = 10.90.0.2) + BIRD + lb-bird-gen
#                        |                         +-- lb2: lbd (lb0 = 10.90.0.3) + BIRD + lb-bird-gen
#                        +-- b1 .. bN: backends (dnsmasq; lb-dsr-node's tc BPF decapsulation)
#
# The LB nodes share their flows (flow sync, --flow_sync_peers; FLOW_SYNC=0: not) and one
# flow-hash secret. With ECMP_NAT=1 node N also has the SNAT address 10.93.0.N, which it
# announces, and the other node's, which it announces as a backup (AS path prepended);
# --vip_cidrs covers them all, so that a packet to the other's address that is for no
# session it adopted is dropped, not handed to its kernel (which would route it back to
# the ToR, and the ToR back to the node).
# The LB nodes announce 10.100.0.0/24 (AS 65010) over BGP and BFD (100 ms x 3 on both
# ends) on lbd's exception interface, so a node whose lbd dies, or whose exception path
# stalls, loses its sessions within the BFD detection time.
#
# Set TOPO_NAMESPACES=(tor client lb1 lb2 b1 b2) before sourcing (and ECMP_BACKENDS=N
# for N backends, default 2, each bN in TOPO_NAMESPACES; LBD_EXTRA_FLAGS for both lbds);
# ecmp_up builds it all.

lbctl_on() { local n=$1; shift; "$LB_BUILD/tools/lbctl" --socket "$TOPO_DIR/lb$n/lbd.sock" "$@"; }
next_hops() { nsx tor ip route show 10.100.0.0/24 2>/dev/null | grep -o 'via 10\.90\.0\.[0-9]*' | sort -u | wc -l; }
has_next_hops() { [ "$(next_hops)" -eq "$1" ]; }  # evaluated on every try of topo_wait
tor_birdc() { nsx tor birdc -s "$TOPO_DIR/tor.ctl" "$@"; }

flow_sync_flags() {  # both nodes, each with its SNAT address under ECMP_NAT=1
  [ "${FLOW_SYNC:-1}" = 1 ] || return 0
  if [ "${ECMP_NAT:-0}" = 1 ]; then
    echo "--flow_sync_peers=10.90.0.2=10.93.0.1,10.90.0.3=10.93.0.2 --flow_sync_refresh_ms=2000"
  else
    echo "--flow_sync_peers=10.90.0.2,10.90.0.3 --flow_sync_refresh_ms=2000"
  fi
}

start_lbd_on() {  # start_lbd_on N: lbd on node N, its lb0 address, until healthy
  local n=$1
  # The cluster's flow-hash secret: one for both nodes, so that they pick alike. lbd's VIP
  # CIDR is wider than the /24 BIRD announces: scale_test loads services from 10.100.1.0 up.
  [ -s "$TOPO_DIR/flow-hash.secret" ] || (umask 077 && head -c 32 /dev/urandom | base64 >"$TOPO_DIR/flow-hash.secret")
  topo_bg "lbd-lb$n" "lb$n" "$LB_BUILD/control/lbd/lbd" -l 0-1 --no-huge -m 256 --no-shconf --no-pci \
    --file-prefix="$TOPO-lb$n" --log-level=lib.eal:warning -- \
    --port=af_packet:wire --gateway=10.90.0.1 --encap_source_v4="10.90.0.$((n + 1))/32" \
    --idle_polls=200 --idle_sleep_us=500 --api_socket="$TOPO_DIR/lb$n/lbd.sock" --vip_cidrs="10.100.0.0/16$([ "${ECMP_NAT:-0}" = 1 ] && echo ,10.93.0.0/24)" \
    --flow_hash_secret_file="$TOPO_DIR/flow-hash.secret" --control_peers=10.90.0.1 \
    $(flow_sync_flags) \
    $([ "${ECMP_NAT:-0}" = 1 ] && echo "--snat_addresses=10.93.0.$n") \
    --tap_addresses="10.90.0.$((n + 1))/24" --metrics_address=127.0.0.1:7310 ${LBD_EXTRA_FLAGS:-}
  topo_wait 30 sh -c "ip netns exec '$TOPO-lb$n' ip -br addr show lb0 | grep -q ' 10.90.0.$((n + 1))/24'" || return 1
  nsx "lb$n" ip route add default via 10.90.0.1 dev lb0 2>/dev/null
  topo_wait 30 lbctl_on "$n" health
}

ecmp_network() {  # the namespaces, links and addresses, and the ToR's BIRD
  topo_namespaces
  nsx tor ip link add br-lb type bridge
  nsx tor ip link set br-lb up
  nsx tor ip addr add 10.90.0.1/24 dev br-lb
  for n in 1 2; do
    topo_link tor "tor-lb$n" "lb$n" wire
    nsx tor ip link set "tor-lb$n" master br-lb
  done
  for n in $(seq 1 "${ECMP_BACKENDS:-2}"); do
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
  nsx lb1 sysctl -qw net.ipv4.ip_forward=1  # as on Kubernetes nodes
  nsx lb2 sysctl -qw net.ipv4.ip_forward=1

  cat >"$TOPO_DIR/tor.conf" <<BIRD
router id 10.90.0.1;
log stderr all;
protocol device { scan time 2; }
protocol bfd { interface "br-lb" { min rx interval 100 ms; min tx interval 100 ms; multiplier 3; }; }
protocol kernel { ipv4 { export all; import none; }; merge paths yes; }
template bgp lbnode {
  local 10.90.0.1 as 65000;
  direct;
  ttl security on;
  bfd on;
  connect retry time 2;
  error wait time 2, 16;
  ipv4 { import all; export none; };
}
protocol bgp lb1 from lbnode { neighbor 10.90.0.2 as 65010; }
protocol bgp lb2 from lbnode { neighbor 10.90.0.3 as 65010; }
BIRD
  topo_bg bird-tor tor bird -f -c "$TOPO_DIR/tor.conf" -s "$TOPO_DIR/tor.ctl" -P "$TOPO_DIR/tor.pid"
}

ecmp_apply_dns() {  # the DNS service on $VIP_DNS over b1 and b2, on both LB nodes
  cat >"$TOPO_DIR/services.yaml" <<YAML
services:
  - key: {vip: $VIP_DNS, protocol: UDP, port: 53}
    backends: [{address: 10.92.1.2}, {address: 10.92.2.2}]
YAML
  for n in 1 2; do lbctl_on "$n" apply -f "$TOPO_DIR/services.yaml" >/dev/null; done
}

ecmp_up() {  # ecmp_network, both LB nodes and both backends
  ecmp_network
  for n in 1 2; do
    mkdir -p "$TOPO_DIR/lb$n"
    start_lbd_on "$n" || { echo "lbd on lb$n did not start"; cat "$TOPO_DIR/lbd-lb$n.log"; return 1; }
    cat >"$TOPO_DIR/lb$n/node.yaml" <<YAML
router_id: 10.90.0.$((n + 1))
local_as: 65010
interface: lb0
vip_prefixes: [10.100.0.0/24$([ "${ECMP_NAT:-0}" = 1 ] && echo ", 10.93.0.$n/32, {prefix: 10.93.0.$((3 - n))/32, prepend: 2}")]
bfd: {min_rx_ms: 100, min_tx_ms: 100, multiplier: 3}
peers: [{name: tor, address: 10.90.0.1, as: 65000}]
YAML
    topo_bg "gen-lb$n" "lb$n" "$LB_BUILD/control/bird/lb-bird-gen" --config="$TOPO_DIR/lb$n/node.yaml" \
      --output="$TOPO_DIR/lb$n/bird.conf" --lbd_socket="$TOPO_DIR/lb$n/lbd.sock" \
      --birdc_socket="$TOPO_DIR/lb$n/bird.ctl" --interval_ms=300 --up_after=3 --down_after=2 \
      --listen_address=127.0.0.1:7312
    topo_wait 10 test -s "$TOPO_DIR/lb$n/bird.conf" || { cat "$TOPO_DIR/gen-lb$n.log"; return 1; }
    topo_bg "bird-lb$n" "lb$n" bird -f -c "$TOPO_DIR/lb$n/bird.conf" -s "$TOPO_DIR/lb$n/bird.ctl" \
      -P "$TOPO_DIR/lb$n/bird.pid"
  done
  for n in $(seq 1 "${ECMP_BACKENDS:-2}"); do start_backend "$n" || return 1; done
}
