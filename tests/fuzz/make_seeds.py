#!/usr/bin/env python3
"""Writes the seed corpus of worker_fuzz: one well-formed frame of each kind the fuzzer's
configuration handles (see worker_fuzz.cc), so that mutation starts from real structure.
Standard library only. Usage: make_seeds.py DIR"""
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


def main(out_dir):
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
    }
    for name, frame in seeds.items():
        with open(os.path.join(out_dir, name), "wb") as f:
            f.write(frame)


if __name__ == "__main__":
    main(sys.argv[1])
