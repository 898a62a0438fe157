#!/usr/bin/python3
"""Checks a client's order-projection example (clients/python/examples,
clients/typescript/examples) against real whizbangds:

1. a whizbangd on 127.0.0.1 port 0 with a fresh data directory; --events
   events (OrderPlaced/OrderShipped, made here from a seed) appended one by
   one; the example run with --workers 4 --until-caught-up (it exits once
   the watermark passed its last commit); the read model dumped: every
   Order and Customer entity, in id order, with its version and its created
   and updated sequences;
2. the same on a fresh whizbangd with --workers 1 (sequential);
3. the two dumps must be equal byte for byte, and equal to the read model
   this file computes from the events by itself (entity counts, each
   customer's total against the sum of its amounts, every field), and in
   each ledger the projection's entries must follow the events' order
   (source positions increasing with the sequence).

Usage: check_example.py [--events N] [--workers N] [--parallel-arg ARG]...
                        -- COMMAND [ARGS...]
COMMAND runs the example; it gets --url, --workers and --until-caught-up.
--parallel-arg passes an argument to the parallel run only (the negative
control passes --lease-late, which must be caught).

Exit status: 0 when everything holds; 1 when the read models or the
ledger's order are wrong (what the negative control must produce); 99 (an
error for meson, even for a should_fail test) when the run itself went
wrong: a server that did not start, an example that failed or did not
work in parallel, a ledger without one committed entry per event. So the
control passes only when the comparison is what caught it.

It appends and reads with this tree's Python client (clients/python, put
on sys.path here), against $WHIZBANGD (else build/server/whizbangd). The
Python example needs PYTHONPATH=clients/python itself.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
import traceback
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
# The tree's client (PYTHONPATH may name it too) and its tests' Server.
sys.path[:0] = [os.path.join(REPO, "clients", "python"),
                os.path.join(REPO, "clients", "python", "tests")]

try:
    import whizbang
    from server import Server  # clients/python/tests/server.py
except ImportError as e:
    print(f"ERROR: {e}", file=sys.stderr)
    sys.exit(99)

WRONG, ERROR = 1, 99
PROJECTION = "orders"  # the example's default
GOLD_TOTAL = 100_000
EXAMPLE_TIMEOUT_S = 60


class RunError(Exception):
    """The run went wrong before there was a read model to judge."""


def make_events(n: int, seed: int) -> list[tuple[str, str, dict[str, Any]]]:
    """(stream, type, data): orders of 30 customers, about a third of them
    shipped later (never before they were placed)."""
    rng = random.Random(seed)
    out: list[tuple[str, str, dict[str, Any]]] = []
    unshipped: list[tuple[str, str]] = []
    for i in range(n):
        if unshipped and rng.random() < 0.35:
            order, customer = unshipped.pop(rng.randrange(len(unshipped)))
            out.append((f"order-{order}", "OrderShipped", {"order": order, "customer": customer}))
        else:
            order, customer = f"o-{i:04d}", f"c-{rng.randrange(30)}"
            unshipped.append((order, customer))
            out.append((f"order-{order}", "OrderPlaced",
                        {"order": order, "customer": customer,
                         "amount": rng.randrange(100, 30_000)}))
    return out


def expected_model(events: list[tuple[str, str, dict[str, Any]]]) -> dict[str, dict[str, dict[str, Any]]]:
    """The read model the example's documentation describes, folded over the
    events in their order: {type: {id: fields}}."""
    orders: dict[str, dict[str, Any]] = {}
    customers: dict[str, dict[str, Any]] = {}
    for _, type_, d in events:
        o, c = d["order"], d["customer"]
        if type_ == "OrderPlaced":
            orders[o] = {"order": o, "customer": c, "amount": d["amount"], "status": "placed"}
            cu = customers.get(c)
            if cu is None:
                cu = customers[c] = {"customer": c, "total": d["amount"], "orders": 1,
                                     "last_order": o}
            else:
                cu["total"] += d["amount"]
                cu["orders"] += 1
                cu["last_order"] = o
            if cu["total"] >= GOLD_TOTAL and "gold_since" not in cu:
                cu["gold_since"] = o
        else:
            if o in orders:
                orders[o]["status"] = "shipped"
            if c in customers:
                customers[c]["shipped"] = customers[c].get("shipped", 0) + 1
                customers[c]["last_shipped"] = o
    return {"Order": orders, "Customer": customers}


async def append_events(url: str, events: list[tuple[str, str, dict[str, Any]]]) -> list[int]:
    """Appends them one by one (so $all holds them in this order) and
    returns their positions, read back from $all."""
    async with await whizbang.connect(url) as conn:
        for stream, type_, data in events:
            await conn.append(stream, [whizbang.Event(type_, json.dumps(data).encode())])
        stored = [ev async for ev in conn.read_all()]
    got = [(ev.stream, ev.type, json.loads(ev.data)) for ev in stored]
    if got != events:
        raise RunError("$all does not hold the events in the order they were appended")
    return [ev.position for ev in stored]


async def read_back(url: str) -> tuple[list[str], list[Any], int]:
    """The dump (one line per entity, types in a fixed order, ids in order),
    the ledger's entries and the watermark."""
    async with await whizbang.connect(url) as conn:
        lines = []
        for type_ in ("Order", "Customer"):
            async for e in conn.query(type_):
                lines.append(json.dumps({
                    "type": e.type, "id": e.id, "version": e.version,
                    "created_sequence": e.created_sequence,
                    "updated_sequence": e.updated_sequence,
                    "fields": whizbang.fields(e)}, sort_keys=True))
        ledger = [entry async for entry in conn.read_ledger()]
        wm = await conn.watermark()
    return lines, ledger, wm.watermark


