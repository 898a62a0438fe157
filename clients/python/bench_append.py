#!/usr/bin/python3
"""Appends per second through the Python client over one connection with 64
appends in flight, beside the C bench's figure for the same load on the same
server in the same run (build/bench/whizbang-bench append --clients 1
--pipeline 64). Issue 14's goal for Python: 30 000 events/s.

    /usr/bin/python3 clients/python/bench_append.py [--events N] [--rounds R]

It spawns a whizbangd from build/ (or --whizbangd) on 127.0.0.1:0 with a
fresh data directory, unless --server HOST:PORT names a running one. Each
event is one append of --size data bytes with a client-made UUIDv7 id, to
streams bench-py-0..S-1 in turn.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "tests"))

import whizbang  # noqa: E402
from whizbang import Event  # noqa: E402


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def python_load(url: str, events: int, size: int, streams: int,
                      inflight: int) -> tuple[float, float]:
    """Returns (events per second, client CPU seconds per 1000 events)."""
    data = b"x" * size
    async with await whizbang.connect(url, client_name="bench_append.py") as conn:
        left = events
        counter = 0

        async def worker() -> None:
            nonlocal left, counter
            while left > 0:
                left -= 1
                n = counter
                counter += 1
                await conn.append(f"bench-py-{n % streams}", [Event("BenchEvent", data)])

        cpu0, t0 = cpu_s(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(inflight)))
        secs, cpu = time.perf_counter() - t0, cpu_s() - cpu0
    return events / secs, cpu * 1e6 / events


async def catch_up(url: str, events: int) -> float:
    """Events per second delivered through subscribe_all's iterator, reading
    the first ``events`` of the log from the start."""
    async with await whizbang.connect(url, client_name="bench_append.py") as conn:
        t0 = time.perf_counter()
        async with await conn.subscribe_all("start", window=4000) as sub:
            n = 0
            async for _ in sub:
                n += 1
                if n == events:
                    break
        return events / (time.perf_counter() - t0)


def c_load(bench: str, address: str, events: int, size: int, streams: int,
           inflight: int) -> float:
    out = subprocess.run(
        [bench, "append", "--clients", "1", "--pipeline", str(inflight), "--events", str(events),
         "--size", str(size), "--streams", str(streams), "--server", address, "--no-baseline",
         "--json"], check=True, capture_output=True, text=True).stdout
    return float(json.loads(out)["load"]["events_per_s"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--streams", type=int, default=16)
    ap.add_argument("--inflight", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2, help="Python then C, this many times")
    ap.add_argument("--server", help="HOST:PORT of a running whizbangd (default: spawn one)")
    ap.add_argument("--whizbangd", default=os.path.join(REPO, "build", "server", "whizbangd"))
    ap.add_argument("--bench", default=os.path.join(REPO, "build", "bench", "whizbang-bench"))
    a = ap.parse_args()

    from server import bench_server
    spawned, address = bench_server(a.server, a.whizbangd)
    try:
        print(f"appends of one {a.size}-byte event, {a.inflight} in flight on one connection, "
              f"{a.events} events a run, whizbangd at {address}"
              f"{' (spawned, default options)' if spawned else ''}")
        for r in range(a.rounds):
            py, cpu = asyncio.run(python_load(f"whizbang://{address}", a.events, a.size,
                                              a.streams, a.inflight))
            c = c_load(a.bench, address, a.events, a.size, a.streams, a.inflight)
            print(f"round {r + 1}: python {py:,.0f} events/s ({cpu:.1f} ms client CPU per "
                  f"1000), C whizbang-bench {c:,.0f} events/s, python/C {py / c:.2f}")
        sub = asyncio.run(catch_up(f"whizbang://{address}", a.events))
        print(f"catch-up through subscribe_all: {sub:,.0f} events/s ({a.events} events from "
              "the start of the log)")
    finally:
        if spawned is not None:
            spawned.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
