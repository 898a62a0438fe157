"""A subscription as an async iterator (docs/SUBSCRIPTIONS.md).

The server pushes at most the credits granted. This side starts with
``window`` credits and grants back what the user has consumed each time that
reaches half the window, so at most ``window`` items wait here and a slow
consumer slows the server's pushes instead of filling memory. ``caught_up``
does not take a credit; it is kept in the queue at its place, so that
``sub.caught_up`` turns true exactly when iteration passes it.
"""
from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any, Optional, Union

from ._pb import whizbang_pb2 as pb
from .errors import ConnectionClosedError, InternalError, WhizbangError, from_pb

if TYPE_CHECKING:
    from .aio import Connection


class _CaughtUp:
    """The place in a subscription where catch-up ends and live begins."""

    def __repr__(self) -> str:
        return "CAUGHT_UP"


CAUGHT_UP = _CaughtUp()

Item = Union[pb.RecordedEvent, pb.LedgerEntry, _CaughtUp]


class Subscription:
    """Yields ``RecordedEvent``s (``$all`` and stream subscriptions) or
    ``LedgerEntry``s (the ledger), in order. ``id`` and ``start`` are the
    server's ``SubscribeResult``. Ends with an error when the server ends it
    (``StreamDeletedError`` for a hard-deleted stream) or the connection goes;
    ``close()`` (or ``async with``) unsubscribes."""

    def __init__(self, conn: "Connection", window: int, markers: bool) -> None:
        self._conn = conn
        self._window = window
        self._markers = markers
        self._queue: deque[Any] = deque()
        self._waiter: Optional[asyncio.Future[None]] = None
        self._error: Optional[BaseException] = None
        self._ended = False
        self._consumed = 0
        self._request_id = 0
        self.id = 0
        self.start = 0
        self.caught_up = False

    # Called by the connection's reader, for every Response with our id
    # after the SubscribeResult.
    def _on_response(self, resp: pb.Response) -> None:
        if resp.HasField("error") and resp.error.code != 0:
            self._end(from_pb(resp.error, f"subscription {self.id}"))
            return
        if resp.WhichOneof("body") != "subscription_item":
            self._end(InternalError(f"subscription {self.id} got a push with body "
                                    f"{resp.WhichOneof('body')!r} (a server bug)"))
            return
        item = resp.subscription_item
        kind = item.WhichOneof("item")
        if kind == "caught_up":
            self._queue.append(CAUGHT_UP)
        elif kind == "event":
            self._queue.append(item.event)
        elif kind == "entry":
            self._queue.append(item.entry)
        else:
            return  # an item of a newer protocol: nothing to deliver
        self._wake()

    def _end(self, error: Optional[BaseException]) -> None:
        if self._ended:
            return
        self._ended = True
        self._error = error
        self._conn._subs.pop(self._request_id, None)
        self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def __aiter__(self) -> "Subscription":
        return self

    async def __anext__(self) -> Any:
        while True:
            while not self._queue:
                if self._ended:
                    if self._error is not None:
                        raise self._error
                    raise StopAsyncIteration
                self._waiter = self._conn._loop.create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None
            item = self._queue.popleft()
            if item is CAUGHT_UP:
                self.caught_up = True
                if self._markers:
                    return item
                continue
            self._consumed += 1
            if self._consumed * 2 >= self._window and not self._ended:
                n, self._consumed = self._consumed, 0
                try:
                    self._conn._send_nowait("credit", pb.Credit(subscription=self.id, n=n),
                                            self._credit_failed)
                except WhizbangError as e:
                    self._end(e)
            return item

    def _credit_failed(self, error: WhizbangError) -> None:
        self._end(error)

    async def close(self) -> None:
        """Unsubscribes: nothing more is delivered. Items already here are
        dropped."""
        if self._ended:
            return
        self._end(None)
        self._queue.clear()
        if self._conn.closed:
            return
        try:
            await self._conn._call("unsubscribe", pb.Unsubscribe(subscription=self.id))
        except ConnectionClosedError:
            pass

    async def __aenter__(self) -> "Subscription":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