def run_once(cmd: list[str], workers: int, extra: list[str],
             events: list[tuple[str, str, dict[str, Any]]], label: str) -> dict[str, Any]:
    server = Server()
    server.start()
    try:
        positions = asyncio.run(append_events(server.url, events))
        args = [*cmd, "--url", server.url, "--workers", str(workers), "--until-caught-up", *extra]
        t0 = time.monotonic()
        try:
            proc = subprocess.run(args, capture_output=True, text=True, timeout=EXAMPLE_TIMEOUT_S)
        except subprocess.TimeoutExpired as e:
            raise RunError(f"{label}: the example did not end within {EXAMPLE_TIMEOUT_S} s; "
                           f"its stderr:\n{e.stderr!r}") from None
        seconds = time.monotonic() - t0
        if proc.returncode != 0:
            raise RunError(f"{label}: the example exited with {proc.returncode}:\n"
                           f"{proc.stdout}{proc.stderr}")
        try:
            figures = json.loads(proc.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            raise RunError(f"{label}: no line of figures on the example's output:\n"
                           f"{proc.stdout}{proc.stderr}") from None
        dump, ledger, watermark = asyncio.run(read_back(server.url))
    except BaseException:
        print(f"{label}: the server's log ends with:\n{server.log_tail()}", file=sys.stderr)
        raise
    finally:
        server.stop()
    return {"label": label, "figures": figures, "seconds": seconds, "dump": dump,
            "ledger": ledger, "watermark": watermark, "positions": positions}


def check_run(run: dict[str, Any], workers: int, n: int) -> None:
    """What must hold of a run for its read model to be worth judging."""
    f, label = run["figures"], run["label"]
    if f.get("events") != n or f.get("workers") != workers:
        raise RunError(f"{label}: the example handled {f.get('events')} events with "
                       f"{f.get('workers')} workers, not {n} with {workers}: {f}")
    shares = [len(range(i, n, workers)) for i in range(workers)]
    if f.get("per_worker") != shares:
        raise RunError(f"{label}: the events were shared {f.get('per_worker')}, not {shares}")
    if workers > 1 and f.get("max_in_flight", 0) < 2:
        raise RunError(f"{label}: the work never ran in parallel (max in flight "
                       f"{f.get('max_in_flight')})")
    mine = [e for e in run["ledger"] if e.projection == PROJECTION]
    if len(mine) != n:
        raise RunError(f"{label}: the ledger holds {len(mine)} entries of {PROJECTION}, not {n}")
    for e in mine:
        if e.kind != whizbang.pb.ENTRY_COMMITTED or not e.applied or e.apply_error != 0:
            raise RunError(f"{label}: ledger entry {e.sequence} is not committed and applied "
                           f"cleanly: {e}")
    last = max(e.sequence for e in mine)
    if run["watermark"] < last or f.get("last_sequence") != last:
        raise RunError(f"{label}: watermark {run['watermark']}, last sequence {last}, the "
                       f"example's last {f.get('last_sequence')}")


def order_problems(run: dict[str, Any]) -> list[str]:
    """The projection's ledger entries must carry the events' positions in
    the events' order."""
    mine = sorted((e for e in run["ledger"] if e.projection == PROJECTION),
                  key=lambda e: int(e.sequence))
    got = [e.source_position for e in mine]
    if got == run["positions"]:
        return []
    swaps = sum(1 for a, b in zip(got, got[1:]) if a > b)
    return [f"{run['label']}: the ledger's entries are not in the events' order "
            f"({swaps} adjacent pairs reversed; first positions {got[:8]})"]


def model_problems(run: dict[str, Any], model: dict[str, dict[str, dict[str, Any]]],
                   amounts: int) -> list[str]:
    out = []
    got: dict[str, dict[str, dict[str, Any]]] = {"Order": {}, "Customer": {}}
    for line in run["dump"]:
        e = json.loads(line)
        got[e["type"]][e["id"]] = e["fields"]
    for type_ in ("Order", "Customer"):
        if len(got[type_]) != len(model[type_]):
            out.append(f"{run['label']}: {len(got[type_])} {type_} entities, expected "
                       f"{len(model[type_])}")
    total = sum(c.get("total", 0) for c in got["Customer"].values())
    if total != amounts:
        out.append(f"{run['label']}: the customers' totals sum to {total}, the events' "
                   f"amounts to {amounts}")
    wrong = [(t, i) for t in model for i in model[t] if got[t].get(i) != model[t][i]]
    for t, i in wrong[:5]:
        out.append(f"{run['label']}: {t} {i} is {got[t].get(i)}, expected {model[t][i]}")
    if len(wrong) > 5:
        out.append(f"{run['label']}: ... {len(wrong)} entities differ from the expected model")
    return out


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--events", type=int, default=300)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--parallel-arg", action="append", default=[])
    p.add_argument("cmd", nargs="+")
    a = p.parse_args()
    events = make_events(a.events, a.seed)
    model = expected_model(events)
    amounts = sum(d["amount"] for _, t, d in events if t == "OrderPlaced")
    placed = sum(1 for _, t, _ in events if t == "OrderPlaced")
    try:
        par = run_once(a.cmd, a.workers, a.parallel_arg, events, f"{a.workers} workers")
        check_run(par, a.workers, a.events)
        seq = run_once(a.cmd, 1, [], events, "1 worker")
        check_run(seq, 1, a.events)
    except RunError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return ERROR
    except Exception:  # a server that did not start, a failed call: not a verdict
        traceback.print_exc()
        return ERROR

    for run in (par, seq):
        f = run["figures"]
        print(f"{run['label']}: {f['events']} events in {run['seconds']:.2f} s, sequences "
              f"{f['first_sequence']}..{f['last_sequence']}, at most {f['max_in_flight']} "
              f"in flight, {f['out_of_order_commits']} commits below a higher one, "
              f"per worker {f['per_worker']}; {len(run['dump'])} entities")
    print(f"events: {a.events} ({placed} placed, {a.events - placed} shipped), "
          f"{len(model['Customer'])} customers, amounts {amounts}, "
          f"{sum(1 for c in model['Customer'].values() if 'gold_since' in c)} gold")
    problems = order_problems(par) + order_problems(seq)
    if par["dump"] != seq["dump"]:
        diff = [(x, y) for x, y in zip(par["dump"], seq["dump"]) if x != y]
        problems.append(f"the read models differ ({len(par['dump'])} and {len(seq['dump'])} "
                        f"lines, {len(diff)} of them differ)")
        for x, y in diff[:3]:
            problems.append(f"  {par['label']}: {x}\n  {seq['label']}:  {y}")
    problems += model_problems(seq, model, amounts) + model_problems(par, model, amounts)
    if problems:
        print("WRONG:\n" + "\n".join(problems), file=sys.stderr)
        return WRONG
    print(f"ok: the read models of {par['label']} and {seq['label']} are equal "
          f"({sum(len(x) + 1 for x in par['dump'])} bytes) and as expected")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception:  # in the verdict's own code: an error, not a verdict
        traceback.print_exc()
        sys.exit(ERROR)
