#!/usr/bin/env python3
"""Writes the seed corpus of a fuzz target, so that mutation starts from real structure:
for worker_fuzz (the default) one well-formed frame of each kind its configuration
handles (see worker_fuzz.cc); for offload_fuzz frames as an AF_PACKET socket hands them
on (a virtio_net_hdr, a VLAN tag, the frame: see offload_fuzz.cc); for k8s_objects_fuzz a Service, an EndpointSlice, a Pod and
a Lease as the API server sends them; for bird_config_fuzz node configurations of lb-bird-gen.
Standard library only. Usage: make_seeds.py DIR [TARGET]"""
import json
import os
import socket
import struct
import sys


def csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ipv4(src, dst, proto, payload, flags=0x4000, ttl=64):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, flags, ttl, proto, 0,
                    socket.inet_aton(src), socket.inet_aton(dst))
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    return h + payload


def ipv6(src, dst, nh, payload, hop=64):
    return struct.pack("!IHBB16s16s", 6 << 28, len(payload), nh, hop,
                       socket.inet_pton(socket.AF_INET6, src),
                       socket.inet_pton(socket.AF_INET6, dst)) + payload


def tcp(sport, dport, flags):
    return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, flags, 65535, 0, 0)


def udp(sport, dport, payload=b"seed"):
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def icmp(t, code, rest=0, body=b""):
    return struct.pack("!BBHI", t, code, 0, rest) + body


def ether(payload, ethertype=0x0800, vlan=None):
    head = bytes.fromhex("0200000000aa0200000000 01".replace(" ", ""))
    if vlan is not None:
        head += struct.pack("!HH", 0x8100, vlan)
    return head + struct.pack("!H", ethertype) + payload


K8S_SEEDS = {
    "service_lb": {"apiVersion": "v1", "kind": "Service",
                   "metadata": {"name": "dns", "namespace": "default", "resourceVersion": "7",
                                "creationTimestamp": "2026-01-01T00:00:00Z",
                                "annotations": {"lbd.io/forwarding-mode": "nat", "lbd.io/maglev-table-size": "4093"}},
                   "spec": {"type": "LoadBalancer", "loadBalancerClass": "lbd.io/dpdk-l4",
                            "externalIPs": ["10.1.0.3"], "ipFamilies": ["IPv4"],
                            "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": "dns"}]},
                   "status": {"loadBalancer": {"ingress": [{"ip": "10.1.0.1"}]}}},
    "slice": {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
              "metadata": {"name": "dns-a", "namespace": "default",
                           "labels": {"kubernetes.io/service-name": "dns",
                                      "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
              "endpoints": [{"addresses": ["10.244.0.1"], "conditions": {"ready": True, "serving": True},
                             "nodeName": "node-1",
                             "targetRef": {"kind": "Pod", "namespace": "default", "name": "dns-1"}}],
              "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]},
    "pod": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "dns-1", "namespace": "default"},
            "spec": {"nodeName": "node-1", "hostNetwork": False},
            "status": {"podIP": "10.244.0.1", "podIPs": [{"ip": "10.244.0.1"}, {"ip": "fd00:244::1"}]}},
    "lease": {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
              "metadata": {"name": "lb-dsr-node-node-1", "namespace": "lb-system"},
              "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 30,
                       "renewTime": "2026-12-07T10:00:00.000000Z"}},
}

BIRD_SEEDS = {
    "basic": "router_id: 10.90.0.2\nlocal_as: 65010\nvip_prefixes: [10.100.0.0/24]\n"
             "peers: [{name: tor, address: 10.90.0.1, as: 65000}]\n",
    "full": "router_id: 10.90.0.2\nlocal_as: 65010\ninterface: lb0\n"
            "vip_prefixes: [10.100.0.0/24, {prefix: 10.100.0.0/23, prepend: 2}, 'fd00:100::/64']\n"
            "communities: ['65010:100']\nlocal_pref: 200\ngraceful_restart: false\n"
            "bfd: {min_rx_ms: 100, min_tx_ms: 100, multiplier: 3}\n"
            "peers: [{name: tor, address: 10.90.0.1, as: 65000, password: x, multihop: 2, local_address: 10.90.0.2},\n"
            "        {name: tor6, address: 'fd00::1', as: 65000, password_file: /s}]\n",
}


