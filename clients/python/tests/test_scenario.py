"""The scripted scenario against a real whizbangd (the conformance scenario
of issue 14, without consumer groups): hello → append with expected versions
(and a WRONG_EXPECTED_VERSION with actual_version) → read → subscribe, caught
up then live → lease, commit with a text where clause → watermark → query.
Each step checks what a user would notice."""
from __future__ import annotations

import asyncio

import pytest

import whizbang
from whizbang import ANY, CAUGHT_UP, NO_STREAM, STREAM_EXISTS, Event, fields
from whizbang._pb import whizbang_pb2 as pb

from server import Server

BOUND_S = 60


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, BOUND_S))


def test_scenario(server: Server) -> None:
    async def main() -> None:
        async with await whizbang.connect(server.url, client_name="scenario") as conn:
            # Hello.
            assert conn.hello.protocol_version == 1
            assert conn.hello.max_frame == 4194304
            assert "admin" in conn.roles  # --anonymous-role=admin

            # Appends with expected versions.
            r = await conn.append("order-1", [Event("OrderPlaced", b'{"total":120}')],
                                  expected=NO_STREAM)
            assert r.stream_version == 0 and r.first_position == r.last_position
            r = await conn.append("order-1", [Event("OrderPaid"), Event("OrderShipped")],
                                  exact=0)
            assert r.stream_version == 2
            await conn.append("order-1", [Event("Noted")], expected=STREAM_EXISTS)
            await conn.append("order-1", [Event("Noted")], expected=ANY)
            with pytest.raises(whizbang.WrongExpectedVersionError) as e:
                await conn.append("order-1", [Event("Late")], exact=1)
            assert e.value.actual_version == 4 and e.value.code == 7
            with pytest.raises(whizbang.WrongExpectedVersionError) as e:
                await conn.append("order-2", [Event("X")], expected=STREAM_EXISTS)
            assert e.value.actual_version == -1

            # Read it back, both ways, paging by two.
            fwd = [ev async for ev in conn.read_stream("order-1", page_size=2)]
            assert [ev.type for ev in fwd] == ["OrderPlaced", "OrderPaid", "OrderShipped",
                                               "Noted", "Noted"]
            assert [ev.version for ev in fwd] == [0, 1, 2, 3, 4]
            assert fwd[0].data == b'{"total":120}' and len(fwd[0].id) == 16
            back = [ev.version async for ev in conn.read_stream("order-1", backward=True,
                                                                   page_size=2)]
            assert back == [4, 3, 2, 1, 0]
            with pytest.raises(whizbang.NotFoundError):
                [ev async for ev in conn.read_stream("no-such-stream")]
            info = await conn.stream_info("order-1")
            assert info.last_version == 4 and info.event_count == 5

            # Subscribe: the stored events, caught up, then live ones.
            sub = await conn.subscribe_stream("order-1", markers=True, window=4)
            seen = []
            async for item in sub:
                if item is CAUGHT_UP:
                    break
                seen.append(item.version)
            assert seen == [0, 1, 2, 3, 4] and sub.caught_up
            await conn.append("order-1", [Event(f"Live{i}") for i in range(10)])
            live = [(await sub.__anext__()).type for _ in range(10)]
            assert live == [f"Live{i}" for i in range(10)]  # 10 > window: credits flowed
            await sub.close()

            # A lease, committed with text ops and a text where clause.
            [grant] = await conn.lease("orders-view", duration_ms=5000)
            await conn.commit(grant.sequence, grant.token, [
                'upsert Order "o-1" {customer_id: "c-42", status: "Pending", total: 120}',
                'upsert Order "o-2" {customer_id: "c-42", status: "Pending", total: 80}',
                whizbang.upsert("Order", "o-3", {"customer_id": "c-7", "status": "Pending",
                                                 "total": 300}),
            ])
            [grant2] = await conn.lease("orders-view", duration_ms=5000)
            result = await conn.commit(
                grant2.sequence, grant2.token,
                'update Order where customer_id == "c-42" and total >= 100 set status = "Paid"')
            assert result.sequence == grant2.sequence

            # The watermark, then the query sees both commits.
            wm = await conn.wait_for_watermark(result.sequence, timeout_ms=10_000)
            assert wm.reached and wm.watermark >= result.sequence
            assert (await conn.watermark()).watermark >= result.sequence
            paid = [e async for e in conn.query("Order", 'status == "Paid"')]
            assert [e.id for e in paid] == ["o-1"]
            assert fields(paid[0]) == {"customer_id": "c-42", "status": "Paid", "total": 120}
            every = [e.id async for e in conn.query("Order", page_size=1)]
            assert every == ["o-1", "o-2", "o-3"]
            assert (await conn.get_entity("Order", "o-3")).version == 1
            plan = await conn.explain("Order", 'status == "Paid"')
            assert plan.strategy == pb.PLAN_SCAN and plan.type_entities == 3
            with pytest.raises(whizbang.InvalidExpressionError, match="column"):
                await conn.explain("Order", "status ==")
    run(main())


