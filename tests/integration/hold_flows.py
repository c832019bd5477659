"""Long-lived TCP connections and active UDP flows through a VIP, each watched for breaking
or changing backend (standard library only), for the failover test.

  hold_flows.py VIP TCP_COUNT UDP_COUNT STOP_FILE [IDLE_COUNT]
      opens TCP_COUNT connections to VIP:80 (the backends' socat answers each line with
      the backend's name) and UDP_COUNT flows to VIP:53 (each from its own source port; the
      backends' dnsmasq answers whoami.test with an address of its own). Every second,
      each connection sends a line and each flow a query. IDLE_COUNT more connections send
      a line when they open and are silent from then on. When STOP_FILE exists (bounded:
      300 s), every connection sends one more line. A TCP connection is broken when it is
      reset, closed, or silent for 3 s after a line, or answers from another backend; a
      UDP flow when two queries in a row go unanswered, or it answers from another
      backend. Writes "ready" to stdout once every connection and flow has answered (or
      how many broke before answering), and a JSON summary at the end. Exit status 1 if anything broke.
"""
import asyncio
import json
import os
import random
import socket
import struct
import sys
import time

INTERVAL = 1.0
DEADLINE = 300


def dns_query(qid):
    header = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    name = b"".join(bytes([len(p)]) + p for p in b"whoami.test".split(b".")) + b"\0"
    return header + name + struct.pack("!HH", 1, 1)


def dns_answer(data, qid):
    """The A record of an answer to query `qid`, or None."""
    if len(data) < 12 or struct.unpack("!H", data[:2])[0] != qid or struct.unpack("!H", data[6:8])[0] == 0:
        return None
    return socket.inet_ntoa(data[-4:])


class Tally:
    def __init__(self):
        self.start = time.monotonic()
        self.backends = {}  # flow name -> first backend
        self.broken = {}    # flow name -> why
        self.answers = 0

    def answer(self, name, backend):
        self.answers += 1
        first = self.backends.setdefault(name, backend)
        if backend != first and name not in self.broken:
            self.broken[name] = "moved from %s to %s" % (first, backend)

    def fail(self, name, why):
        self.broken.setdefault(name, "%s (at %.1f s)" % (why, time.monotonic() - self.start))


async def hold_tcp(vip, i, tally, stop, ready, idle=False):
    name = ("idle%d" if idle else "tcp%d") % i
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(vip, 80), 5)
    except (OSError, asyncio.TimeoutError) as e:
        tally.fail(name, "connect: %s" % e)
        return
    first = True
    while True:
        try:
            writer.write(b"who\n")
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), 3)
            if not line:
                tally.fail(name, "closed")
                return
            tally.answer(name, line.decode().strip())
        except (OSError, asyncio.TimeoutError) as e:
            tally.fail(name, "%s: %s" % (type(e).__name__, e))
            return
        if first:
            ready.append(name)
            first = False
        if stop.is_set():
            break
        if idle:
            await stop.wait()  # silent until the end
        else:
            await asyncio.sleep(INTERVAL * (0.9 + 0.2 * random.random()))
    writer.close()


class UdpFlow(asyncio.DatagramProtocol):
    def __init__(self):
        self.answers = asyncio.Queue()

    def datagram_received(self, data, addr):
        self.answers.put_nowait(data)


async def hold_udp(vip, i, tally, stop, ready):
    name = "udp%d" % i
    loop = asyncio.get_running_loop()
    transport, flow = await loop.create_datagram_endpoint(UdpFlow, remote_addr=(vip, 53))
    missed, qid, first = 0, i * 1000, True
    while not stop.is_set():
        qid = (qid + 1) & 0xFFFF
        transport.sendto(dns_query(qid))
        backend = None
        try:
            end = time.monotonic() + 2
            while backend is None:
                data = await asyncio.wait_for(flow.answers.get(), max(0.01, end - time.monotonic()))
                backend = dns_answer(data, qid)
        except asyncio.TimeoutError:
            pass
        if backend is None:
            missed += 1
            if missed >= 2:
                tally.fail(name, "two queries in a row unanswered")
                break
        else:
            missed = 0
            tally.answer(name, backend)
            if first:
                ready.append(name)
                first = False
        await asyncio.sleep(INTERVAL * (0.9 + 0.2 * random.random()))
    transport.close()


async def main(vip, tcp_count, udp_count, stop_file, idle_count=0):
    stop = asyncio.Event()
    tally = Tally()
    ready = []
    tasks = [asyncio.create_task(hold_tcp(vip, i, tally, stop, ready)) for i in range(tcp_count)]
    tasks += [asyncio.create_task(hold_tcp(vip, i, tally, stop, ready, idle=True)) for i in range(idle_count)]
    tasks += [asyncio.create_task(hold_udp(vip, i, tally, stop, ready)) for i in range(udp_count)]
    start = time.monotonic()
    announced = False
    while time.monotonic() - start < DEADLINE and not os.path.exists(stop_file):
        if not announced and len(ready) + len(tally.broken) >= tcp_count + idle_count + udp_count:
            # "ready" only when every one answered: one that broke first is a failure.
            print("ready" if not tally.broken else "%d broke before answering" % len(tally.broken), flush=True)
            announced = True
        if all(t.done() for t in tasks):
            break
        await asyncio.sleep(0.2)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    spread = {}
    for b in tally.backends.values():
        spread[b] = spread.get(b, 0) + 1
    print(json.dumps({"tcp": tcp_count, "idle": idle_count, "udp": udp_count, "answers": tally.answers, "broken": len(tally.broken),
                      "why": dict(sorted(tally.broken.items())[:10]), "backends": spread,
                      "seconds": round(time.monotonic() - start, 1)}), flush=True)
    return 1 if tally.broken else 0


if __name__ == "__main__":
    idle = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    sys.exit(asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], idle)))