def write_seeds(out_dir, seeds):
    os.makedirs(out_dir, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(out_dir, name), "wb") as f:
            f.write(data)


def main(out_dir, target="worker_fuzz"):
    if target == "k8s_objects_fuzz":
        write_seeds(out_dir, {k: json.dumps(v).encode() for k, v in K8S_SEEDS.items()})
        return
    if target == "offload_fuzz":
        def vnet(flags=0, gso_type=0, gso_size=0, csum_start=0, csum_offset=0, vlan=None):
            tag = struct.pack("!BH", 1, vlan) if vlan is not None else b"\0\0\0"
            return struct.pack("<BBHHHH", flags, gso_type, 0, gso_size, csum_start, csum_offset) + tag
        bulk = bytes(range(256)) * 5
        v6 = ("2001:db8::1", "2001:db8::10")
        write_seeds(out_dir, {
            "plain": vnet() + ether(ipv4("192.0.2.1", "10.1.0.10", 17, udp(1, 53))),
            "partial_udp": vnet(1, 0, 0, 34, 6) + ether(ipv4("192.0.2.1", "10.1.0.10", 17, udp(1, 53))),
            "gso_tcp4": vnet(1, 1, 500, 34, 16) + ether(ipv4("192.0.2.1", "10.1.0.10", 6, tcp(1, 80, 0x18) + bulk)),
            "gso_tcp4_vlan": vnet(1, 0x81, 400, 34, 16, vlan=7) +
                             ether(ipv4("192.0.2.1", "10.1.0.10", 6, tcp(1, 80, 0x99) + bulk)),
            "gso_tcp6": vnet(1, 4, 600, 54, 16) + ether(ipv6(*v6, 6, tcp(1, 80, 0x10) + bulk), 0x86DD),
            "gso_udp4": vnet(1, 5, 300, 34, 6) + ether(ipv4("192.0.2.1", "10.1.0.10", 17, udp(1, 443, bulk))),
        })
        return
    if target == "bird_config_fuzz":
        write_seeds(out_dir, {k: v.encode() for k, v in BIRD_SEEDS.items()})
        return
    if target == "flow_sync_fuzz":
        # Datagrams before their tags (flow_sync_fuzz.cc), the receiver's clock at 1.7e15 us.
        start = 1_700_000_000_000_000

        def body(kind, stamp, records=b"", count=0):
            return b"LBFS" + struct.pack("!BBHQ", 2, kind, count, stamp) + records

        def entry(datagram, tagged=True, advance=0):
            return struct.pack("!BH", (advance << 1) | int(tagged), len(datagram)) + datagram

        a = socket.inet_aton
        flow4 = struct.pack("!BBBBHHHH", 0, 6, 2, 0, 40000, 80, 0, 0) + a("192.0.2.1") + a("10.100.0.10") + a("10.92.1.2")
        nat4 = struct.pack("!BBBBHHHH", 4, 17, 0, 0, 5353, 53, 53, 1024) + a("192.0.2.1") + a("10.100.0.10") + \
            a("10.92.1.2") + a("10.93.0.2")
        v6 = socket.inet_pton(socket.AF_INET6, "2001:db8::1")
        flow6 = struct.pack("!BBBBHHHH", 3, 6, 2, 0, 1, 443, 8443, 0) + v6 + v6 + v6
        flows = body(1, start, flow4 + nat4 + flow6, 3)
        write_seeds(out_dir, {
            "flows": entry(flows),
            "flows_replayed": entry(flows) + entry(flows, advance=3),
            "dump_request": entry(body(2, start - 1_000_000)),
            "stale_then_fresh": entry(body(1, start - 9_000_000, flow4, 1)) + entry(body(1, start + 1, flow4, 1)),
            "untagged": entry(flows + bytes(8), tagged=False),
        })
        return
    os.makedirs(out_dir, exist_ok=True)
    reply = ipv4("10.1.0.10", "192.0.2.1", 6, tcp(80, 1234, 0x12))
    seeds = {
        "v4_tcp_syn": ether(ipv4("192.0.2.1", "10.1.0.10", 6, tcp(1234, 80, 0x02))),
        "v4_udp_dns_vlan": ether(ipv4("192.0.2.1", "10.1.0.10", 17, udp(5353, 53)), vlan=7),
        "v4_udp_other_port": ether(ipv4("192.0.2.1", "10.1.0.10", 17, udp(5353, 99))),
        "v4_echo": ether(ipv4("192.0.2.1", "10.1.0.10", 1, icmp(8, 0, 0x10001))),
        "v4_frag_needed": ether(ipv4("198.51.100.1", "10.1.0.10", 1, icmp(3, 4, 1400, reply[:28]))),
        "v4_fragment": ether(ipv4("192.0.2.1", "10.1.0.10", 17, b"x" * 16, flags=0x0003)),
        "v4_big": ether(ipv4("192.0.2.1", "10.1.0.10", 6, tcp(1, 80, 0x10) + b"z" * 1460)),
        "v6_tcp": ether(ipv6("2001:db8::1", "2001:db8::10", 6, tcp(1234, 80, 0x10)), 0x86DD),
        "v6_udp_hbh": ether(ipv6("2001:db8::1", "2001:db8::10", 0,
                                 bytes([17, 0, 1, 4, 0, 0, 0, 0]) + udp(1, 53)), 0x86DD),
        "v6_echo": ether(ipv6("2001:db8::1", "2001:db8::10", 58, icmp(128, 0, 1)), 0x86DD),
        "arp": ether(bytes(28), 0x0806),
        # NAT: a connection to the NAT VIP, a reply to the SNAT address, an error about it.
        "nat_v4_syn": ether(ipv4("192.0.2.1", "10.1.0.20", 6, tcp(1234, 80, 0x02))),
        "nat_v4_reply": ether(ipv4("192.168.2.1", "10.254.0.1", 6, tcp(8080, 1024, 0x12))),
        "nat_v4_udp": ether(ipv4("192.0.2.1", "10.1.0.20", 17, udp(5353, 53))),
        "nat_v6_udp": ether(ipv6("2001:db8::1", "2001:db8::20", 17, udp(5353, 53)), 0x86DD),
        "nat_v4_frag_needed": ether(ipv4("198.51.100.1", "10.254.0.1", 1,
                                         icmp(3, 4, 1400, ipv4("10.254.0.1", "192.168.2.1", 6,
                                                               tcp(1024, 8080, 0x10))[:28]))),
        # Odd lengths: adopted sessions (AdoptSessionOf), both sides, and a peer's SNAT address.
        "adopted_client": ether(ipv4("192.0.2.1", "10.1.0.20", 6, tcp(1234, 80, 0x10) + b"x")),
        "adopted_reply": ether(ipv4("192.168.2.1", "10.254.0.2", 6, tcp(8080, 1100, 0x10) + b"x")),
        "adopted_own_reply": ether(ipv4("192.168.2.2", "10.254.0.1", 17, udp(53, 1030, b"seed!"))),
        "adopted_error": ether(ipv4("192.168.2.1", "10.254.0.2", 1,
                                    icmp(3, 3, 0, ipv4("10.254.0.2", "192.168.2.1", 6, tcp(1100, 8080, 0x10))[:28] + b"x"))),
        # The exception path: BGP and BFD to the node, and an unused VIP of the CIDR.
        "bgp": ether(ipv4("192.0.2.254", "192.0.2.10", 6, tcp(179, 40000, 0x10), ttl=255)),
        "bgp_off_link": ether(ipv4("192.0.2.254", "192.0.2.10", 6, tcp(179, 40000, 0x10))),
        "bfd": ether(ipv4("192.0.2.254", "192.0.2.10", 17, udp(49152, 3784), ttl=255)),
        "nd": ether(ipv6("fe80::1", "ff02::1:ff00:10", 58, icmp(135, 0, 0), hop=255), 0x86DD),
        "unused_vip": ether(ipv4("192.0.2.1", "10.1.0.99", 17, udp(1, 53))),
    }
    write_seeds(out_dir, seeds)


if __name__ == "__main__":
    main(*sys.argv[1:3])
