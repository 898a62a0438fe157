#!/usr/bin/python3
"""Catch-up delivery per second through the Python client's subscribe
iterator: appends N events first (batches of --batch, pipelined), then times
``subscribe_all("start")`` from the start of the log until its caught-up
mark, consuming every event through ``async for`` (credits granted as it
goes, --window at most held).

    /usr/bin/python3 clients/python/bench_catchup.py [--events N] [--rounds R]

It spawns a whizbangd from build/ (or --whizbangd) on 127.0.0.1:0 with a
fresh data directory, unless --server HOST:PORT names a running one whose
log holds nothing but what this run appends (the count is checked). Each
round is timed with and without ``reconnect=True`` (the bookkeeping a
resumable subscription does per event).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "tests"))

import whizbang  # noqa: E402
from whizbang import CAUGHT_UP, Event  # noqa: E402


async def fill(url: str, events: int, size: int, batch: int) -> int:
    """Appends events (batch per append, 16 appends in flight); returns the
    last position."""
    data = b"x" * size
    last = 0
    async with await whizbang.connect(url, client_name="bench_catchup.py") as conn:
        left = events
        sem = asyncio.Semaphore(16)

        async def one(n: int, k: int) -> None:
            nonlocal last
            async with sem:
                r = await conn.append(f"catchup-{n % 16}", [Event("BenchEvent", data)
                                                             for _ in range(k)])
                last = max(last, r.last_position)

        tasks = []
        n = 0
        while left > 0:
            k = min(batch, left)
            tasks.append(asyncio.ensure_future(one(n, k)))
            left -= k
            n += 1
        await asyncio.gather(*tasks)
    return last


async def catch_up(url: str, window: int, reconnect: bool) -> tuple[int, float]:
    """(events delivered before the caught-up mark, seconds)."""
    async with await whizbang.connect(url, client_name="bench_catchup.py",
                                      reconnect=reconnect) as conn:
        t0 = time.perf_counter()
        n = 0
        async with await conn.subscribe_all("start", window=window, markers=True) as sub:
            async for item in sub:
                if item is CAUGHT_UP:
                    break
                n += 1
        return n, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--batch", type=int, default=100, help="events per append while filling")
    ap.add_argument("--window", type=int, default=4000, help="the subscription's credits")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--server", help="HOST:PORT of a running whizbangd (default: spawn one)")
    ap.add_argument("--whizbangd", default=os.path.join(REPO, "build", "server", "whizbangd"))
    a = ap.parse_args()

    from server import bench_server
    spawned, address = bench_server(a.server, a.whizbangd)
    url = f"whizbang://{address}"
    try:
        t0 = time.perf_counter()
        last = asyncio.run(fill(url, a.events, a.size, a.batch))
        print(f"filled: {a.events} events of {a.size} bytes in {time.perf_counter() - t0:.1f} s "
              f"(last position {last}), whizbangd at {address}"
              f"{' (spawned, default options)' if spawned else ''}")
        for r in range(a.rounds):
            for reconnect in (False, True):
                n, secs = asyncio.run(catch_up(url, a.window, reconnect))
                if n != last:
                    print(f"the log holds {n} events, not the {last} appended: use a fresh server",
                          file=sys.stderr)
                    return 1
                print(f"round {r + 1}: catch-up through subscribe_all, window {a.window}"
                      f"{', reconnect=True' if reconnect else ''}: {n / secs:,.0f} events/s "
                      f"({n} events in {secs:.2f} s)")
    finally:
        if spawned is not None:
            spawned.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