def test_pipelined_appends_and_idempotent_retry(server: Server) -> None:
    async def main() -> None:
        async with await whizbang.connect(server.url) as conn:
            results = await asyncio.gather(*(
                conn.append(f"pipe-{i % 8}", [Event("E", str(i).encode())]) for i in range(1000)))
            positions = sorted(r.last_position for r in results)
            assert positions == list(range(positions[0], positions[0] + 1000))
            events = [Event("Once"), Event("Twice")]
            first = await conn.append("retry-1", events)
            again = await conn.append("retry-1", events)  # the same ids: a replay
            assert again.idempotent_replay and again.first_position == first.first_position
            assert [e.type async for e in conn.read_stream("retry-1")] == ["Once", "Twice"]
            with pytest.raises(whizbang.IdempotencyConflictError):
                await conn.append("retry-2", events)
    run(main())


def test_filtered_read_all_follows_empty_pages(server: Server) -> None:
    """The server examines at most 10000 events per filtered page: a rare
    type behind 12000 others comes after a page that is empty but not the
    end. The iterator must read on."""
    async def main() -> None:
        async with await whizbang.connect(server.url) as conn:
            start = (await conn.stats()).last_position + 1
            for _ in range(12):
                await conn.append("filler", [Event("Filler") for _ in range(1000)])
            await conn.append("rare", [Event("Rare", b"found")])
            pages = []
            async for ev in conn.read_all(start, event_types=["Rare"]):
                pages.append(ev)
            assert [ev.data for ev in pages] == [b"found"]
            # and unfiltered, in bounded pages, backward from the end
            last = [ev.type async for ev in conn.read_all(backward=True, limit=3, page_size=2)]
            assert last == ["Rare", "Filler", "Filler"]
    run(main())


def test_subscribe_all_and_ledger(server: Server) -> None:
    async def main() -> None:
        async with await whizbang.connect(server.url) as conn:
            end = (await conn.stats()).last_position + 1
            async with await conn.subscribe_all(end, stream_prefix="suball-") as sub:
                await conn.append("other", [Event("X")])
                await conn.append("suball-1", [Event("A"), Event("B")])
                got = [(await sub.__anext__()).type for _ in range(2)]
                assert got == ["A", "B"]
            wm = (await conn.watermark()).watermark
            ledger = await conn.subscribe_ledger(wm + 1)
            [grant] = await conn.lease("ledger-view", duration_ms=5000)
            await conn.commit(grant.sequence, grant.token, 'upsert Note "n-1" {text: "hi"}')
            entry = await asyncio.wait_for(ledger.__anext__(), 10)
            assert entry.sequence == grant.sequence and entry.projection == "ledger-view"
            assert entry.ops[0].WhichOneof("kind") == "upsert"  # stored structured, never text
            await ledger.close()
    run(main())


def test_stats_and_ping(server: Server) -> None:
    async def main() -> None:
        async with await whizbang.connect(server.url) as conn:
            assert await conn.ping(12345) == 12345
            stats = await conn.stats()
            assert stats.server_version and stats.connections_current >= 1
    run(main())
