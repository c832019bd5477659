#!/usr/bin/env python3
"""TCP clients that tell which backend answered (standard library only); the backends
run socat, which answers each line with the backend's name (see topology.sh).

  tcp_probe.py connect ADDRESS PORT COUNT   COUNT new connections; print the answering
                                            backend of each, one per line
  tcp_probe.py hold ADDRESS PORT SECONDS    one connection, a line every 0.2 s for SECONDS;
                                            print each answer; exit 1 if the connection
                                            breaks or changes backend
"""
import socket
import sys
import time


def ask(sock, reader):
    sock.sendall(b"who\n")
    line = reader.readline()
    if not line:
        raise ConnectionError("connection closed")
    return line.decode().strip()


def main():
    mode, address, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "connect":
        for i in range(int(sys.argv[4])):
            with socket.create_connection((address, port), timeout=3) as s:
                print(ask(s, s.makefile("rb")), flush=True)
    elif mode == "hold":
        deadline = time.time() + float(sys.argv[4])
        with socket.create_connection((address, port), timeout=3) as s:
            reader = s.makefile("rb")
            first = ask(s, reader)
            print(first, flush=True)
            while time.time() < deadline:
                time.sleep(0.2)
                name = ask(s, reader)
                if name != first:
                    print(f"changed backend: {first} -> {name}", flush=True)
                    return 1
            print(first, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
