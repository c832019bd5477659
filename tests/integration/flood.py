"""Sends a bounded flood of spoofed packets, as an attacker would, for control_flood_test.sh.

  flood.py ip   --src A --dst B --proto tcp|udp --dport P [--sport P] [--ttl T] --pps N --seconds S
  flood.py arp  --iface IF --src A --dst B --pps N --seconds S

`ip`: IPv4 packets with any source (raw socket, IP_HDRINCL), TCP SYNs or UDP datagrams of
16 bytes, source ports cycling from --sport. `arp`: ARP requests for B, claiming A, with
random source MACs, on IF (AF_PACKET). Paced in 10 ms batches; never more than
pps * seconds packets. Prints how many were sent. Stdlib only.
"""
import argparse
import os
import socket
import struct
import time


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ipv4(src: str, dst: str, proto: int, payload: bytes, ttl: int) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0x4000, ttl, proto, 0,
                         socket.inet_aton(src), socket.inet_aton(dst))
    return header[:10] + struct.pack("!H", checksum(header)) + header[12:] + payload


def l4(args, sport: int) -> bytes:
    pseudo = lambda proto, seg: socket.inet_aton(args.src) + socket.inet_aton(args.dst) + struct.pack(
        "!BBH", 0, proto, len(seg))
    if args.proto == "tcp":
        seg = struct.pack("!HHIIBBHHH", sport, args.dport, 1, 0, 5 << 4, 0x02, 65535, 0, 0)
        return seg[:16] + struct.pack("!H", checksum(pseudo(6, seg) + seg)) + seg[18:]
    data = bytes(16)
    seg = struct.pack("!HHHH", sport, args.dport, 8 + len(data), 0) + data
    return seg[:6] + struct.pack("!H", checksum(pseudo(17, seg) + seg) or 0xFFFF) + seg[8:]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("kind", choices=["ip", "arp"])
    p.add_argument("--src", required=True)
    p.add_argument("--dst", required=True)
    p.add_argument("--proto", choices=["tcp", "udp"], default="udp")
    p.add_argument("--sport", type=int, default=20000)
    p.add_argument("--dport", type=int, default=0)
    p.add_argument("--ttl", type=int, default=64)
    p.add_argument("--iface")
    p.add_argument("--pps", type=int, required=True)
    p.add_argument("--seconds", type=float, required=True)
    args = p.parse_args()

    if args.kind == "ip":
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        packets = [ipv4(args.src, args.dst, 6 if args.proto == "tcp" else 17, l4(args, args.sport + i), args.ttl)
                   for i in range(1024)]
        send = lambda pkt: s.sendto(pkt, (args.dst, 0))
    else:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        s.bind((args.iface, 0))
        packets = []
        for _ in range(1024):
            mac = bytes([0x02]) + os.urandom(5)
            arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, mac, socket.inet_aton(args.src), bytes(6),
                              socket.inet_aton(args.dst))
            packets.append(b"\xff" * 6 + mac + b"\x08\x06" + arp + bytes(18))
        send = s.send

    total = int(args.pps * args.seconds)
    per_tick = max(1, args.pps // 100)
    sent = 0
    start = time.monotonic()
    tick = 0
    while sent < total and time.monotonic() - start < args.seconds + 2:
        for _ in range(min(per_tick, total - sent)):
            try:
                send(packets[sent % len(packets)])
            except OSError:
                pass  # a full queue: the packet is lost, as on a wire
            sent += 1
        tick += 1
        delay = start + tick * 0.01 - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    print(sent)


if __name__ == "__main__":
    main()
