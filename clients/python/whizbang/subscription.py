"""A subscription, or a consumer group's member, as an async iterator
(docs/SUBSCRIPTIONS.md).

The server pushes at most the credits granted. This side starts with
``window`` credits and grants back what the user has consumed each time that
reaches half the window, so at most ``window`` items wait here and a slow
consumer slows the server's pushes instead of filling memory. The invariant:
the server's credits + items queued here + items consumed and not yet
granted back = window. ``caught_up`` does not take a credit; it is kept in
the queue at its place, so that ``sub.caught_up`` turns true exactly when
iteration passes it.

With a connection that reconnects, a broken connection does not end the
iteration: the subscription is made again on the new connection from just
after the last item received (its position, version or sequence; before
any, the first the server said it would deliver), with the credits the
invariant leaves, so nothing is skipped and nothing comes twice; the
caught-up mark is not repeated. A consumer member joins its group again
(its unsettled events are delivered again, to it or another member:
delivery there is at least once). Only when that fails does the iteration
raise.
"""
from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any, Optional, Union

from ._pb import whizbang_pb2 as pb
from .errors import ConnectionClosedError, InternalError, WhizbangError, from_pb

if TYPE_CHECKING:
    from .aio import Connection, _Link


class _CaughtUp:
    """The place in a subscription where catch-up ends and live begins."""

    def __repr__(self) -> str:
        return "CAUGHT_UP"


CAUGHT_UP = _CaughtUp()

Item = Union[pb.RecordedEvent, pb.LedgerEntry, _CaughtUp]


