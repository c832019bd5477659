#!/usr/bin/env python3
"""TCP server and clients that tell which backend answered (standard library only).

  tcp_probe.py serve ADDRESS PORT NAME      answer each line with "NAME\\n"
  tcp_probe.py connect ADDRESS PORT COUNT   COUNT new connections; print the answering
                                            backend of each, one per line
  tcp_probe.py hold ADDRESS PORT SECONDS    one connection, a line every 0.2 s for SECONDS;
                                            print each answer; exit 1 if the connection
                                            breaks or changes backend
"""
import socket
import socketserver
import sys
import time


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        for _ in self.rfile:
            self.wfile.write(self.server.name + b"\n")


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def ask(sock, reader):
    sock.sendall(b"who\n")
    line = reader.readline()
    if not line:
        raise ConnectionError("connection closed")
    return line.decode().strip()


def main():
    mode, address, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "serve":
        server = Server((address, port), Handler)
        server.name = sys.argv[4].encode()
        print("ready", flush=True)
        server.serve_forever()
    elif mode == "connect":
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
