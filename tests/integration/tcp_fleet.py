"""Many concurrent TCP connections, for the NAT test (standard library only).

  tcp_fleet.py serve NAME ADDRESS PORT
      answers each line "X" with "NAME X PEER_ADDRESS" (the peer the server sees).
  tcp_fleet.py connect HOST PORT COUNT
      opens COUNT connections (at most 500 connecting at once), sends one line on each
      and reads the answer, holds them all open, then asks again on each: every connection
      must answer twice, from the same backend. Prints a JSON summary; exit status 1 when
      any connection failed or changed backend. Bounded: gives up after 120 s.
"""
import asyncio
import collections
import json
import resource
import sys
import time


async def serve(name, address, port):
    async def handle(reader, writer):
        peer = writer.get_extra_info("peername")[0]
        try:
            while line := await reader.readline():
                writer.write(b"%s %s %s\n" % (name.encode(), line.strip(), peer.encode()))
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, address, port, backlog=4096)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


async def connect(host, port, count):
    gate = asyncio.Semaphore(500)
    conns, failures = {}, collections.Counter()

    async def ask(i, reader, writer):
        writer.write(b"%d\n" % i)
        await writer.drain()
        answer = (await asyncio.wait_for(reader.readline(), 30)).split()
        if len(answer) != 3 or answer[1] != str(i).encode():
            raise ValueError("bad answer %r" % answer)
        return answer[0].decode(), answer[2].decode()

    async def open_one(i):
        async with gate:
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 30)
                conns[i] = (reader, writer, await ask(i, reader, writer))
            except Exception as e:  # noqa: BLE001 - every failure is counted by kind
                failures[type(e).__name__] += 1

    start = time.monotonic()
    await asyncio.gather(*(open_one(i) for i in range(count)))
    opened = time.monotonic() - start
    print(json.dumps({"phase": "open", "open": len(conns)}), flush=True)
    # Everything is open at once now: ask again on each.
    moved = 0

    async def again(i):
        nonlocal moved
        reader, writer, first = conns[i]
        try:
            if await ask(i, reader, writer) != first:
                moved += 1
        except Exception as e:  # noqa: BLE001
            failures["second_" + type(e).__name__] += 1

    await asyncio.gather(*(again(i) for i in list(conns)))
    backends = collections.Counter(first[0] for (_, _, first) in conns.values())
    peers = collections.Counter(first[1] for (_, _, first) in conns.values())
    for _, writer, _ in conns.values():
        writer.close()
    print(json.dumps({"connections": count, "answered_twice": len(conns) - moved - sum(
        v for k, v in failures.items() if k.startswith("second_")), "moved": moved,
        "failures": dict(failures), "backends": dict(backends), "peers_seen_by_backends": dict(peers),
        "open_seconds": round(opened, 1)}), flush=True)
    return 0 if not failures and moved == 0 and len(conns) == count else 1


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if sys.argv[1] == "serve":
        asyncio.run(serve(sys.argv[2], sys.argv[3], int(sys.argv[4])))
    else:
        rc = asyncio.run(asyncio.wait_for(connect(sys.argv[2], int(sys.argv[3]), int(sys.argv[4])), 120))
        sys.exit(rc)


if __name__ == "__main__":
    main()
