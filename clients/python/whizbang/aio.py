"""The asyncio client: one connection to whizbangd, many calls in flight.

    async with await whizbang.connect("whizbang://127.0.0.1:7411") as conn:
        await conn.append("orders-1", [Event("OrderPlaced", b"{}")], expected=NO_STREAM)
        async for ev in conn.read_stream("orders-1"):
            print(ev.version, ev.type)

How it works (docs/PROTOCOL.md §1-2): a call gets the next request id, its
frame joins the output (frames written in one loop turn go out in one write),
and it waits for the answer with that id. One reader task cuts the input into
frames and dispatches each by id: an answer to its call, a push (subscription
item, progress) to its subscription or progress callback; ``Response{id 0,
pong}`` is a keepalive and is skipped.

What fails, and how:
- an error answer raises the ``WhizbangError`` subclass of its code;
- an error with id 0 (connection-level: FRAME_TOO_LARGE, RESOURCE_EXHAUSTED,
  BAD_REQUEST) fails every call in flight and every subscription with it, and
  the connection is closed: the server closes it too, or could not tell which
  request it was about;
- the server closing the connection, even in the middle of a frame, a frame
  above ``max_incoming_frame``, bytes that do not decode: every call in flight
  and every later one raises ``ConnectionClosedError`` (``ProtocolError`` for
  the last two);
- no answer within the call's timeout: ``WhizbangTimeoutError`` (the request
  may still take effect; a late answer is dropped);
- an answer without the body the request → answer table names:
  ``InternalError`` (a server bug, §2);
- nothing from the server for ``dead_after`` seconds (it sends keepalives on
  a quiet connection): the connection is taken for dead, as if closed.

Reconnection (``connect(..., reconnect=True)`` or a ``Reconnect``): the
socket and what is in flight on it are a ``_Link``; the ``Connection`` keeps
one and, when it breaks, makes a new one (the URLs in turn, the next host
first, with exponential backoff and jitter between rounds) when a call or a
subscription needs it. A call in flight when its link broke is sent again on
the new link only when that is safe (``RETRYABLE``: reads, appends, whose
UUIDv7 event ids make the retry a replay, commits with their token and ops,
acks...); the others raise ``ConnectionLostError``. A request answered
SHUTTING_DOWN was not carried out and is sent again the same way.
Subscriptions resume after the last item they received (a consumer member
joins again), so nothing is skipped and nothing delivered twice.
"""
from __future__ import annotations

import asyncio
import random
import ssl
from dataclasses import dataclass
from typing import (Any, AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Optional,
                    Sequence, Union)

from . import errors, framing, scram
from ._pb import whizbang_pb2 as pb
from .errors import (ConnectionClosedError, ConnectionLostError, ErrorCode, InternalError, ProtocolError,
                     UnauthenticatedError, WhizbangError, WhizbangTimeoutError)
from .ops import Event, OpLike, WhereLike, as_ops, as_where, uuid7
from .subscription import Subscription
from .url import ServerURL, parse_url

PROTOCOL_VERSION = 1
ALPN = "whizbang/1"
U64_MAX = (1 << 64) - 1

# Each request's answer field (docs/PROTOCOL.md §2's table; tests/test_answers.py
# checks this against the document and the proto).
ANSWERS: dict[str, str] = {
    "hello": "hello", "ping": "pong", "append_events": "append_events",
    "read_stream": "read_stream", "read_all": "read_all", "get_stream_info": "stream_info",
    "get_stats": "stats", "lease": "lease", "extend": "extend", "release": "release",
    "stage": "stage", "commit": "commit", "read_ledger": "read_ledger",
    "get_watermark": "watermark", "wait_for_watermark": "watermark",
    "get_entity": "get_entity", "query_entities": "query", "create_index": "index",
    "drop_index": "index", "list_indexes": "indexes", "explain": "plan", "verify": "verify",
    "subscribe": "subscribe", "credit": "credit", "unsubscribe": "unsubscribe",
    "create_consumer": "consumer", "delete_consumer": "delete_consumer", "ack": "ack",
    "nack": "nack", "replay_parked": "replay_parked", "list_consumers": "consumers",
    "join_consumer": "subscribe", "list_parked": "parked",
    "set_stream_metadata": "stream_metadata", "get_stream_metadata": "stream_metadata",
    "delete_stream": "delete_stream", "scavenge": "scavenge", "backup": "backup",
    "authenticate": "authenticate", "put_user": "put_user", "delete_user": "delete_user",
    "put_role": "put_role", "delete_role": "delete_role", "create_token": "create_token",
    "revoke_token": "revoke_token", "reload": "reload", "disconnect": "disconnect",
    "list_users": "users", "list_roles": "roles", "list_tokens": "tokens",
    "list_clients": "clients",
}

# Requests that may be sent again after the connection broke before their
# answer came: doing them twice is doing them once (an append's event ids make
# its retry a replay, PROTOCOL.md §4.2; a commit's token and ops make its retry
# answered as the first, §4.8; settling a settled event does nothing,
# SUBSCRIPTIONS.md §2.3), or they only read. The clients/typescript set.
RETRYABLE: frozenset[str] = frozenset({
    "ping", "append_events", "read_stream", "read_all", "get_stream_info", "get_stats",
    "extend", "stage", "commit", "read_ledger", "get_watermark", "wait_for_watermark",
    "get_entity", "query_entities", "list_indexes", "explain", "verify", "subscribe",
    "list_consumers", "join_consumer", "ack", "nack", "list_parked", "replay_parked",
    "set_stream_metadata", "get_stream_metadata", "put_user", "list_users", "list_roles",
    "list_tokens", "list_clients",
})


@dataclass(frozen=True)
class Reconnect:
    """How a connection is made again when it breaks (``connect(...,
    reconnect=Reconnect(...))``; ``reconnect=True`` takes these defaults).

    ``initial_delay``: the first wait between rounds of attempts, in
    seconds; it doubles after each failed round up to ``max_delay``, and each
    wait is between half of it and all of it, at random (jitter, so that
    many clients do not come back at once). After ``give_up_after`` seconds
    or ``max_attempts`` rounds (None: no bound) of failures, the calls and
    subscriptions waiting fail with ``ConnectionClosedError``; the next call
    tries again. ``retries``: how many times one call is sent again after
    links broke under it."""

    initial_delay: float = 0.1
    max_delay: float = 5.0
    give_up_after: float = 60.0
    max_attempts: Optional[int] = None
    retries: int = 5


# Expected versions of an append; an int >= 0 means EXACT that version.
ANY = pb.ANY
NO_STREAM = pb.NO_STREAM
STREAM_EXISTS = pb.STREAM_EXISTS

Start = Union[int, str]  # "start", "end", or a position / version / sequence
_DEFAULT: Any = object()
_WRITE_HIGH_WATER = 1 << 20
# Timeouts are checked by one sweep over the calls in flight this often while
# any is in flight (a timer per call costs more than the rest of the call).
_SWEEP_S = 0.05


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


