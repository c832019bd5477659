"""Sends a bounded flood of spoofed packets, as an attacker would, for control_flood_test.sh.

  flood.py ip      --src A --dst B --proto tcp|udp --dport P [--sport P] [--ttl T] --pps N --seconds S
  flood.py arp     --iface IF --src A --dst B --pps N --seconds S
  flood.py capture --iface IF --src A --dport P --seconds S --file F
  flood.py replay  --file F --src A --dst B --dport P --times N --pps N --seconds S

`ip`: IPv4 packets with any source (raw socket, IP_HDRINCL), TCP SYNs or UDP datagrams of
16 bytes, source ports cycling from --sport (built as the fuzz seeds are: make_seeds.py). `arp`: ARP requests for B, claiming A, with
random source MACs, on IF (AF_PACKET). Paced in 10 ms batches; never more than
pps * seconds packets. Prints how many were sent. `capture` keeps the UDP payloads from A to
port P seen on IF for S seconds (one hex line each in F) and prints how many; `replay`
sends each of them N times from A (with port P on both sides), as an attacker who
captured them would. Stdlib only.
"""
import argparse
import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fuzz"))
from make_seeds import ipv4, tcp, udp  # noqa: E402  (the seeds' packet builders)


def packet(args, sport: int) -> bytes:
    # No L4 checksum: lbd counts (and drops) the flood before any checksum would matter,
    # and a UDP checksum of 0 means none.
    l4 = tcp(sport, args.dport, 0x02) if args.proto == "tcp" else udp(sport, args.dport, bytes(16))
    return ipv4(args.src, args.dst, 6 if args.proto == "tcp" else 17, l4, ttl=args.ttl)


def capture(args):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
    s.bind((args.iface, 0))
    s.settimeout(0.2)
    src = socket.inet_aton(args.src)
    kept = []
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        try:
            frame = s.recv(65535)
        except socket.timeout:
            continue
        ip = frame[14:]
        ihl = (ip[0] & 0x0F) * 4
        if len(ip) < ihl + 8 or ip[9] != 17 or ip[12:16] != src:
            continue
        udp_header = ip[ihl:ihl + 8]
        if struct.unpack("!H", udp_header[2:4])[0] != args.dport:
            continue
        length = struct.unpack("!H", udp_header[4:6])[0]
        kept.append(ip[ihl + 8:ihl + length].hex())
    with open(args.file, "w") as f:
        f.write("\n".join(kept) + "\n")
    print(len(kept))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("kind", choices=["ip", "arp", "capture", "replay"])
    p.add_argument("--src", required=True)
    p.add_argument("--dst", default="0.0.0.0")
    p.add_argument("--proto", choices=["tcp", "udp"], default="udp")
    p.add_argument("--sport", type=int, default=20000)
    p.add_argument("--dport", type=int, default=0)
    p.add_argument("--ttl", type=int, default=64)
    p.add_argument("--iface")
    p.add_argument("--file")
    p.add_argument("--times", type=int, default=1)
    p.add_argument("--pps", type=int, default=1000)
    p.add_argument("--seconds", type=float, required=True)
    args = p.parse_args()

    if args.kind == "capture":
        return capture(args)

    if args.kind in ("ip", "replay"):
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        if args.kind == "ip":
            packets = [packet(args, args.sport + i) for i in range(1024)]
        else:
            with open(args.file) as f:
                payloads = [bytes.fromhex(line.strip()) for line in f if line.strip()]
            packets = [ipv4(args.src, args.dst, 17, udp(args.dport, args.dport, d), ttl=args.ttl)
                       for d in payloads for _ in range(args.times)]
            args.pps = min(args.pps, max(1, len(packets)))
            args.seconds = max(args.seconds, len(packets) / args.pps)
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

    total = int(args.pps * args.seconds) if args.kind != "replay" else len(packets)
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
