#!/usr/bin/env python3
"""Sends one tunnelled UDP datagram as lbd would encapsulate it, as a raw Ethernet frame
(AF_PACKET) out of IFACE to DST_MAC, for tests of the backends' decapsulation where lbd
does not go (IPv6). Standard library only (the fuzz seeds' packet builders).

    tunnel_probe.py IFACE DST_MAC MODE OUTER_SRC OUTER_DST INNER_SRC VIP PORT PAYLOAD

MODE: ipip, gue4 (outer IPv4), ip6ip6, gue6 (outer IPv6); the inner packet is of the
outer's family (UDP from INNER_SRC:40000 to VIP:PORT, with its checksum). GUE: UDP to
port 6080, a version 0 header.
"""
import socket
import struct
import sys
import os

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fuzz"))
from make_seeds import csum, ipv4, ipv6  # noqa: E402

GUE_PORT = 6080


def udp_with_checksum(src, dst, sport, dport, payload, v6):
    length = 8 + len(payload)
    header = struct.pack("!HHHH", sport, dport, length, 0)
    if v6:
        pseudo = socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst) + \
            struct.pack("!IxxxB", length, 17)
    else:
        pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!xBH", 17, length)
    c = csum(pseudo + header + payload) or 0xFFFF
    return struct.pack("!HHHH", sport, dport, length, c) + payload


def main(iface, dst_mac, mode, outer_src, outer_dst, inner_src, vip, port, payload):
    v6 = mode in ("ip6ip6", "gue6")
    inner_l4 = udp_with_checksum(inner_src, vip, 40000, int(port), payload.encode(), v6)
    inner = ipv6(inner_src, vip, 17, inner_l4) if v6 else ipv4(inner_src, vip, 17, inner_l4)
    inner_proto = 41 if v6 else 4
    if mode.startswith("gue"):
        gue = struct.pack("!BBH", 0, inner_proto, 0) + inner
        outer_l4 = udp_with_checksum(outer_src, outer_dst, 51234, GUE_PORT, gue, v6)
        outer = ipv6(outer_src, outer_dst, 17, outer_l4) if v6 else ipv4(outer_src, outer_dst, 17, outer_l4)
    else:
        outer = ipv6(outer_src, outer_dst, inner_proto, inner) if v6 else ipv4(outer_src, outer_dst, inner_proto, inner)
    with open("/sys/class/net/%s/address" % iface) as f:
        src_mac = bytes.fromhex(f.read().strip().replace(":", ""))
    frame = bytes.fromhex(dst_mac.replace(":", "")) + src_mac + struct.pack("!H", 0x86DD if v6 else 0x0800) + outer
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
        s.bind((iface, 0))
        s.send(frame)


if __name__ == "__main__":
    main(*sys.argv[1:10])