# The key of each Request body field (length-delimited), so that a request is
# encoded as its id and its serialized body without building a Request
# (PROTOCOL.md §6; tests/test_tables.py checks it against the runtime's
# encoding).
_BODY_KEYS: dict[str, bytes] = {
    f.name: _varint(f.number << 3 | 2)
    for f in pb.Request.DESCRIPTOR.oneofs_by_name["body"].fields
}


def encode_request(rid: int, field: str, msg: Any) -> bytes:
    """The bytes of ``Request{id: rid, <field>: msg}``."""
    body: bytes = msg.SerializeToString()
    return b"\x08" + _varint(rid) + _BODY_KEYS[field] + _varint(len(body)) + body


class _Call:
    """A request waiting for its answer."""

    __slots__ = ("fut", "field", "body", "deadline", "push", "on_error")

    def __init__(self, fut: Optional[asyncio.Future[Any]], field: str,
                 push: Optional[Callable[[pb.Response], bool]] = None,
                 on_error: Optional[Callable[[WhizbangError], None]] = None) -> None:
        self.fut = fut
        self.field = field
        self.body = ANSWERS[field]
        self.deadline: Optional[float] = None
        self.push = push
        self.on_error = on_error


class _Link:
    """One socket to the server: the frames going out, the calls waiting on
    it, the subscriptions whose pushes it carries, and the task reading it.
    A ``Connection`` has one at a time; with ``reconnect`` it makes a new one
    when this one breaks. Request ids count from 1 on each link."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                 max_incoming_frame: int, dead_after: Optional[float],
                 host_index: int = 0) -> None:
        self.reader = reader
        self.writer = writer
        self.loop = asyncio.get_running_loop()
        self.decoder = framing.FrameDecoder(max_incoming_frame)
        self.pending: dict[int, _Call] = {}
        self.subs: dict[int, Subscription] = {}
        self.next_id = 1
        self.out: list[bytes] = []
        self.flush_scheduled = False
        # Why the link is gone (None while it works), and the error that
        # ended it as the calls in flight got it.
        self.closed: Optional[ConnectionClosedError] = None
        self.failure: Optional[WhizbangError] = None
        # A request was answered SHUTTING_DOWN: the server is stopping, so
        # new calls wait for a new link (reconnect only).
        self.draining = False
        self.sweep: Optional[asyncio.TimerHandle] = None
        self.host_index = host_index
        # Until Hello answers: the protocol's smallest max_frame.
        self.max_frame = 4096
        self.hello = pb.HelloResult()
        self.user = ""
        self.roles: list[str] = []
        self.keepalives = 0
        self.dead_after = dead_after
        self.last_input = self.loop.time()
        self.watchdog: Optional[asyncio.TimerHandle] = None
        if dead_after is not None:
            self.watchdog = self.loop.call_later(dead_after / 4, self._watch)
        self.task = self.loop.create_task(self._read_loop())

    @property
    def usable(self) -> bool:
        return self.closed is None and not self.draining

    async def close(self, why: ConnectionClosedError) -> None:
        self.fail(why)
        if self.task is not asyncio.current_task():
            self.task.cancel()
            try:
                await self.task
            except BaseException:  # noqa: BLE001 - the task's own end, already reported
                pass
        try:
            await asyncio.wait_for(self.writer.wait_closed(), 5)
        except (OSError, ssl.SSLError, asyncio.TimeoutError):
            pass

    def fail(self, exc: WhizbangError) -> None:
        """Ends the link: every call in flight gets exc, every subscription
        on it hears of it (and resumes elsewhere or ends), later calls on it
        a ConnectionClosedError naming it."""
        if self.closed is not None:
            return
        if isinstance(exc, ConnectionClosedError):
            self.closed = exc
        else:
            self.closed = ConnectionClosedError(f"the connection is closed: {exc}")
            self.closed.__cause__ = exc
        self.failure = exc
        pending, self.pending = self.pending, {}
        for call in pending.values():
            self.settle_error(call, exc)
        subs, self.subs = self.subs, {}
        for sub in subs.values():
            sub._link_lost(self, exc)
        self.out.clear()
        for timer in (self.sweep, self.watchdog):
            if timer is not None:
                timer.cancel()
        self.sweep = self.watchdog = None
        self.writer.close()

    def _watch(self) -> None:
        """Takes the server for dead after dead_after seconds without a byte
        (it sends keepalives on a quiet connection, PROTOCOL.md §1)."""
        self.watchdog = None
        if self.closed is not None or self.dead_after is None:
            return
        quiet = self.loop.time() - self.last_input
        if quiet >= self.dead_after:
            self.fail(ConnectionClosedError(
                f"nothing from the server for {quiet:.1f} s (dead_after={self.dead_after:g}): "
                "the connection is taken for dead"))
            return
        self.watchdog = self.loop.call_later(self.dead_after / 4, self._watch)

    # ------------------------------------------------------------ the reader

    async def _read_loop(self) -> None:
        try:
            while True:
                data = await self.reader.read(1 << 18)
                if not data:
                    held = self.decoder.buffered
                    raise ConnectionClosedError(
                        "the server closed the connection" +
                        (f" in the middle of a frame ({held} bytes of it received)" if held else ""))
                self.last_input = self.loop.time()
                try:
                    frames = self.decoder.feed(data)
                except framing.FrameTooLarge as e:
                    raise ProtocolError(f"the server sent {e}: the connection is dropped") from None
                for payload in frames:
                    try:
                        resp = pb.Response.FromString(payload)
                    except Exception as e:  # the protobuf runtime's DecodeError, whatever its module
                        raise ProtocolError(
                            f"the server sent a frame of {len(payload)} bytes that does not decode "
                            f"as a Response ({e}): the connection is dropped") from None
                    self._dispatch(resp)
        except asyncio.CancelledError:
            raise
        except WhizbangError as e:
            self.fail(e)
        except (OSError, ssl.SSLError, EOFError) as e:
            closed = ConnectionClosedError(f"the connection failed: {e}")
            closed.__cause__ = e
            self.fail(closed)
        except Exception as e:  # a bug here must not leave callers waiting for ever
            bug = InternalError(f"this client's reader failed: {e!r}")
            bug.__cause__ = e
            self.fail(bug)

    def _dispatch(self, resp: pb.Response) -> None:
        rid = resp.id
        has_error = resp.HasField("error") and resp.error.code != pb.OK
        if rid == 0:
            if has_error:
                raise errors.from_pb(resp.error, "the server, for the whole connection")
            if resp.WhichOneof("body") == "pong":
                self.keepalives += 1
                return
            raise ProtocolError("the server sent a Response with id 0 that is neither an "
                                "error nor a keepalive")
        call = self.pending.get(rid)
        if call is None:
            sub = self.subs.get(rid)
            if sub is not None:
                sub._on_response(resp)
            # else: the late answer of a call that timed out, or a push of a
            # subscription that ended here: nobody waits for it.
            return
        if call.push is not None and not has_error and call.push(resp):
            return
        del self.pending[rid]
        if has_error:
            self.settle_error(call, errors.from_pb(resp.error))
            return
        body = resp.WhichOneof("body")
        if body != call.body:
            self.settle_error(call, InternalError(
                f"the server answered with body {body!r} where the protocol names "
                f"{call.body!r} (a server bug)"))
            return
        if call.fut is not None and not call.fut.done():
            call.fut.set_result(getattr(resp, body))

    @staticmethod
    def settle_error(call: _Call, exc: WhizbangError) -> None:
        if call.fut is not None:
            if not call.fut.done():
                call.fut.set_exception(exc)
        elif call.on_error is not None:
            call.on_error(exc)

    # ------------------------------------------------------------ sending

    def _flush(self) -> None:
        self.flush_scheduled = False
        if self.out and self.closed is None:
            self.writer.write(b"".join(self.out))
            self.out.clear()

    def send(self, field: str, msg: Any, call: _Call) -> int:
        """Queues the request; returns its id. Raises when the link is
        closed, or for a request above the server's max_frame (refused here,
        so that the connection survives)."""
        if self.closed is not None:
            err = ConnectionClosedError(self.closed.message)
            err.__cause__ = self.closed.__cause__
            raise err
        rid = self.next_id
        payload = encode_request(rid, field, msg)
        if len(payload) > self.max_frame:
            raise errors.FrameTooLargeError(
                f"refused here: this {field} request takes {len(payload)} bytes, more than the "
                f"server's max_frame of {self.max_frame}; the connection stays open",
                code=ErrorCode.FRAME_TOO_LARGE)
        self.next_id += 1
        self.out.append(framing.HEADER.pack(len(payload)))
        self.out.append(payload)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self._flush)
        self.pending[rid] = call
        return rid

    def send_nowait(self, field: str, msg: Any,
                    on_error: Callable[[WhizbangError], None]) -> None:
        """Sends a request whose answer nobody awaits (a Credit): only an
        error answer is reported, to on_error."""
        self.send(field, msg, _Call(None, field, on_error=on_error))

    def _sweep_timeouts(self) -> None:
        """Fails the calls whose deadline passed; runs while any has one."""
        self.sweep = None
        now = self.loop.time()
        expired = [rid for rid, c in self.pending.items()
                   if c.deadline is not None and c.deadline <= now]
        for rid in expired:
            call = self.pending.pop(rid)
            self.settle_error(call, WhizbangTimeoutError(
                f"no answer to {call.field} (request {rid}) within its timeout"))
        if any(c.deadline is not None for c in self.pending.values()):
            self.sweep = self.loop.call_later(_SWEEP_S, self._sweep_timeouts)

    async def call(self, field: str, msg: Any, timeout: Optional[float],
                   push: Optional[Callable[[pb.Response], bool]] = None,
                   sub: Optional[Subscription] = None) -> Any:
        """Sends one request on this link and returns its answer's body."""
        if self.closed is None:
            transport = self.writer.transport
            if transport is not None and transport.get_write_buffer_size() > _WRITE_HIGH_WATER:
                try:
                    await self.writer.drain()
                except (OSError, ssl.SSLError):
                    pass  # the reader reports the failure; send() below raises it
        fut: asyncio.Future[Any] = self.loop.create_future()
        call = _Call(fut, field, push)
        rid = self.send(field, msg, call)
        if sub is not None:
            sub._attach(self, rid)
            self.subs[rid] = sub
        if timeout is not None:
            call.deadline = self.loop.time() + timeout
            if self.sweep is None:
                self.sweep = self.loop.call_later(min(_SWEEP_S, timeout), self._sweep_timeouts)
        try:
            return await fut
        except asyncio.CancelledError:
            # The caller gave up: its answer, when it comes, is dropped.
            if self.pending.get(rid) is call:
                del self.pending[rid]
            raise

    async def say_hello(self, url: ServerURL, client_name: str, token: Optional[str],
                        password: Optional[str]) -> None:
        hello = pb.Hello(protocol_version=PROTOCOL_VERSION, client_name=client_name)
        exchange: Optional[scram.ScramClient] = None
        if token is not None:
            if url.user or url.external:
                raise ValueError("give a token or a user (or EXTERNAL), not both")
            hello.token = token.encode("utf-8")
        elif url.external:
            hello.mechanism = "EXTERNAL"
        elif url.user:
            if password is None:
                raise ValueError(f"the URL names user {url.user!r}: give password=")
            exchange = scram.ScramClient(url.user, password)
            hello.mechanism = scram.MECHANISM
            hello.auth_data = exchange.first()
        result: pb.HelloResult = await self.call("hello", hello, None)
        self.hello = result
        self.max_frame = result.max_frame or self.max_frame
        self.user = result.user
        self.roles = list(result.roles)
        if exchange is not None:
            # PBKDF2 runs off the loop: tens of milliseconds.
            final = await self.loop.run_in_executor(None, exchange.final, result.auth_data)
            auth: pb.AuthenticateResult = await self.call(
                "authenticate", pb.Authenticate(auth_data=final), None)
            exchange.verify(auth.auth_data)
            self.user = auth.user
            self.roles = list(auth.roles)


