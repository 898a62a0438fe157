"""Consumer groups (docs/SUBSCRIPTIONS.md §2) against a real whizbangd:
create, list and delete; a member as an iterator with delivery counts; ack
moving the checkpoint; nack retry (delivered again), park (listed, replayed)
and skip; a deleted group ending its members; the blocking facade."""
from __future__ import annotations

import asyncio

import pytest

import whizbang
from whizbang import Event

from server import Server

BOUND_S = 60


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, BOUND_S))


async def take(sub: whizbang.Subscription, n: int) -> list[tuple[str, int]]:
    """n events of a member: (data, delivery)."""
    out = []
    for _ in range(n):
        ev = await asyncio.wait_for(sub.__anext__(), 10)
        out.append((ev.data.decode(), sub.delivery))
    return out


def info_of(infos: list[whizbang.pb.ConsumerInfo], name: str) -> whizbang.pb.ConsumerInfo:
    return next(i for i in infos if i.config.name == name)


def test_create_list_delete(server: Server) -> None:
    async def main() -> None:
        async with await whizbang.connect(server.url) as conn:
            info = await conn.create_consumer("cg-a", stream_prefix="cga-", ack_timeout_ms=5000,
                                              max_deliveries=3)
            assert info.config.name == "cg-a" and info.config.stream_prefix == "cga-"
            assert info.config.max_deliveries == 3 and info.checkpoint == 0
            on_stream = await conn.create_consumer("cg-s", stream="cgs-1", start="end")
            assert on_stream.config.target == whizbang.pb.TARGET_STREAM
            with pytest.raises(whizbang.BadRequestError):
                await conn.create_consumer("cg-a")  # the name is in use
            names = {c.config.name for c in await conn.list_consumers()}
            assert {"cg-a", "cg-s"} <= names
            await conn.delete_consumer("cg-s")
            assert "cg-s" not in {c.config.name for c in await conn.list_consumers()}
            with pytest.raises(whizbang.NotFoundError):
                await conn.join_consumer("cg-none")
            with pytest.raises(ValueError):
                await conn.nack("cg-a", [], action="drop")
    run(main())


def test_ack_moves_the_checkpoint(server: Server) -> None:
    async def main() -> None:
        async with await whizbang.connect(server.url) as conn:
            await conn.create_consumer("cg-ack", stream_prefix="cgack-")
            rs = [await conn.append("cgack-1", [Event("J", str(i).encode())]) for i in range(5)]
            async with await conn.join_consumer("cg-ack", window=8) as member:
                evs = [await asyncio.wait_for(member.__anext__(), 10) for _ in range(5)]
                assert [e.data for e in evs] == [str(i).encode() for i in range(5)]
                assert member.delivery == 1
                # Acking 2..5 leaves the checkpoint below 1; acking 1 moves it.
                assert await conn.ack("cg-ack", [e.id for e in evs[1:]]) < rs[0].first_position
                assert await conn.ack("cg-ack", [evs[0]]) == rs[4].last_position
                assert await conn.ack("cg-ack", [evs[0]]) == rs[4].last_position  # again: nothing
            info = info_of(await conn.list_consumers(), "cg-ack")
            assert info.acked == 5 and info.in_flight == 0 and info.members == 0
    run(main())


def test_nack_retry_park_skip_and_replay(server: Server) -> None:
    async def main() -> None:
        async with await whizbang.connect(server.url) as conn:
            await conn.create_consumer("cg-nack", stream_prefix="cgnack-")
            for name in ("retry", "park", "skip"):
                await conn.append("cgnack-1", [Event("J", name.encode())])
            member = await conn.join_consumer("cg-nack", window=8)
            first = {ev.data.decode(): ev for ev in
                     [await asyncio.wait_for(member.__anext__(), 10) for _ in range(3)]}
            await conn.nack("cg-nack", [first["retry"]], "retry")
            await conn.nack("cg-nack", [first["park"]], "park", reason="poison")
            await conn.nack("cg-nack", [first["skip"]], action="skip")
            assert await take(member, 1) == [("retry", 2)]  # delivered again
            parked = [p async for p in conn.list_parked("cg-nack")]
            assert [(p.event.data, p.reason) for p in parked] == [(b"park", "poison")]
            assert info_of(await conn.list_consumers(), "cg-nack").parked == 1
            assert await conn.replay_parked("cg-nack") == 1
            assert await take(member, 1) == [("park", 1)]  # its count starts again
            assert [p async for p in conn.list_parked("cg-nack")] == []
            evs = [first["retry"], first["park"]]
            last = await conn.ack("cg-nack", evs)
            assert last == first["skip"].position  # everything settled
            info = info_of(await conn.list_consumers(), "cg-nack")
            assert info.parked == 0 and info.redelivered >= 1
            await member.close()
    run(main())


def test_deleting_the_group_ends_its_members(server: Server) -> None:
    async def main() -> None:
        async with await whizbang.connect(server.url) as conn:
            await conn.create_consumer("cg-del", stream_prefix="cgdel-")
            member = await conn.join_consumer("cg-del")
            await conn.delete_consumer("cg-del")
            with pytest.raises(whizbang.NotFoundError):
                await asyncio.wait_for(member.__anext__(), 10)
            assert await conn.ping(1) == 1
    run(main())


def test_competing_members_share_the_events(server: Server) -> None:
    async def main() -> None:
        async with await whizbang.connect(server.url) as a, \
                await whizbang.connect(server.url) as b:
            await a.create_consumer("cg-two", stream_prefix="cgtwo-")
            ma = await a.join_consumer("cg-two", window=4)
            mb = await b.join_consumer("cg-two", window=4)
            for i in range(40):
                await a.append("cgtwo-1", [Event("J", str(i).encode())])
            seen: list[str] = []

            async def work(conn: whizbang.Connection, m: whizbang.Subscription) -> int:
                n = 0
                while len(seen) < 40:
                    try:
                        ev = await asyncio.wait_for(m.__anext__(), 0.5)
                    except asyncio.TimeoutError:
                        continue
                    seen.append(ev.data.decode())
                    await conn.ack("cg-two", [ev])
                    n += 1
                return n

            na, nb = await asyncio.gather(work(a, ma), work(b, mb))
            assert sorted(seen, key=int) == [str(i) for i in range(40)]  # each once
            assert na > 0 and nb > 0
            await ma.close()
            await mb.close()
    run(main())


def test_consumers_through_the_blocking_client(server: Server) -> None:
    with whizbang.Client(server.url) as c:
        c.create_consumer("cg-sync", stream_prefix="cgsync-")
        c.append("cgsync-1", [Event("J", b"a"), Event("J", b"b")])
        with c.join_consumer("cg-sync", window=4) as member:
            a = member.next(timeout=10)
            b = member.next(timeout=10)
            assert (a.data, b.data, member.delivery) == (b"a", b"b", 1)
            c.nack("cg-sync", [a], "park", "later")
            assert [p.event.data for p in c.list_parked("cg-sync")] == [b"a"]
            assert c.replay_parked("cg-sync") == 1
            again = member.next(timeout=10)
            assert again.data == b"a"
            assert c.ack("cg-sync", [again, b]) == b.position
        assert "cg-sync" in [i.config.name for i in c.list_consumers()]
        c.delete_consumer("cg-sync")
