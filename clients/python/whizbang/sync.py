"""A blocking client over the asyncio one, for scripts and threads.

    with whizbang.Client("whizbang://127.0.0.1:7411") as c:
        c.append("orders-1", [Event("OrderPlaced", b"{}")])
        for ev in c.read_stream("orders-1"):
            ...

It runs the asyncio ``Connection`` on a private event loop in a daemon
thread; each method hands its coroutine to that loop and waits for the
result, so the behaviour, errors and timeouts are the asyncio client's. It
may be called from several threads at once (calls are pipelined on the one
connection). Iterators fetch item by item through the loop.
"""
from __future__ import annotations

import asyncio
import functools
import threading
from typing import (Any, AsyncIterator, Callable, Coroutine, Iterator, Optional, Sequence,
                    TypeVar, Union)

from . import aio
from ._pb import whizbang_pb2 as pb
from .subscription import Subscription
from .worker import HeldLease, Ops, ProjectionWorker

T = TypeVar("T")


async def _next(it: AsyncIterator[T]) -> T:
    return await it.__anext__()


def _blocking(method: Callable[..., Coroutine[Any, Any, T]]) -> Callable[..., T]:
    @functools.wraps(method)
    def call(self: "Client", *args: Any, **kwargs: Any) -> T:
        return self._run(method(self._conn, *args, **kwargs))
    return call


def _iterating(method: Callable[..., AsyncIterator[T]]) -> Callable[..., Iterator[T]]:
    @functools.wraps(method)
    def call(self: "Client", *args: Any, **kwargs: Any) -> Iterator[T]:
        return self._iterate(method(self._conn, *args, **kwargs))
    return call