Dial = Callable[[int], Awaitable[_Link]]


class Connection:
    """A connection to whizbangd. Make it with ``connect()``; close it with
    ``close()`` or ``async with``. Every method may be called concurrently
    from tasks of the loop that made it; answers are matched by id.

    With ``connect(..., reconnect=True)`` a broken connection is made again
    (see ``Reconnect``): calls wait for the new one within their timeout,
    calls that are safe to repeat are sent again, subscriptions resume after
    the last item they received and consumer members join again."""

    def __init__(self, link: _Link, *, call_timeout: Optional[float],
                 dial: Optional[Dial] = None, reconnect: Optional[Reconnect] = None) -> None:
        self._link = link
        self._loop = link.loop
        self._dial = dial
        self._reconnect = reconnect if dial is not None else None
        self._dialing: Optional[asyncio.Task[_Link]] = None
        self._closing = False
        self._keepalives_before = 0
        self.call_timeout = call_timeout
        self._tasks: set[asyncio.Task[Any]] = set()
        # Connections made again since connect().
        self.reconnections = 0

    # ------------------------------------------------------------ lifecycle

    @property
    def closed(self) -> bool:
        """Closed by ``close()``; without ``reconnect``, also broken."""
        return self._closing or (self._reconnect is None and self._link.closed is not None)

    @property
    def broken(self) -> Optional[ConnectionClosedError]:
        """Why the current connection cannot be used, or None. With
        ``reconnect``, the next call makes a new one."""
        return self._link.closed

    @property
    def hello(self) -> pb.HelloResult:
        """The server's HelloResult: its limits (max_frame, max_read_count...)."""
        return self._link.hello

    @property
    def user(self) -> str:
        """Who the connection acts as ("" when it did not authenticate)."""
        return self._link.user

    @property
    def roles(self) -> list[str]:
        return self._link.roles

    @property
    def max_frame(self) -> int:
        return self._link.max_frame

    @property
    def keepalives(self) -> int:
        """Keepalives received (``Response{id 0, pong}``): the server's sign
        of life on a quiet connection."""
        return self._keepalives_before + self._link.keepalives

    @property
    def _writer(self) -> asyncio.StreamWriter:
        return self._link.writer

    async def close(self) -> None:
        """Closes the connection: calls in flight and subscriptions get
        ``ConnectionClosedError``. Safe to call twice."""
        self._closing = True
        if self._dialing is not None:
            self._dialing.cancel()
        await self._link.close(ConnectionClosedError("the connection was closed by this client"))

    async def __aenter__(self) -> "Connection":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------ reconnection

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Runs coro in a task held until it ends."""
        task: asyncio.Task[Any] = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _lost(self, link: _Link, e: BaseException) -> bool:
        """Whether e says the link broke (rather than the server answering)."""
        return (isinstance(e, ConnectionClosedError) or e is link.failure
                or (link.draining and isinstance(e, errors.ShuttingDownError)))

    async def _usable(self, deadline: Optional[float]) -> _Link:
        """A link that works: the current one, or a new one once made, within
        the deadline (a loop time)."""
        link = self._link
        if link.usable:
            return link
        if self._closing:
            raise ConnectionClosedError("the connection was closed by this client")
        if self._dialing is None:
            self._dialing = self._loop.create_task(self._redial())
            self._dialing.add_done_callback(self._dialed)
        task = self._dialing
        timeout = None if deadline is None else max(0.0, deadline - self._loop.time())
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if not done:
            raise WhizbangTimeoutError("no connection to the server within the call's timeout")
        if task.cancelled():
            raise ConnectionClosedError("the connection was closed by this client")
        return task.result()

    def _dialed(self, task: asyncio.Task[_Link]) -> None:
        if self._dialing is task:
            self._dialing = None
        if not task.cancelled():
            task.exception()  # retrieved: the waiters raise it

    async def _redial(self) -> _Link:
        """Connects again, with exponential backoff and jitter between the
        attempts (each tries every host, the next one first), until it
        succeeds, the connection is closed, the server refuses the
        credentials, or ``give_up_after`` / ``max_attempts`` is reached."""
        assert self._reconnect is not None and self._dial is not None
        r = self._reconnect
        started = self._loop.time()
        attempt = 0
        while True:
            first = self._link.host_index + 1
            try:
                link = await self._dial(first)
            except (ConnectionClosedError, WhizbangTimeoutError, errors.ShuttingDownError) as e:
                attempt += 1
                spent = self._loop.time() - started
                if spent >= r.give_up_after or (r.max_attempts is not None
                                                and attempt >= r.max_attempts):
                    raise ConnectionClosedError(
                        f"no connection to the server after {attempt} attempts in {spent:.1f} s: "
                        f"{e}") from e
                delay = min(r.max_delay, r.initial_delay * 2 ** min(attempt - 1, 32))
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                continue
            if self._closing:
                await link.close(ConnectionClosedError("the connection was closed by this client"))
                raise ConnectionClosedError("the connection was closed by this client")
            old, self._link = self._link, link
            self._keepalives_before += old.keepalives
            self.reconnections += 1
            if old.closed is None:
                # A draining link: the server closes it once it has answered
                # what it started; its subscriptions resume here.
                self._spawn(old.close(ConnectionClosedError(
                    "the server is shutting down; replaced by a new connection")))
            return link

    async def _resubscribe(self, sub: Subscription) -> None:
        """Subscribes (joins) again on a new link after the subscription's
        link broke: from just after the last item received, with the credits
        the window leaves. Ends the subscription when that fails."""
        attempts = 0
        while True:
            link: Optional[_Link] = None
            try:
                link = await self._usable(None)
                field, req = sub._resume_request()
                result = await link.call(field, req, self.call_timeout, sub=sub)
            except WhizbangError as e:
                if link is not None and isinstance(e, errors.ShuttingDownError):
                    link.draining = True
                if link is not None and self._lost(link, e) and not self._closing:
                    attempts += 1
                    if self._reconnect is not None and attempts <= self._reconnect.retries:
                        continue
                sub._resumed(None, e)
                return
            except BaseException as e:  # cancelled with the loop: end it, and go
                sub._resumed(None, ConnectionClosedError(f"resuming the subscription failed: "
                                                         f"{e!r}"))
                raise
            sub._resumed(result, None)
            return

    # ------------------------------------------------------------ calls

    async def _call(self, field: str, msg: Any, *, timeout: Optional[float] = _DEFAULT,
                    push: Optional[Callable[[pb.Response], bool]] = None,
                    sub: Optional[Subscription] = None,
                    retry: Optional[bool] = None) -> Any:
        """Sends one request and returns its answer's body message. With
        reconnect, waits for a working link first, and sends the request
        again on a new link when the old one broke before the answer and
        the request is safe to repeat (``retry``; by default RETRYABLE)."""
        if timeout is _DEFAULT:
            timeout = self.call_timeout
        if self._reconnect is None:
            return await self._link.call(field, msg, timeout, push, sub)
        if retry is None:
            retry = field in RETRYABLE
        deadline = None if timeout is None else self._loop.time() + timeout
        attempt = 0
        while True:
            link = await self._usable(deadline)
            left = None if deadline is None else max(0.001, deadline - self._loop.time())
            try:
                return await link.call(field, msg, left, push, sub)
            except errors.ShuttingDownError:
                # Not carried out (PROTOCOL.md §1): the server is stopping.
                link.draining = True
                if not retry or self._closing:
                    raise
            except WhizbangError as e:
                if not self._lost(link, e) or self._closing:
                    raise
                if not retry:
                    raise ConnectionLostError(
                        f"the connection broke before {field} was answered; it may or may not "
                        f"have been carried out, and it is not safe to send again ({e})") from e
            attempt += 1
            if attempt > self._reconnect.retries:
                raise ConnectionLostError(
                    f"the connection broke under {field} {attempt} times; giving up")

    def _send_nowait(self, field: str, msg: Any,
                     on_error: Callable[[WhizbangError], None]) -> None:
        self._link.send_nowait(field, msg, on_error)

    # ------------------------------------------------------------ events

    async def ping(self, nonce: int = 0, *, timeout: Optional[float] = _DEFAULT) -> int:
        """A round trip; returns the nonce the server echoed."""
        pong: pb.Pong = await self._call("ping", pb.Ping(nonce=nonce), timeout=timeout)
        if pong.nonce != nonce:
            raise InternalError(f"the server's Pong carries nonce {pong.nonce}, not {nonce}")
        return pong.nonce

    async def append(self, stream: str, events: Iterable[Union[Event, pb.NewEvent]], *,
                     expected: pb.ExpectedVersion = ANY, exact: Optional[int] = None,
                     timeout: Optional[float] = _DEFAULT) -> pb.AppendResult:
        """Appends events to a stream, atomically; answered once durable.

        ``expected``: ``ANY``, ``NO_STREAM`` or ``STREAM_EXISTS``; or give
        ``exact=V``: the stream's last version must be V. A ``NewEvent``
        without an id gets a UUIDv7 written into it, so appending the same
        objects again is an idempotent retry (``idempotent_replay`` in the
        answer). Raises ``WrongExpectedVersionError`` (with ``actual_version``)
        when the expectation does not hold."""
        req = pb.AppendEvents(stream=stream)
        if exact is not None:
            req.expected = pb.EXACT
            req.expected_version = exact
        else:
            req.expected = expected
        add = req.events.add
        for ev in events:
            if isinstance(ev, Event):
                add(id=ev.id, type=ev.type, data=ev.data, metadata=ev.metadata)
            else:
                if not ev.id:
                    ev.id = uuid7()
                req.events.append(ev)
        return await self._call("append_events", req, timeout=timeout)  # type: ignore[no-any-return]

    async def read_stream(self, stream: str, start: Optional[int] = None, *,
                          backward: bool = False, limit: Optional[int] = None,
                          page_size: int = 0) -> AsyncIterator[pb.RecordedEvent]:
        """The stream's events from version ``start`` (default: the first,
        or the last when ``backward``), page after page until its end or
        ``limit`` events. Raises ``NotFoundError`` for a stream that does not
        exist."""
        frm = start if start is not None else (U64_MAX if backward else 0)
        direction = pb.BACKWARD if backward else pb.FORWARD
        n = 0
        while True:
            page: pb.ReadStreamResult = await self._call("read_stream", pb.ReadStream(
                stream=stream, from_version=frm, direction=direction, max_count=page_size))
            for ev in page.events:
                yield ev
                n += 1
                if limit is not None and n >= limit:
                    return
            if page.end_of_stream:
                return
            _check_progress(page.events, frm, page.next_version, "ReadStream")
            frm = page.next_version

    async def read_all(self, start: Optional[int] = None, *, backward: bool = False,
                       stream_prefix: str = "", event_types: Sequence[str] = (),
                       limit: Optional[int] = None,
                       page_size: int = 0) -> AsyncIterator[pb.RecordedEvent]:
        """The global log from position ``start`` (default: the beginning, or
        the end when ``backward``), optionally filtered, until its end or
        ``limit`` events. A filtered page may be empty without being the end:
        the iterator follows ``end_of_log``, not the page's size."""
        frm = start if start is not None else (U64_MAX if backward else 0)
        direction = pb.BACKWARD if backward else pb.FORWARD
        n = 0
        while True:
            page: pb.ReadAllResult = await self._call("read_all", pb.ReadAll(
                from_position=frm, direction=direction, max_count=page_size,
                stream_prefix=stream_prefix, event_types=list(event_types)))
            for ev in page.events:
                yield ev
                n += 1
                if limit is not None and n >= limit:
                    return
            if page.end_of_log:
                return
            _check_progress(page.events, frm, page.next_position, "ReadAll")
            frm = page.next_position

    async def stream_info(self, stream: str) -> pb.StreamInfo:
        return await self._call("get_stream_info", pb.GetStreamInfo(stream=stream))  # type: ignore[no-any-return]

    async def stats(self) -> pb.ServerStats:
        return await self._call("get_stats", pb.GetStats())  # type: ignore[no-any-return]

    async def set_stream_metadata(self, stream: str,
                                  metadata: Optional[pb.StreamMetadata] = None, *,
                                  max_count: int = 0, max_age_ms: int = 0,
                                  truncate_before: int = 0,
                                  timeout: Optional[float] = _DEFAULT) -> pb.StreamMetadata:
        """Sets what of the stream stays readable (0: not set): its last
        ``max_count`` events, those younger than ``max_age_ms``, those from
        version ``truncate_before``. Returns the metadata now in force. A
        scavenge removes what is no longer readable."""
        if metadata is None:
            metadata = pb.StreamMetadata(max_count=max_count, max_age_ms=max_age_ms,
                                         truncate_before=truncate_before)
        result: pb.StreamMetadataResult = await self._call("set_stream_metadata", pb.SetStreamMetadata(
            stream=stream, metadata=metadata), timeout=timeout)
        return result.metadata

    async def get_stream_metadata(self, stream: str, *,
                                  timeout: Optional[float] = _DEFAULT) -> pb.StreamMetadata:
        result: pb.StreamMetadataResult = await self._call(
            "get_stream_metadata", pb.GetStreamMetadata(stream=stream), timeout=timeout)
        return result.metadata

    async def delete_stream(self, stream: str, hard: bool = False, *,
                            timeout: Optional[float] = _DEFAULT) -> int:
        """Deletes the stream: softly (its events are hidden; it may be
        written again, versions going on) or, ``hard=True``, for good (every
        later append or read raises ``StreamDeletedError``). Returns its
        last version."""
        result: pb.DeleteStreamResult = await self._call(
            "delete_stream", pb.DeleteStream(stream=stream, hard=hard), timeout=timeout)
        return result.last_version

    # ------------------------------------------------------------ subscriptions

    async def _subscribe(self, req: pb.Subscribe, start: Start, window: int,
                         markers: bool) -> Subscription:
        _set_start(req, start)
        key = {pb.TARGET_ALL: "position", pb.TARGET_STREAM: "version",
               pb.TARGET_LEDGER: "sequence"}[req.target]
        return await self._start_subscription("subscribe", req, window, markers, key)

    async def _start_subscription(self, field: str, req: Any, window: int, markers: bool,
                                  key: Optional[str]) -> Subscription:
        if window < 2:
            raise ValueError("window must be at least 2")
        req.credits = window
        sub = Subscription(self, window, markers, field, req, key)
        try:
            result: pb.SubscribeResult = await self._call(field, req, sub=sub)
        except BaseException:
            sub._detach()
            raise
        sub._started(result)
        return sub

    async def subscribe_all(self, start: Start = "start", *, stream_prefix: str = "",
                            event_types: Sequence[str] = (), window: int = 1000,
                            markers: bool = False) -> Subscription:
        """Follows ``$all`` from ``start`` ("start", "end" or a position):
        an async iterator of ``RecordedEvent``s, catch-up then live, with
        credits granted as the items are consumed (at most ``window`` held
        here). ``sub.caught_up`` turns true once iteration has passed the
        server's caught-up mark; ``markers=True`` also yields ``CAUGHT_UP``
        at that point in the stream."""
        req = pb.Subscribe(target=pb.TARGET_ALL, stream_prefix=stream_prefix,
                           event_types=list(event_types))
        return await self._subscribe(req, start, window, markers)

    async def subscribe_stream(self, stream: str, start: Start = "start", *,
                               window: int = 1000, markers: bool = False) -> Subscription:
        """Follows one stream from ``start`` ("start", "end" or a version)."""
        req = pb.Subscribe(target=pb.TARGET_STREAM, stream=stream)
        return await self._subscribe(req, start, window, markers)

    async def subscribe_ledger(self, start: Start = "start", *, window: int = 1000,
                               markers: bool = False) -> Subscription:
        """Follows the ledger from ``start`` ("start", "end" or a sequence):
        ``LedgerEntry``s up to the watermark, each final and applied."""
        req = pb.Subscribe(target=pb.TARGET_LEDGER)
        return await self._subscribe(req, start, window, markers)

    # ------------------------------------------------------------ consumer groups

    async def create_consumer(self, name: str, *, stream_prefix: str = "",
                              start: Start = "start", stream: Optional[str] = None,
                              event_types: Sequence[str] = (), ack_timeout_ms: int = 0,
                              max_deliveries: int = 0,
                              timeout: Optional[float] = _DEFAULT) -> pb.ConsumerInfo:
        """Creates a durable consumer group (docs/SUBSCRIPTIONS.md §2) on
        ``$all`` (filtered by ``stream_prefix`` and ``event_types``) or, with
        ``stream=``, on one stream; it starts at ``start`` ("start", "end" or
        a position), resolved once, now. ``ack_timeout_ms`` (0: 30 s): an
        event unsettled this long after delivery is delivered again;
        ``max_deliveries`` (0: 10): after that many, it is parked. A name in
        use answers ``BadRequestError``."""
        cfg = pb.ConsumerConfig(name=name, stream_prefix=stream_prefix,
                                event_types=list(event_types), ack_timeout_ms=ack_timeout_ms,
                                max_deliveries=max_deliveries)
        if stream is not None:
            cfg.target = pb.TARGET_STREAM
            cfg.stream = stream
        _set_start(cfg, start)
        return await self._call("create_consumer",  # type: ignore[no-any-return]
                                pb.CreateConsumer(config=cfg), timeout=timeout)

    async def delete_consumer(self, name: str, *, timeout: Optional[float] = _DEFAULT) -> None:
        """Deletes the group, its checkpoint and parked events; its members'
        iterators raise ``NotFoundError``."""
        await self._call("delete_consumer", pb.DeleteConsumer(name=name), timeout=timeout)

    async def list_consumers(self, *, timeout: Optional[float] = _DEFAULT) -> list[pb.ConsumerInfo]:
        """Every group with its config and figures (checkpoint, members,
        in_flight, parked, delivered, acked, redelivered)."""
        result: pb.ConsumerList = await self._call("list_consumers", pb.ListConsumers(),
                                                   timeout=timeout)
        return list(result.consumers)

    async def join_consumer(self, name: str, *, window: int = 256) -> Subscription:
        """Joins the group as a competing member: an async iterator of the
        ``RecordedEvent``s handed to it (``sub.delivery``: how many times the
        one just yielded has been delivered), credits managed as for
        ``subscribe_all``. Settle each with ``ack`` or ``nack``; unsettled
        ones are delivered again after the group's ack timeout. ``close()``
        leaves the group: its unsettled events go to the other members.
        With ``reconnect``, the member joins again on the new connection."""
        return await self._start_subscription(
            "join_consumer", pb.JoinConsumer(name=name), window, False, None)

    async def ack(self, name: str, ids: Iterable[Union[bytes, pb.RecordedEvent]], *,
                  timeout: Optional[float] = _DEFAULT) -> int:
        """Settles events of the group as done (ids, or the events); returns
        the group's durable checkpoint. Acking a settled event does nothing."""
        result: pb.AckResult = await self._call(
            "ack", pb.AckEvents(name=name, ids=_ids(ids)), timeout=timeout)
        return result.checkpoint

    async def nack(self, name: str, ids: Iterable[Union[bytes, pb.RecordedEvent]],
                   action: str = "retry", reason: str = "", *,
                   timeout: Optional[float] = _DEFAULT) -> int:
        """Hands events back: ``"retry"`` (delivered again, to any member;
        parked once it reached max_deliveries), ``"park"`` (kept aside with
        ``reason``, see ``list_parked``/``replay_parked``) or ``"skip"``
        (settled as if acked). Returns the group's durable checkpoint."""
        actions = {"retry": pb.NACK_RETRY, "park": pb.NACK_PARK, "skip": pb.NACK_SKIP}
        if action not in actions:
            raise ValueError(f"action is 'retry', 'park' or 'skip', not {action!r}")
        result: pb.NackResult = await self._call("nack", pb.NackEvents(
            name=name, ids=_ids(ids), action=actions[action], reason=reason), timeout=timeout)
        return result.checkpoint

    async def list_parked(self, name: str, *, start: int = 0,
                          page_size: int = 0) -> AsyncIterator[pb.ParkedEvent]:
        """The group's parked events in position order (``event``,
        ``deliveries``, ``reason``, ``parked_at_us``), page after page."""
        frm = start
        while True:
            page: pb.ParkedList = await self._call("list_parked", pb.ListParked(
                name=name, from_position=frm, max_count=page_size))
            for parked in page.events:
                yield parked
            if page.end:
                return
            _check_progress(page.events, frm, page.next_position, "ListParked")
            frm = page.next_position

    async def replay_parked(self, name: str, *, timeout: Optional[float] = _DEFAULT) -> int:
        """Hands the group's parked events back for delivery (at most the
        server's consumer window at a time); returns how many."""
        result: pb.ReplayParkedResult = await self._call(
            "replay_parked", pb.ReplayParked(name=name), timeout=timeout)
        return result.replayed

    # ------------------------------------------------------------ leases

    async def lease(self, projection: str, *, count: int = 1, duration_ms: int = 0,
                    operation_id: str = "", source_position: int = 0,
                    release_on_disconnect: bool = False) -> list[pb.LeaseGrant]:
        """Leases ``count`` consecutive sequences of the ledger for a
        projection; each grant has ``sequence``, ``token``, ``expires_at_ms``
        and ``duration_ms`` (0 asks for the adaptive duration)."""
        result: pb.LeaseResult = await self._call("lease", pb.Lease(
            projection=projection, duration_ms=duration_ms, count=count,
            operation_id=operation_id, source_position=source_position,
            on_disconnect=pb.ON_DISCONNECT_RELEASE if release_on_disconnect
            else pb.ON_DISCONNECT_KEEP))
        return list(result.leases)

    async def extend(self, sequence: int, token: int, duration_ms: int = 0) -> pb.ExtendResult:
        return await self._call("extend", pb.Extend(  # type: ignore[no-any-return]
            sequence=sequence, token=token, duration_ms=duration_ms))

    async def release(self, sequence: int, token: int, reason: str = "") -> None:
        """Gives the sequence up: it becomes a gap."""
        await self._call("release", pb.Release(sequence=sequence, token=token, reason=reason))

    async def stage(self, sequence: int, token: int,
                    ops: Union[OpLike, Iterable[OpLike]]) -> None:
        """Stores ops durably as the lease's staged work (replacing earlier)."""
        await self._call("stage", pb.Stage(sequence=sequence, token=token, ops=as_ops(ops)))

    async def commit(self, sequence: int, token: int,
                     ops: Union[OpLike, Iterable[OpLike], None] = None, *,
                     ack_applied: bool = False, resequence: bool = False,
                     timeout: Optional[float] = _DEFAULT) -> pb.CommitResult:
        """Commits the lease's ops (text or ``Op``; none is allowed).
        ``ack_applied``: answered once the watermark passed it, with the
        outcome of applying them (``apply_error``, ``results``)."""
        return await self._call("commit", pb.Commit(  # type: ignore[no-any-return]
            sequence=sequence, token=token, ops=as_ops(ops),
            ack=pb.ACK_APPLIED if ack_applied else pb.ACK_DURABLE,
            on_expired=pb.ON_EXPIRED_RESEQUENCE if resequence else pb.ON_EXPIRED_FAIL),
            timeout=timeout)

    async def watermark(self) -> pb.WatermarkResult:
        return await self._call("get_watermark", pb.GetWatermark())  # type: ignore[no-any-return]

    async def wait_for_watermark(self, sequence: int, timeout_ms: int = 10_000) -> pb.WatermarkResult:
        """Waits (on the server) until the watermark reaches ``sequence`` or
        ``timeout_ms`` passes; ``reached`` says which."""
        timeout = None if self.call_timeout is None else self.call_timeout + timeout_ms / 1000
        return await self._call("wait_for_watermark", pb.WaitForWatermark(  # type: ignore[no-any-return]
            sequence=sequence, timeout_ms=timeout_ms), timeout=timeout)

    async def read_ledger(self, start: int = 1, *,
                          limit: Optional[int] = None) -> AsyncIterator[pb.LedgerEntry]:
        """Ledger entries from sequence ``start`` up to the watermark."""
        frm, n = start, 0
        while True:
            page: pb.ReadLedgerResult = await self._call(
                "read_ledger", pb.ReadLedger(from_sequence=frm))
            for entry in page.entries:
                yield entry
                n += 1
                if limit is not None and n >= limit:
                    return
            if page.end:
                return
            _check_progress(page.entries, frm, page.next_sequence, "ReadLedger")
            frm = page.next_sequence

    # ------------------------------------------------------------ read models

    async def get_entity(self, type: str, id: str) -> pb.Entity:
        """One entity; ``NotFoundError`` when there is none."""
        result: pb.GetEntityResult = await self._call("get_entity", pb.GetEntity(type=type, id=id))
        return result.entity

    async def query(self, type: str, where: Optional[WhereLike] = None, *,
                    limit: Optional[int] = None,
                    page_size: int = 0) -> AsyncIterator[pb.Entity]:
        """The entities of a type matching ``where`` (text, ``Where`` or
        ``Expr``; none: all), in id order, page after page."""
        after, n = "", 0
        where_pb = as_where(where) if where is not None else None
        while True:
            req = pb.QueryEntities(type=type, limit=page_size, after=after)
            if where_pb is not None:
                req.where.CopyFrom(where_pb)
            page: pb.QueryResult = await self._call("query_entities", req)
            for entity in page.entities:
                yield entity
                n += 1
                if limit is not None and n >= limit:
                    return
            if page.end:
                return
            if page.next_after <= after and after:
                raise InternalError("a QueryEntities page did not move its cursor (a server bug)")
            after = page.next_after

    async def explain(self, type: str, where: WhereLike) -> pb.PlanResult:
        """The plan a query of this clause would run, with its estimates."""
        return await self._call("explain", pb.Explain(  # type: ignore[no-any-return]
            type=type, where=as_where(where)))

    async def create_index(self, type: str, field: str) -> pb.IndexResult:
        return await self._call("create_index", pb.CreateIndex(type=type, field=field))  # type: ignore[no-any-return]

    async def drop_index(self, type: str, field: str) -> pb.IndexResult:
        return await self._call("drop_index", pb.DropIndex(type=type, field=field))  # type: ignore[no-any-return]

    # ------------------------------------------------------------ admin

    async def create_token(self, role: str, *, ttl_ms: int = 0,
                           description: str = "") -> pb.CreateTokenResult:
        return await self._call("create_token", pb.CreateToken(  # type: ignore[no-any-return]
            role=role, ttl_ms=ttl_ms, description=description))

    async def put_user(self, name: str, roles: Sequence[str], *, password: Optional[str] = None,
                       iterations: int = scram.ITERATIONS_DEFAULT) -> None:
        """Creates or replaces a user; with ``password``, its SCRAM-SHA-256
        verifier is made here (the password never leaves this process)."""
        credential = ""
        if password is not None:
            credential = await self._loop.run_in_executor(
                None, scram.make_credential, password, iterations)
        await self._call("put_user", pb.PutUser(name=name, roles=list(roles),
                                                credential=credential))

    async def scavenge(self, on_progress: Optional[Callable[[pb.ScavengeResult], None]] = None,
                       *, timeout: Optional[float] = None) -> pb.ScavengeResult:
        """Removes every event that deletes and metadata made unreadable
        (admin:scavenge), chunk by chunk; ``on_progress`` gets each chunk's
        figures (``position`` of ``last_position``, ``done`` false) before
        the final ones are returned. No time limit unless ``timeout``."""
        return await self._call("scavenge", pb.Scavenge(), timeout=timeout,  # type: ignore[no-any-return]
                                push=_progress("scavenge", on_progress))

    async def backup(self, name: str,
                     on_progress: Optional[Callable[[pb.BackupResult], None]] = None, *,
                     timeout: Optional[float] = None) -> pb.BackupResult:
        """An online, consistent copy of the store into ``name`` in the
        server's backup-dir (admin:backup); ``on_progress`` gets the bytes
        copied so far. The result names the directory, the watermark and
        the last position the copy holds. No time limit unless ``timeout``."""
        return await self._call("backup", pb.Backup(path=name), timeout=timeout,  # type: ignore[no-any-return]
                                push=_progress("backup", on_progress))

    async def verify(self, *, timeout: Optional[float] = None) -> pb.VerifyResult:
        """Rebuilds the read models from the ledger aside and compares them
        with the live ones (``match``, ``first_difference``). No time limit
        unless ``timeout``."""
        return await self._call("verify", pb.Verify(), timeout=timeout)  # type: ignore[no-any-return]

    async def list_clients(self, *, timeout: Optional[float] = _DEFAULT) -> list[pb.ClientInfo]:
        """The server's connections (admin:clients): peer, user, age,
        requests, buffers, subscriptions, leases; ``self`` marks this one."""
        result: pb.ClientList = await self._call("list_clients", pb.ListClients(),
                                                 timeout=timeout)
        return list(result.clients)

    async def list_indexes(self, *, timeout: Optional[float] = _DEFAULT) -> pb.IndexList:
        return await self._call("list_indexes", pb.ListIndexes(),  # type: ignore[no-any-return]
                                timeout=timeout)

    async def request(self, field: str, msg: Any, *, timeout: Optional[float] = _DEFAULT,
                      progress: Optional[Callable[[Any], None]] = None) -> Any:
        """Any request of the proto by its ``Request`` field name (e.g.
        ``"list_parked"``, ``pb.ListParked(name="g")``); returns the answer's
        body. For ``scavenge`` and ``backup``, ``progress`` gets each pushed
        result with ``done`` false before the final one is returned. With
        reconnect it is not sent again after the connection broke: it raises
        ``ConnectionLostError``."""
        if field not in ANSWERS:
            raise ValueError(f"no request {field!r} in the protocol")
        if field in ("subscribe", "join_consumer"):
            raise ValueError(f"use the subscribe_* and join_consumer methods for {field}")
        push = None
        if field in ("scavenge", "backup"):
            push = _progress(field, progress)
        return await self._call(field, msg, timeout=timeout, push=push, retry=False)


