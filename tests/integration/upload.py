"""A bulk TCP upload through a VIP, for the tests (standard library only).

  upload.py HOST PORT BYTES
      opens one connection, sends BYTES in lines of 100 bytes as fast as TCP takes them
      (a sender with the kernel's default offloads hands them on as GSO frames of many
      segments), and reads one answer line per line sent (a line-answering server: the
      DSR backends' sed, tcp_fleet.py serve). Prints a JSON summary: seconds, lines sent
      and answered, bytes answered, and the first word of the first answer (the backend).
      Exit status 1 when not every line was answered. Bounded: gives up after 30 s.
"""
import json
import socket
import sys
import threading
import time


def main(host, port, size):
    line = b"u" * 99 + b"\n"
    lines = max(1, size // len(line))
    start = time.monotonic()
    sock = socket.create_connection((host, port), timeout=30)
    sender = threading.Thread(target=sock.sendall, args=(line * lines,), daemon=True)
    sender.start()
    answered, received, first, buffered = 0, 0, None, b""
    try:
        while answered < lines:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += len(chunk)
            buffered += chunk
            *complete, buffered = buffered.split(b"\n")
            if complete and first is None:
                first = complete[0].split(b" ")[0].decode()
            answered += len(complete)
    except OSError as e:
        print("error: %s" % e, file=sys.stderr)
    sock.close()
    print(json.dumps({"seconds": round(time.monotonic() - start, 3), "lines": lines, "answered": answered,
                      "bytes_answered": received, "backend": first}))
    return 0 if answered == lines else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
