#!/usr/bin/env python3
"""Queries a DNS server at a steady rate and counts the answers.

  dns_probe.py SERVER NAME RATE SECONDS

One query every 1/RATE s for SECONDS, each from a new socket (a new source port, so that
ECMP spreads them over the LB nodes), each tried once with a 2 s timeout. Prints
"answered N of M" (and each miss with its time) and exits 0 only when every query was
answered. Stdlib only.
"""
import os
import socket
import struct
import sys
import time


def query(name, qid):
    header = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return header + labels + struct.pack("!HH", 1, 1)  # A, IN


def main():
    server, name, rate, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    total = int(rate * seconds)
    answered = 0
    start = time.monotonic()
    for i in range(total):
        time.sleep(max(0.0, start + i / rate - time.monotonic()))
        qid = (os.getpid() + i) & 0xFFFF
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(2.0)
            sent = time.monotonic()
            s.sendto(query(name, qid), (server, 53))
            try:
                while True:
                    data = s.recv(512)
                    if len(data) >= 12 and struct.unpack("!H", data[:2])[0] == qid:
                        answered += 1
                        break
            except socket.timeout:
                print(f"no answer to query {i} sent at {sent - start:.2f} s", flush=True)
    print(f"answered {answered} of {total}", flush=True)
    return 0 if answered == total else 1


if __name__ == "__main__":
    sys.exit(main())