def _progress(field: str, on_progress: Optional[Callable[[Any], None]]
              ) -> Callable[[pb.Response], bool]:
    """The push handler of a Scavenge or Backup: the results with ``done``
    false are progress, the one with ``done`` true the answer."""
    body = ANSWERS[field]

    def push(resp: pb.Response) -> bool:
        result = getattr(resp, body)
        if resp.WhichOneof("body") != body or result.done:
            return False
        if on_progress is not None:
            on_progress(result)
        return True
    return push


def _ids(ids: Iterable[Union[bytes, pb.RecordedEvent]]) -> list[bytes]:
    """Event ids from ids or events."""
    return [i if isinstance(i, (bytes, bytearray)) else i.id for i in ids]


def _set_start(msg: Any, start: Start) -> None:
    """Sets the from (and position) fields of a Subscribe or ConsumerConfig
    from ``start``: "start", "end" or a position."""
    # "from" is a Python keyword: the field is reached with setattr.
    if start == "start":
        setattr(msg, "from", pb.FROM_START)
    elif start == "end":
        setattr(msg, "from", pb.FROM_END)
    elif isinstance(start, int) and start >= 0:
        setattr(msg, "from", pb.FROM_POSITION)
        msg.position = start
    else:
        raise ValueError(f"start is 'start', 'end' or a position, not {start!r}")


