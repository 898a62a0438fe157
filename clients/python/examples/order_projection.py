"""An order projection: workers follow $all, do slow work in parallel, and
the read model still comes out as if one worker had done it all in order.

The events (data as JSON; the amount an int, in cents):

    OrderPlaced   {"order": "o-17", "customer": "c-3", "amount": 12000}
    OrderShipped  {"order": "o-17", "customer": "c-3"}

The read model, two entity types:

    Order     {order, customer, amount, status: "placed" | "shipped"}
    Customer  {customer, total (sum of amounts), orders (count),
               last_order, gold_since, shipped, last_shipped}

``last_order`` is overwritten by every later order and ``gold_since`` names
the order that first took the customer's total to 100000 or more (an
``update ... where`` whose clause reads the total the earlier orders left),
so the result depends on the order the updates are applied in: applied out
of order, they give another read model.

How the order is kept while the work runs in parallel (docs/LEASES.md):

1. every worker follows ``$all`` (only these two event types) from the
   start; the k-th event goes to worker ``k % N``;
2. the worker takes the event's turn (``Turns``): it leases the next
   sequence of the projection only after the worker of event k-1 leased its
   own, so sequences follow the events' order. Leasing is quick (the server
   writes nothing per lease), and the turn passes on as soon as the lease is
   granted;
3. then the slow work (simulated: a random sleep of 1-6 ms, seeded per
   event), in parallel with the other workers, while ``ProjectionWorker``
   extends the lease;
4. the commit of the work's operations, in whatever order the work ends.
   The server applies commits strictly in sequence order once they are
   contiguous (the watermark), so the read model sees event k's updates
   after event k-1's.

The turn is kept in this process (the workers are tasks, each with its own
connection and subscription, as separate processes would have). Workers on
several machines would pass the turn through something they share, or let
one follower lease in the events' order and hand the leases out.

Run it by hand against a running server (from the repository's root, with
the server of clients/python/README.md's five-minute start):

    export PYTHONPATH=clients/python
    /usr/bin/python3 clients/python/examples/order_projection.py \\
        --url whizbang://127.0.0.1:7411 --generate 200 --workers 4 --until-caught-up
    build/client/whizbang query Customer      # or the client's conn.query("Customer")

``--generate N`` first appends N events (a seeded mix of both types);
without ``--until-caught-up`` the workers keep following ``$all`` (append
more OrderPlaced events and watch the read model follow; Ctrl-C stops).
The projection starts at the beginning of ``$all`` each time it is run:
run it once per server (or give new ``--order-type``/``--customer-type``
names), since running it twice would count every order twice.

``--lease-late`` shows the mistake this example avoids: each worker leases
only once its work is done, so the sequences follow the order in which the
work ended, not the events' order, and the read model differs from a
sequential run's. tests/examples/check_example.py runs this example with 4
workers and with 1, compares the two read models byte for byte, and
expects ``--lease-late`` to be caught.

At the end (``--until-caught-up``) it waits until the watermark passes its
last commit and prints one JSON line of figures.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
from dataclasses import dataclass, field
from typing import Any

import whizbang

EVENT_TYPES = ("OrderPlaced", "OrderShipped")
GOLD_TOTAL = 100_000


def lit(s: object) -> str:
    """A string literal of the text form (docs/QUERIES.md): quotes and
    backslashes escaped; control characters are refused by the grammar, so
    they are refused here first."""
    if not isinstance(s, str) or not s or any(ord(c) < 0x20 for c in s):
        raise ValueError(f"not a usable id: {s!r}")
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def ops_for(event: whizbang.pb.RecordedEvent, order_t: str, customer_t: str) -> list[str]:
    """The operations one event commits, in the text form."""
    d = json.loads(event.data)
    o, c = lit(d["order"]), lit(d["customer"])
    if event.type == "OrderPlaced":
        amount = d["amount"]
        if not isinstance(amount, int) or isinstance(amount, bool):
            raise ValueError(f"amount {amount!r} is not an int")
        return [
            f"upsert {order_t} {o} {{order: {o}, customer: {c}, amount: {amount}, "
            f'status: "placed"}}',
            f"update {customer_t} where customer == {c} "
            f"set last_order = {o}, inc total by {amount}, inc orders by 1 "
            f"create {c} {{customer: {c}, total: {amount}, orders: 1, last_order: {o}}}",
            f"update {customer_t} where customer == {c} and total >= {GOLD_TOTAL} "
            f"and not exists(gold_since) set gold_since = {o}",
        ]
    return [
        f'update {order_t} where order == {o} set status = "shipped"',
        f"update {customer_t} where customer == {c} inc shipped by 1, set last_shipped = {o}",
    ]


class Turns:
    """Whose turn it is to lease: event k leases only after event k-1's
    lease was granted."""

    def __init__(self) -> None:
        self._next = 0
        self._changed = asyncio.Condition()

    async def wait(self, k: int) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self._next == k)

    async def passed(self, k: int) -> None:
        async with self._changed:
            assert self._next == k, f"turn {k} passed while turn {self._next} was due"
            self._next = k + 1
            self._changed.notify_all()


@dataclass
class Figures:
    events: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    highest_committed: int = 0
    first_sequence: int = 0
    out_of_order_commits: int = 0
    per_worker: list[int] = field(default_factory=list)


async def run_worker(index: int, args: argparse.Namespace, turns: Turns, figures: Figures) -> None:
    conn = await whizbang.connect(args.url)
    try:
        worker = whizbang.ProjectionWorker(conn, args.projection)
        sub = await conn.subscribe_all("start", event_types=EVENT_TYPES, markers=True)
        async with sub:
            k = -1
            async for ev in sub:
                if ev is whizbang.CAUGHT_UP:
                    if args.until_caught_up:
                        return
                    continue
                k += 1
                if k % args.workers != index:
                    continue  # another worker's event
                await handle(k, ev, worker, args, turns, figures)
                figures.per_worker[index] += 1
    finally:
        await conn.close()


async def handle(k: int, ev: Any, worker: whizbang.ProjectionWorker, args: argparse.Namespace,
                 turns: Turns, figures: Figures) -> None:
    ops = ops_for(ev, args.order_type, args.customer_type)
    # The slow part's length, the same whichever worker does it.
    delay = random.Random(f"{args.seed}/{ev.position}").uniform(0.001, 0.006)

    async def slow_work() -> None:
        figures.in_flight += 1
        figures.max_in_flight = max(figures.max_in_flight, figures.in_flight)
        try:
            await asyncio.sleep(delay)
        finally:
            figures.in_flight -= 1

    async def work(lease: whizbang.HeldLease) -> list[str]:
        if not args.lease_late:
            await turns.passed(k)  # our sequence is granted: the next event may lease
            await slow_work()  # in parallel with the other workers
        if not figures.first_sequence or lease.sequence < figures.first_sequence:
            figures.first_sequence = lease.sequence
        if lease.sequence < figures.highest_committed:
            figures.out_of_order_commits += 1  # the server holds it until it is due
        figures.highest_committed = max(figures.highest_committed, lease.sequence)
        return ops  # ProjectionWorker commits them under the lease

    if args.lease_late:
        # The mistake: the work first, the lease after it. Sequences then
        # follow the order the work ended in, not the events' order.
        await slow_work()
    else:
        await turns.wait(k)
    await worker.run(work, operation_id=f"{ev.stream}@{ev.version}",
                     source_position=ev.position)
    figures.events += 1


async def generate(url: str, n: int, seed: int) -> None:
    """Appends n events to streams order-<id>: orders placed by a few
    customers, some of them shipped later."""
    rng = random.Random(seed)
    placed: list[tuple[str, str]] = []
    async with await whizbang.connect(url) as conn:
        for i in range(n):
            if placed and rng.random() < 0.3:
                order, customer = placed.pop(rng.randrange(len(placed)))
                ev = whizbang.Event("OrderShipped", json.dumps(
                    {"order": order, "customer": customer}).encode())
            else:
                order, customer = f"o-{i}", f"c-{rng.randrange(12)}"
                placed.append((order, customer))
                ev = whizbang.Event("OrderPlaced", json.dumps(
                    {"order": order, "customer": customer,
                     "amount": rng.randrange(500, 25_000)}).encode())
            await conn.append(f"order-{order}", [ev])


async def ensure_indexes(url: str, wanted: list[tuple[str, str]]) -> None:
    """The clauses above look customers and orders up by a field: index it
    (CreateIndex takes a sequence of the ledger, before the workers start)."""
    async with await whizbang.connect(url) as conn:
        for type_, field_ in wanted:
            have = await conn.request("list_indexes", whizbang.pb.ListIndexes(type=type_))
            if not any(ix.field == field_ for ix in have.indexes):
                await conn.create_index(type_, field_)


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="whizbang://127.0.0.1:7411")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--projection", default="orders")
    p.add_argument("--order-type", default="Order")
    p.add_argument("--customer-type", default="Customer")
    p.add_argument("--seed", type=int, default=1, help="seeds the work's delays and --generate")
    p.add_argument("--generate", type=int, default=0, metavar="N",
                   help="append N events first")
    p.add_argument("--until-caught-up", action="store_true",
                   help="stop once every event stored at the start is committed and applied")
    p.add_argument("--lease-late", action="store_true",
                   help="lease after the work (the mistake: breaks the order)")
    args = p.parse_args()
    if args.workers < 1:
        p.error("--workers must be at least 1")

    if args.generate:
        await generate(args.url, args.generate, args.seed)
    await ensure_indexes(args.url, [(args.order_type, "order"), (args.customer_type, "customer")])
    turns, figures = Turns(), Figures(per_worker=[0] * args.workers)
    async with asyncio.TaskGroup() as tg:  # one failing worker stops them all
        for i in range(args.workers):
            tg.create_task(run_worker(i, args, turns, figures))

    if figures.events:
        async with await whizbang.connect(args.url) as conn:
            wm = await conn.wait_for_watermark(figures.highest_committed, 30_000)
            if not wm.reached:
                print(f"the watermark ({wm.watermark}) did not reach sequence "
                      f"{figures.highest_committed} within 30 s", file=sys.stderr)
                return 1
    print(json.dumps({
        "events": figures.events, "workers": args.workers,
        "first_sequence": figures.first_sequence, "last_sequence": figures.highest_committed,
        "max_in_flight": figures.max_in_flight,
        "out_of_order_commits": figures.out_of_order_commits,
        "per_worker": figures.per_worker}))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except KeyboardInterrupt:  # Ctrl-C while following live
        sys.exit(130)