class Subscription:
    """Yields ``RecordedEvent``s (``$all`` and stream subscriptions, consumer
    members) or ``LedgerEntry``s (the ledger), in order. ``id`` and ``start``
    are the server's ``SubscribeResult`` (of the latest Subscribe, after a
    reconnection). Ends with an error when the server ends it
    (``StreamDeletedError`` for a hard-deleted stream, ``NotFoundError`` for
    a deleted consumer group) or the connection goes for good; ``close()``
    (or ``async with``) unsubscribes. For a consumer member, ``delivery`` is
    how many times the event just yielded has been delivered."""

    def __init__(self, conn: "Connection", window: int, markers: bool, field: str = "subscribe",
                 request: Any = None, key: Optional[str] = None) -> None:
        self._conn = conn
        self._window = window
        self._markers = markers
        self._field = field
        self._request = request
        # What the subscription resumes after: an event's position ($all)
        # or version (a stream), an entry's sequence; None: a member.
        self._key = key
        self._next: Optional[int] = None
        self._member = field == "join_consumer"
        self._queue: deque[Any] = deque()
        self._waiter: Optional[asyncio.Future[None]] = None
        self._error: Optional[BaseException] = None
        self._ended = False
        self._consumed = 0
        self._request_id = 0
        self._link: Optional["_Link"] = None
        self._live = False
        self._resuming = False
        self._caught_up_seen = False
        self.id = 0
        self.start = 0
        self.caught_up = False
        self.delivery = 0
        # Times it was made again after its connection broke.
        self.resumed = 0

    # ------------------------------------------------------------ the connection's side

    def _attach(self, link: "_Link", request_id: int) -> None:
        """Its (re)subscribe request went out on link with this id."""
        self._link = link
        self._request_id = request_id

    def _detach(self) -> None:
        if self._link is not None and self._link.subs.get(self._request_id) is self:
            del self._link.subs[self._request_id]

    def _started(self, result: pb.SubscribeResult) -> None:
        self.id = result.subscription
        self.start = result.start
        if self._next is None:
            self._next = result.start
        self._live = True

    def _resume_request(self) -> tuple[str, Any]:
        """The request that makes it again: after the last item received,
        with the credits the window leaves."""
        req = type(self._request)()
        req.CopyFrom(self._request)
        queued = sum(1 for item in self._queue if item is not CAUGHT_UP)
        req.credits = max(0, self._window - queued - self._consumed)
        if not self._member:
            setattr(req, "from", pb.FROM_POSITION)
            req.position = self._next if self._next is not None else self.start
        return self._field, req

    def _resumed(self, result: Optional[pb.SubscribeResult],
                 error: Optional[WhizbangError]) -> None:
        self._resuming = False
        if error is not None:
            self._end(error)
            return
        assert result is not None
        self.id = result.subscription
        self.start = result.start
        self.resumed += 1
        if self._ended:
            # Closed while it was being made again: end the new one.
            link = self._link
            if link is not None and link.closed is None:
                self._conn._spawn(self._unsubscribe(link))
            return
        self._grant()

    def _link_lost(self, link: "_Link", error: WhizbangError) -> None:
        """Its link broke (or the server is shutting down): resume on a new
        one when the connection reconnects, else end with the error."""
        if self._ended or link is not self._link or not self._live or self._resuming:
            return
        if self._conn._reconnect is not None and not self._conn._closing:
            self._resuming = True
            self._conn._spawn(self._conn._resubscribe(self))
            return
        self._end(error)

    # Called by the link's reader, for every Response with our id after the
    # SubscribeResult.
    def _on_response(self, resp: pb.Response) -> None:
        if resp.HasField("error") and resp.error.code != 0:
            error = from_pb(resp.error, f"subscription {self.id}")
            link = self._link
            if resp.error.code == pb.SHUTTING_DOWN and link is not None:
                # Not the subscription's end: the server's. Resume on the
                # next server (or end, without reconnect).
                link.draining = True
                self._detach()
                self._link_lost(link, error)
                return
            self._end(error)
            return
        if resp.WhichOneof("body") != "subscription_item":
            self._end(InternalError(f"subscription {self.id} got a push with body "
                                    f"{resp.WhichOneof('body')!r} (a server bug)"))
            return
        item = resp.subscription_item
        kind = item.WhichOneof("item")
        if kind == "event":
            ev = item.event
            if self._member:
                self._queue.append((ev, item.delivery))
            else:
                self._queue.append(ev)
                self._next = (ev.position if self._key == "position" else ev.version) + 1
        elif kind == "entry":
            self._queue.append(item.entry)
            self._next = item.entry.sequence + 1
        elif kind == "caught_up":
            if self._caught_up_seen:
                return  # a resumed subscription is caught up again: said once
            self._caught_up_seen = True
            self._queue.append(CAUGHT_UP)
        else:
            return  # an item of a newer protocol: nothing to deliver
        self._wake()

    def _end(self, error: Optional[BaseException]) -> None:
        if self._ended:
            return
        self._ended = True
        self._error = error
        self._detach()
        self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    # ------------------------------------------------------------ the user's side

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
            if self._consumed * 2 >= self._window:
                self._grant()
            if self._member:
                self.delivery = item[1]
                return item[0]
            return item

    def _grant(self) -> None:
        """Grants back what was consumed once it is half the window; not
        while the subscription is being made again (the new one gets what is
        due when it is made), nor on a link that is gone."""
        maybe = self._link
        if (self._ended or self._resuming or maybe is None or maybe.closed is not None
                or self._consumed * 2 < self._window):
            return
        link: "_Link" = maybe
        n, self._consumed = self._consumed, 0

        def refused(error: WhizbangError) -> None:
            # A link that broke (or drains) under the Credit: the
            # subscription hears of it from the link, and resumes.
            if link is self._link and link.closed is None and not link.draining:
                self._end(error)
        try:
            link.send_nowait("credit", pb.Credit(subscription=self.id, n=n), refused)
        except WhizbangError as e:
            self._end(e)

    async def _unsubscribe(self, link: "_Link") -> None:
        try:
            await link.call("unsubscribe", pb.Unsubscribe(subscription=self.id),
                            self._conn.call_timeout)
        except ConnectionClosedError:
            pass
        except WhizbangError:
            pass  # ended by the server meanwhile (NOT_FOUND): nothing to undo

    async def close(self) -> None:
        """Unsubscribes (a member leaves its group): nothing more is
        delivered. Items already here are dropped."""
        if self._ended:
            return
        link = self._link
        self._end(None)
        self._queue.clear()
        if self._resuming or link is None or link.closed is not None:
            return  # a subscription being made again is ended once made
        await self._unsubscribe(link)

    async def __aenter__(self) -> "Subscription":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