def _check_progress(items: Sequence[Any], frm: int, nxt: int, what: str) -> None:
    """A page that is not the end must move the cursor, or paging never ends."""
    if not items and nxt == frm:
        raise InternalError(f"an empty {what} page that is not the end did not move its "
                            f"cursor from {frm} (a server bug)")


def _tls_context(url: ServerURL) -> ssl.SSLContext:
    if not url.tls_ca_file:
        raise ValueError("TLS needs tlsCaFile: the CA the server's certificate must chain to "
                         "(this client does not fall back to the system's store)")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(cafile=url.tls_ca_file)
    ctx.set_alpn_protocols([ALPN])
    if url.tls_cert_file:
        ctx.load_cert_chain(url.tls_cert_file, url.tls_key_file)
    return ctx


async def _open(url: ServerURL) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    limit = 1 << 18
    if url.unix_path:
        return await asyncio.open_unix_connection(url.unix_path, limit=limit)
    if not url.tls:
        return await asyncio.open_connection(url.host, url.port, limit=limit)
    ctx = _tls_context(url)
    name = url.tls_server_name or url.host
    try:
        reader, writer = await asyncio.open_connection(
            url.host, url.port, ssl=ctx, server_hostname=name, limit=limit)
    except ssl.SSLCertVerificationError as e:
        raise UnauthenticatedError(f"the server's certificate does not verify: "
                                   f"{e.verify_message or e}") from e
    chosen = writer.get_extra_info("ssl_object").selected_alpn_protocol()
    if chosen != ALPN:
        writer.close()
        raise ConnectionClosedError(f"the server chose ALPN {chosen!r}, not {ALPN!r}")
    return reader, writer