class SyncSubscription:
    """A subscription iterated from a thread; ``close()`` unsubscribes."""

    def __init__(self, client: "Client", sub: Subscription) -> None:
        self._client = client
        self._sub = sub

    @property
    def id(self) -> int:
        """The server's id of it (a new one after it resumed)."""
        return self._sub.id

    @property
    def start(self) -> int:
        return self._sub.start

    @property
    def caught_up(self) -> bool:
        return self._sub.caught_up

    @property
    def delivery(self) -> int:
        """A consumer member's: deliveries of the event just yielded."""
        return self._sub.delivery

    @property
    def resumed(self) -> int:
        """Times it was made again after its connection broke."""
        return self._sub.resumed

    def __iter__(self) -> "SyncSubscription":
        return self

    def __next__(self) -> Any:
        try:
            return self._client._run(_next(self._sub))
        except StopAsyncIteration:
            raise StopIteration from None

    def next(self, timeout: Optional[float] = None) -> Any:
        """The next item, waiting at most ``timeout`` seconds
        (``TimeoutError`` then; the subscription stays usable)."""
        async def one() -> Any:
            # A timeout cancels the wait before an item is taken: none is lost.
            return await asyncio.wait_for(_next(self._sub), timeout)
        try:
            return self._client._run(one())
        except StopAsyncIteration:
            raise StopIteration from None

    def close(self) -> None:
        self._client._run(self._sub.close())

    def __enter__(self) -> "SyncSubscription":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Client:
    """A blocking connection; takes ``aio.connect``'s arguments (one URL
    or a list, ``reconnect=True``...)."""

    def __init__(self, url: Union[str, Sequence[str]], **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever,
                                        name="whizbang-client", daemon=True)
        self._thread.start()
        try:
            self._conn: aio.Connection = self._run(aio.connect(url, **options))
        except BaseException:
            self._stop()
            raise

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _iterate(self, agen: AsyncIterator[T]) -> Iterator[T]:
        try:
            while True:
                try:
                    yield self._run(_next(agen))
                except StopAsyncIteration:
                    return
        finally:
            if not self._loop.is_closed():
                self._run(agen.aclose())  # type: ignore[attr-defined]

    def _stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    @property
    def connection(self) -> aio.Connection:
        """The asyncio connection underneath (use it only from its loop)."""
        return self._conn

    @property
    def hello(self) -> pb.HelloResult:
        return self._conn.hello

    @property
    def user(self) -> str:
        return self._conn.user

    @property
    def reconnections(self) -> int:
        """Connections made again since the first (``reconnect=True``)."""
        return self._conn.reconnections

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._run(self._conn.close())
        self._stop()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    ping = _blocking(aio.Connection.ping)
    append = _blocking(aio.Connection.append)
    read_stream = _iterating(aio.Connection.read_stream)
    read_all = _iterating(aio.Connection.read_all)
    stream_info = _blocking(aio.Connection.stream_info)
    stats = _blocking(aio.Connection.stats)
    lease = _blocking(aio.Connection.lease)
    extend = _blocking(aio.Connection.extend)
    release = _blocking(aio.Connection.release)
    stage = _blocking(aio.Connection.stage)
    commit = _blocking(aio.Connection.commit)
    watermark = _blocking(aio.Connection.watermark)
    wait_for_watermark = _blocking(aio.Connection.wait_for_watermark)
    read_ledger = _iterating(aio.Connection.read_ledger)
    get_entity = _blocking(aio.Connection.get_entity)
    query = _iterating(aio.Connection.query)
    explain = _blocking(aio.Connection.explain)
    create_index = _blocking(aio.Connection.create_index)
    drop_index = _blocking(aio.Connection.drop_index)
    create_token = _blocking(aio.Connection.create_token)
    put_user = _blocking(aio.Connection.put_user)
    request = _blocking(aio.Connection.request)
    set_stream_metadata = _blocking(aio.Connection.set_stream_metadata)
    get_stream_metadata = _blocking(aio.Connection.get_stream_metadata)
    delete_stream = _blocking(aio.Connection.delete_stream)
    create_consumer = _blocking(aio.Connection.create_consumer)
    delete_consumer = _blocking(aio.Connection.delete_consumer)
    list_consumers = _blocking(aio.Connection.list_consumers)
    ack = _blocking(aio.Connection.ack)
    nack = _blocking(aio.Connection.nack)
    list_parked = _iterating(aio.Connection.list_parked)
    replay_parked = _blocking(aio.Connection.replay_parked)
    verify = _blocking(aio.Connection.verify)
    list_clients = _blocking(aio.Connection.list_clients)
    list_indexes = _blocking(aio.Connection.list_indexes)

    def scavenge(self, on_progress: Optional[Callable[[pb.ScavengeResult], None]] = None, *,
                 timeout: Optional[float] = None) -> pb.ScavengeResult:
        """``Connection.scavenge``; ``on_progress`` runs in the client's
        thread: keep it short."""
        return self._run(self._conn.scavenge(on_progress, timeout=timeout))

    def backup(self, name: str, on_progress: Optional[Callable[[pb.BackupResult], None]] = None,
               *, timeout: Optional[float] = None) -> pb.BackupResult:
        """``Connection.backup``; ``on_progress`` runs in the client's
        thread: keep it short."""
        return self._run(self._conn.backup(name, on_progress, timeout=timeout))

    def join_consumer(self, name: str, *, window: int = 256) -> SyncSubscription:
        """``Connection.join_consumer``: iterate it; ``sub.delivery`` is the
        count of the event just yielded."""
        return SyncSubscription(self, self._run(self._conn.join_consumer(name, window=window)))

    def subscribe_all(self, *args: Any, **kwargs: Any) -> SyncSubscription:
        return SyncSubscription(self, self._run(self._conn.subscribe_all(*args, **kwargs)))

    def subscribe_stream(self, *args: Any, **kwargs: Any) -> SyncSubscription:
        return SyncSubscription(self, self._run(self._conn.subscribe_stream(*args, **kwargs)))

    def subscribe_ledger(self, *args: Any, **kwargs: Any) -> SyncSubscription:
        return SyncSubscription(self, self._run(self._conn.subscribe_ledger(*args, **kwargs)))

    def run_projection(self, projection: str, handler: Callable[[HeldLease], Ops], *,
                       operation_id: str = "", source_position: int = 0,
                       **worker_options: Any) -> pb.CommitResult:
        """``ProjectionWorker.run`` with a blocking handler: it runs in a
        thread of the loop's executor while the loop extends the lease. A
        lost lease cannot stop a thread: the handler runs to its end and the
        commit is refused. ``handler(lease)`` gets the ``HeldLease``; use its
        ``sequence`` and ``token`` with this client's ``stage`` if needed."""
        worker = ProjectionWorker(self._conn, projection, **worker_options)

        async def in_thread(lease: HeldLease) -> Ops:
            return await self._loop.run_in_executor(None, handler, lease)

        return self._run(worker.run(in_thread, operation_id=operation_id,
                                    source_position=source_position))
