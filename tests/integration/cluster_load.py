#!/usr/bin/env python3
"""DNS load through a VIP for the cluster test, against stock DNS servers (dnsmasq),
standard library only:

    cluster_load.py VIP TCP_CONNECTIONS UDP_RATE STOP_FILE

- TCP_CONNECTIONS held DNS-over-TCP connections, each asking whoami.test (answered with
  the backend's own address) every second. One is broken when it is reset or closed, an
  answer is 3 s late, or it answers from another backend.
- UDP queries at UDP_RATE a second, from 256 sockets in turn (as many source ports, so
  that ECMP spreads them over the LB nodes). A query unanswered within 2 s is lost.

Writes "ready" once every connection has answered, runs until STOP_FILE exists (at most
600 s), then prints one JSON line: {"tcp": N, "broken": {...}, "queries": N, "lost": N,
"lost_at": [seconds, ...]}. Exit status 0.
"""
import asyncio
import json
import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hold_flows import dns_answer as answer, dns_query as query  # noqa: E402

DEADLINE = 600


async def hold(vip, i, state, stop):
    name = "tcp%d" % i
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(vip, 53), 5)
    except (OSError, asyncio.TimeoutError) as e:
        state["broken"][name] = "connect: %s" % e
        return
    backend, qid = None, i * 1000
    while True:
        qid = (qid + 1) & 0xFFFF
        q = query(qid)
        try:
            writer.write(struct.pack("!H", len(q)) + q)
            await writer.drain()
            size = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), 3))[0]
            got = answer(await asyncio.wait_for(reader.readexactly(size), 3), qid)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
            state["broken"][name] = "%s: %s" % (type(e).__name__, e)
            return
        if got is None or (backend is not None and got != backend):
            state["broken"][name] = "answer %s after %s" % (got, backend)
            return
        if backend is None:
            backend = got
            state["held"] += 1
        if stop.is_set():
            break
        await asyncio.sleep(1.0)
    writer.close()


async def udp(vip, rate, state, stop, start):
    loop = asyncio.get_running_loop()
    socks = []
    pending = {}  # (socket index, qid) -> time sent

    class Receiver(asyncio.DatagramProtocol):
        def __init__(self, index):
            self.index = index

        def datagram_received(self, data, addr):
            if len(data) >= 2:
                pending.pop((self.index, struct.unpack("!H", data[:2])[0]), None)

    for i in range(256):
        transport, _ = await loop.create_datagram_endpoint(lambda i=i: Receiver(i), remote_addr=(vip, 53))
        socks.append(transport)
    n = 0
    while not stop.is_set():
        await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
        index, qid = n % len(socks), (n // len(socks)) & 0xFFFF
        pending[(index, qid)] = time.monotonic()
        socks[index].sendto(query(qid))
        n += 1
        if n % 100 == 0:  # expire what is 2 s old
            now = time.monotonic()
            for key, sent in list(pending.items()):
                if now - sent > 2.0:
                    del pending[key]
                    state["lost"] += 1
                    state["lost_at"].append(round(sent - start, 1))
    await asyncio.sleep(2.0)
    state["lost"] += len(pending)
    state["queries"] = n
    for t in socks:
        t.close()


async def main():
    vip, tcp, rate, stop_file = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    state = {"held": 0, "broken": {}, "queries": 0, "lost": 0, "lost_at": []}
    stop = asyncio.Event()
    start = time.monotonic()
    tasks = [asyncio.create_task(hold(vip, i, state, stop)) for i in range(tcp)]
    tasks.append(asyncio.create_task(udp(vip, rate, state, stop, start)))
    ready = False
    while time.monotonic() - start < DEADLINE and not os.path.exists(stop_file):
        if not ready and state["held"] + len(state["broken"]) >= tcp:
            print("ready", flush=True)
            ready = True
        await asyncio.sleep(0.2)
    stop.set()
    await asyncio.gather(*tasks)
    lost_at = state["lost_at"]
    print(json.dumps({"tcp": tcp, "held": state["held"], "broken": state["broken"], "queries": state["queries"],
                      "lost": state["lost"], "lost_at": lost_at[:50]}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
