#!/usr/bin/env python3
"""User-space tunnel end point for test backends (the test kernel has no IPIP or FOU).

Receives IPIP (IPv4 protocol 4) packets on a raw socket and GUE (UDP, version 0 header)
packets on a UDP socket, strips the outer headers and writes the inner IPv4 packet to a
TUN device, so that the backend's kernel delivers it to the VIP as if it had arrived
directly. Replies leave by the normal route (direct server return). Standard library
only. Usage: decap.py TUN_NAME GUE_PORT. Prints "ready" once listening; runs until killed.
"""
import fcntl
import os
import select
import socket
import struct
import subprocess
import sys

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def open_tun(name):
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    subprocess.run(["ip", "link", "set", name, "up"], check=True)
    for key in (f"net.ipv4.conf.{name}.rp_filter", "net.ipv4.conf.all.rp_filter"):
        subprocess.run(["sysctl", "-qw", f"{key}=0"], check=True)
    return fd


def main():
    tun = open_tun(sys.argv[1])
    ipip = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_IPIP)
    gue = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    gue.bind(("0.0.0.0", int(sys.argv[2])))
    print("ready", flush=True)
    while True:
        readable, _, _ = select.select([ipip, gue], [], [])
        for s in readable:
            data = s.recv(65535)
            if s is ipip:
                inner = data[(data[0] & 0x0F) * 4:]  # raw IPv4 sockets deliver the outer header
            else:
                if len(data) < 4 or data[0] >> 6 != 0 or data[1] != 4:
                    continue  # not GUE version 0 carrying IPv4
                inner = data[4 + (data[0] & 0x1F) * 4:]
            if inner:
                os.write(tun, inner)


if __name__ == "__main__":
    main()
