"""The projection worker against a real whizbangd: it commits what the
handler returns, keeps a short lease alive while the handler is slow,
releases on an exception (a gap in the ledger), stages on request, and
reads its own writes."""
from __future__ import annotations

import asyncio

import pytest

import whizbang
from whizbang import ProjectionWorker, fields
from whizbang._pb import whizbang_pb2 as pb

from server import Server


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, 60))


async def ledger_entry(conn: whizbang.Connection, sequence: int) -> pb.LedgerEntry:
    wm = await conn.wait_for_watermark(sequence, 10_000)
    assert wm.reached
    async for entry in conn.read_ledger(sequence, limit=1):
        return entry
    raise AssertionError(f"no ledger entry {sequence}")


def test_commit_with_applied_ack(server: Server) -> None:
    async def main() -> None:
        async with await whizbang.connect(server.url) as conn:
            worker = ProjectionWorker(conn, "carts", ack_applied=True)

            async def handle(lease: whizbang.HeldLease) -> list[str]:
                return [f'upsert Cart "c-{lease.sequence}" {{items: 1}}']

            result = await worker.run(handle, operation_id="op-1", source_position=1)
            assert result.apply_error == pb.OK and result.results[0].affected == 1
            cart = await conn.get_entity("Cart", f"c-{result.sequence}")
            assert fields(cart) == {"items": 1}
            entry = await ledger_entry(conn, result.sequence)
            assert entry.kind == pb.ENTRY_COMMITTED and entry.operation_id == "op-1"
    run(main())


def test_slow_handler_is_kept_alive(server: Server) -> None:
    """A 300 ms lease outlives a 1.2 s handler only if Extend runs."""
    async def main() -> None:
        async with await whizbang.connect(server.url) as conn:
            worker = ProjectionWorker(conn, "slow", duration_ms=300, wait_watermark=True)
            held: list[whizbang.HeldLease] = []

            async def handle(lease: whizbang.HeldLease) -> str:
                held.append(lease)
                await asyncio.sleep(1.2)
                return 'upsert Slow "s-1" {done: true}'

            result = await worker.run(handle)
            assert held[0].extends >= 3
            assert fields(await conn.get_entity("Slow", "s-1")) == {"done": True}
            assert (await ledger_entry(conn, result.sequence)).kind == pb.ENTRY_COMMITTED
    run(main())


def test_handler_exception_releases(server: Server) -> None:
    async def main() -> None:
        async with await whizbang.connect(server.url) as conn:
            worker = ProjectionWorker(conn, "failing", duration_ms=60_000)
            seqs: list[int] = []

            async def handle(lease: whizbang.HeldLease) -> str:
                seqs.append(lease.sequence)
                raise RuntimeError("the handler broke")

            with pytest.raises(RuntimeError, match="handler broke"):
                await worker.run(handle)
            # Released at once (not after the minute the lease had left).
            entry = await ledger_entry(conn, seqs[0])
            assert entry.kind == pb.ENTRY_GAP and entry.reason == pb.GAP_RELEASED
    run(main())


def test_bad_op_is_refused_and_released(server: Server) -> None:
    async def main() -> None:
        async with await whizbang.connect(server.url) as conn:
            worker = ProjectionWorker(conn, "bad-ops", duration_ms=60_000)
            seqs: list[int] = []

            async def handle(lease: whizbang.HeldLease) -> str:
                seqs.append(lease.sequence)
                return 'update Order where total >= set status = "x"'

            with pytest.raises(whizbang.InvalidExpressionError, match="column"):
                await worker.run(handle)
            entry = await ledger_entry(conn, seqs[0])
            assert entry.kind == pb.ENTRY_GAP and entry.reason == pb.GAP_RELEASED
    run(main())


def test_lost_lease_cancels_the_handler(server: Server) -> None:
    """Another party releases the lease (an operator's force release): the
    next Extend fails, the handler is cancelled, the error raised."""
    async def main() -> None:
        async with await whizbang.connect(server.url) as conn, \
                await whizbang.connect(server.url) as admin:
            worker = ProjectionWorker(conn, "stolen", duration_ms=300)
            cancelled = asyncio.Event()

            async def handle(lease: whizbang.HeldLease) -> str:
                await admin.request("release", pb.Release(sequence=lease.sequence, force=True,
                                                          reason="test"))
                try:
                    await asyncio.sleep(30)
                except asyncio.CancelledError:
                    cancelled.set()
                    raise
                return ""

            with pytest.raises((whizbang.LeaseNotFoundError, whizbang.LeaseExpiredError)):
                await worker.run(handle)
            assert cancelled.is_set()
    run(main())


def test_stage_then_commit(server: Server) -> None:
    async def main() -> None:
        async with await whizbang.connect(server.url) as conn:
            worker = ProjectionWorker(conn, "staged", wait_watermark=True)

            async def handle(lease: whizbang.HeldLease) -> list[pb.Op]:
                await lease.stage('upsert Staged "x" {n: 1}')
                return [whizbang.upsert("Staged", "x", {"n": 2})]

            await worker.run(handle)
            assert fields(await conn.get_entity("Staged", "x")) == {"n": 2}
    run(main())
