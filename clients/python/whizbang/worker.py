"""The projection worker: a lease as the user thinks of it (docs/LEASES.md).

    worker = ProjectionWorker(conn, "orders", ack_applied=True)
    result = await worker.run(handle, source_position=event.position)

``run`` leases one sequence, runs ``handle(lease)`` while it extends the
lease in the background (every third of its duration), and commits the ops
the handler returns (text or ``Op``, one or a list; ``None`` commits none).
It releases the sequence (a gap) when the handler raises, and re-raises. A
lease lost while the handler runs (an Extend refused: expired, another
token's) cancels the handler and raises that error: its work can no longer
commit. ``lease.stage(ops)`` stores work durably on the way.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Awaitable, Callable, Iterable, Optional, Union

from ._pb import whizbang_pb2 as pb
from .errors import WhizbangError, WhizbangTimeoutError
from .ops import OpLike

if TYPE_CHECKING:
    from .aio import Connection

Ops = Union[OpLike, Iterable[OpLike], None]
Handler = Callable[["HeldLease"], Awaitable[Ops]]


@dataclass
class HeldLease:
    """The lease a handler works under."""

    conn: "Connection"
    projection: str
    sequence: int
    token: int
    duration_ms: int
    expires_at_ms: int
    extends: int = 0

    async def stage(self, ops: Ops) -> None:
        """Stores ops durably as this lease's staged work: recovered and
        committed by the server if this worker dies (docs/LEASES.md)."""
        await self.conn.stage(self.sequence, self.token, ops if ops is not None else [])


class ProjectionWorker:
    """Runs handlers under leases of one projection.

    ``duration_ms``: each lease's and extension's duration (0: the server's
    adaptive one). ``ack_applied``: the commit is answered once applied, with
    the outcome (``apply_error``, ``results``). ``wait_watermark``: after a
    durable commit, wait until the watermark passes it (read-your-writes for
    queries). ``release_on_disconnect``: the server releases the lease if this
    connection drops instead of letting it expire."""

    def __init__(self, conn: "Connection", projection: str, *, duration_ms: int = 0,
                 ack_applied: bool = False, wait_watermark: bool = False,
                 watermark_timeout_ms: int = 30_000,
                 release_on_disconnect: bool = True) -> None:
        self.conn = conn
        self.projection = projection
        self.duration_ms = duration_ms
        self.ack_applied = ack_applied
        self.wait_watermark = wait_watermark
        self.watermark_timeout_ms = watermark_timeout_ms
        self.release_on_disconnect = release_on_disconnect

    async def _keep_alive(self, lease: HeldLease) -> None:
        while True:
            await asyncio.sleep(max(lease.duration_ms, 30) / 3000)
            result = await self.conn.extend(lease.sequence, lease.token, self.duration_ms)
            lease.duration_ms = result.duration_ms
            lease.expires_at_ms = result.expires_at_ms
            lease.extends += 1

    async def _release(self, lease: HeldLease, reason: str) -> None:
        """Best effort, on the way out of a failure: the error that brought us
        here is the one to raise. A lease already gone needs no release, and
        one that cannot be released (the connection is down) expires into a
        gap by itself."""
        try:
            await self.conn.release(lease.sequence, lease.token, reason[:200])
        except WhizbangError:
            pass

    async def run(self, handler: Handler, *, operation_id: str = "",
                  source_position: int = 0) -> pb.CommitResult:
        """Leases a sequence, runs ``handler`` under it, commits what it
        returns; see the module's description."""
        grant = (await self.conn.lease(
            self.projection, duration_ms=self.duration_ms, operation_id=operation_id,
            source_position=source_position,
            release_on_disconnect=self.release_on_disconnect))[0]
        lease = HeldLease(self.conn, self.projection, grant.sequence, grant.token,
                          grant.duration_ms, grant.expires_at_ms)
        work = asyncio.ensure_future(handler(lease))
        keeper = asyncio.ensure_future(self._keep_alive(lease))
        try:
            await asyncio.wait({work, keeper}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            work.cancel()
            keeper.cancel()
            await asyncio.gather(work, keeper, return_exceptions=True)
            await asyncio.shield(self._release(lease, "the worker was cancelled"))
            raise
        if not work.done():
            # The keeper ended first: the lease is lost (or the connection).
            work.cancel()
            await asyncio.gather(work, return_exceptions=True)
            keeper.result()  # raises the Extend's error
            raise AssertionError("unreachable: the keep-alive loop only ends by raising")
        keeper.cancel()
        await asyncio.gather(keeper, return_exceptions=True)
        try:
            ops = work.result()
        except BaseException as e:
            await self._release(lease, f"the handler raised {e!r}")
            raise
        try:
            result = await self.conn.commit(lease.sequence, lease.token, ops,
                                            ack_applied=self.ack_applied)
        except WhizbangError as e:
            # Refused before anything was written (a bad op, a size): the
            # sequence is still ours, and becomes a gap.
            await self._release(lease, f"the commit failed: {e}")
            raise
        if self.wait_watermark and not self.ack_applied:
            wm = await self.conn.wait_for_watermark(result.sequence, self.watermark_timeout_ms)
            if not wm.reached:
                raise WhizbangTimeoutError(
                    f"the watermark ({wm.watermark}) did not reach sequence {result.sequence} "
                    f"within {self.watermark_timeout_ms} ms")
        return result