async def connect(url: Union[str, Sequence[str]], *, password: Optional[str] = None,
                  token: Optional[str] = None, client_name: str = "whizbang-python",
                  timeout: float = 10.0, call_timeout: Optional[float] = 30.0,
                  max_incoming_frame: int = framing.DEFAULT_MAX_INCOMING,
                  reconnect: Union[bool, Reconnect] = False,
                  dead_after: Optional[float] = 60.0) -> Connection:
    """Connects to the server a ``whizbang://`` or ``whizbang+unix://`` URL
    names and says Hello, authenticating with ``token`` (an API token), the
    URL's user and ``password`` (SCRAM-SHA-256), or the TLS client
    certificate (``authMechanism=EXTERNAL``). Given several URLs (a list),
    tries each in turn and returns the first that connects; a refusal by a
    server (bad credentials) is raised at once. ``timeout`` covers one
    host's TCP connect, TLS handshake and login together; ``call_timeout``
    is every later call's default (None: wait for ever).

    ``reconnect``: make the connection again when it breaks (``True``, or a
    ``Reconnect`` with its delays and bounds); see ``Connection``.
    ``dead_after``: take the server for dead after this many seconds
    without a byte from it (None: never); it sends a keepalive after 30 s
    of quiet by default (``--keepalive-interval``), so keep it above that."""
    servers = [parse_url(u) for u in ([url] if isinstance(url, str) else url)]
    if not servers:
        raise ValueError("connect() needs a URL")
    if isinstance(reconnect, bool):
        policy = Reconnect() if reconnect else None
    else:
        policy = reconnect

    async def attempt(server: ServerURL, index: int) -> _Link:
        try:
            reader, writer = await _open(server)
        except ssl.SSLError as e:
            raise ConnectionClosedError(f"the TLS handshake with {server.address} failed: "
                                        f"{e}") from e
        except OSError as e:
            raise ConnectionClosedError(f"cannot connect to {server.address}: {e}") from e
        link = _Link(reader, writer, max_incoming_frame=max_incoming_frame,
                     dead_after=dead_after, host_index=index)
        try:
            await link.say_hello(server, client_name, token, password)
        except BaseException:
            await link.close(ConnectionClosedError("the connection failed during Hello"))
            raise
        return link

    async def dial(first: int) -> _Link:
        last: Optional[WhizbangError] = None
        for k in range(len(servers)):
            index = (first + k) % len(servers)
            server = servers[index]
            try:
                return await asyncio.wait_for(attempt(server, index), timeout)
            except asyncio.TimeoutError:
                last = WhizbangTimeoutError(f"no connection to {server.address} within "
                                            f"{timeout:g} s (connect, TLS and Hello)")
            except (ConnectionClosedError, errors.ShuttingDownError) as e:
                last = e
        assert last is not None
        raise last

    link = await dial(0)
    return Connection(link, call_timeout=call_timeout, dial=dial if policy else None,
                      reconnect=policy)
