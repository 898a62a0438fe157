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
  ``InternalError`` (a server bug, §2).
"""
from __future__ import annotations

import asyncio
import ssl
from typing import Any, AsyncIterator, Callable, Iterable, Optional, Sequence, Union

from . import errors, framing, scram
from ._pb import whizbang_pb2 as pb
from .errors import (ConnectionClosedError, ErrorCode, InternalError, ProtocolError,
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


class Connection:
    """One connection to whizbangd. Make it with ``connect()``; close it with
    ``close()`` or ``async with``. Every method may be called concurrently
    from tasks of the loop that made it; answers are matched by id."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                 call_timeout: Optional[float], max_incoming_frame: int) -> None:
        self._reader = reader
        self._writer = writer
        self._loop = asyncio.get_running_loop()
        self._decoder = framing.FrameDecoder(max_incoming_frame)
        self._pending: dict[int, _Call] = {}
        self._subs: dict[int, Subscription] = {}
        self._next_id = 1
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._closed: Optional[ConnectionClosedError] = None
        self._sweep: Optional[asyncio.TimerHandle] = None
        self.call_timeout = call_timeout
        # Until Hello answers: the protocol's smallest max_frame.
        self.max_frame = 4096
        self.hello = pb.HelloResult()
        self.user = ""
        self.roles: list[str] = []
        # Keepalives received (Response{id 0, pong}): the server's sign of
        # life on a quiet connection.
        self.keepalives = 0
        self._reader_task = self._loop.create_task(self._read_loop())

    # ------------------------------------------------------------ lifecycle

    @property
    def closed(self) -> bool:
        return self._closed is not None

    async def close(self) -> None:
        """Closes the connection: calls in flight and subscriptions get
        ``ConnectionClosedError``. Safe to call twice."""
        self._fail(ConnectionClosedError("the connection was closed by this client"))
        if self._reader_task is not asyncio.current_task():
            self._reader_task.cancel()
            try:
                await self._reader_task
            except BaseException:  # noqa: BLE001 - the task's own end, already reported
                pass
        try:
            await asyncio.wait_for(self._writer.wait_closed(), 5)
        except (OSError, ssl.SSLError, asyncio.TimeoutError):
            pass

    async def __aenter__(self) -> "Connection":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _fail(self, exc: WhizbangError) -> None:
        """Ends the connection: every call in flight and every subscription
        gets exc (later calls a ConnectionClosedError naming it)."""
        if self._closed is not None:
            return
        if isinstance(exc, ConnectionClosedError):
            self._closed = exc
        else:
            self._closed = ConnectionClosedError(f"the connection is closed: {exc}")
            self._closed.__cause__ = exc
        pending, self._pending = self._pending, {}
        for call in pending.values():
            self._settle_error(call, exc)
        subs, self._subs = self._subs, {}
        for sub in subs.values():
            sub._end(exc)
        self._out.clear()
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        self._writer.close()

    # ------------------------------------------------------------ the reader

    async def _read_loop(self) -> None:
        try:
            while True:
                data = await self._reader.read(1 << 18)
                if not data:
                    held = self._decoder.buffered
                    raise ConnectionClosedError(
                        "the server closed the connection" +
                        (f" in the middle of a frame ({held} bytes of it received)" if held else ""))
                try:
                    frames = self._decoder.feed(data)
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
            self._fail(e)
        except (OSError, ssl.SSLError, EOFError) as e:
            closed = ConnectionClosedError(f"the connection failed: {e}")
            closed.__cause__ = e
            self._fail(closed)
        except Exception as e:  # a bug here must not leave callers waiting for ever
            bug = InternalError(f"this client's reader failed: {e!r}")
            bug.__cause__ = e
            self._fail(bug)

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
        call = self._pending.get(rid)
        if call is None:
            sub = self._subs.get(rid)
            if sub is not None:
                sub._on_response(resp)
            # else: the late answer of a call that timed out, or a push of a
            # subscription that ended here: nobody waits for it.
            return
        if call.push is not None and not has_error and call.push(resp):
            return
        del self._pending[rid]
        if has_error:
            self._settle_error(call, errors.from_pb(resp.error))
            return
        body = resp.WhichOneof("body")
        if body != call.body:
            self._settle_error(call, InternalError(
                f"the server answered with body {body!r} where the protocol names "
                f"{call.body!r} (a server bug)"))
            return
        if call.fut is not None and not call.fut.done():
            call.fut.set_result(getattr(resp, body))

    @staticmethod
    def _settle_error(call: _Call, exc: WhizbangError) -> None:
        if call.fut is not None:
            if not call.fut.done():
                call.fut.set_exception(exc)
        elif call.on_error is not None:
            call.on_error(exc)

    # ------------------------------------------------------------ sending

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._out and self._closed is None:
            self._writer.write(b"".join(self._out))
            self._out.clear()

    def _send(self, field: str, msg: Any, call: _Call) -> int:
        """Queues the request; returns its id. Raises when the connection is
        closed, or for a request above the server's max_frame (refused here,
        so that the connection survives)."""
        if self._closed is not None:
            err = ConnectionClosedError(self._closed.message)
            err.__cause__ = self._closed.__cause__
            raise err
        rid = self._next_id
        payload = encode_request(rid, field, msg)
        if len(payload) > self.max_frame:
            raise errors.FrameTooLargeError(
                f"refused here: this {field} request takes {len(payload)} bytes, more than the "
                f"server's max_frame of {self.max_frame}; the connection stays open",
                code=ErrorCode.FRAME_TOO_LARGE)
        self._next_id += 1
        self._out.append(framing.HEADER.pack(len(payload)))
        self._out.append(payload)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)
        self._pending[rid] = call
        return rid

    def _sweep_timeouts(self) -> None:
        """Fails the calls whose deadline passed; runs while any has one."""
        self._sweep = None
        now = self._loop.time()
        expired = [rid for rid, c in self._pending.items()
                   if c.deadline is not None and c.deadline <= now]
        for rid in expired:
            call = self._pending.pop(rid)
            self._settle_error(call, WhizbangTimeoutError(
                f"no answer to {call.field} (request {rid}) within its timeout"))
        if any(c.deadline is not None for c in self._pending.values()):
            self._sweep = self._loop.call_later(_SWEEP_S, self._sweep_timeouts)

    async def _call(self, field: str, msg: Any, *, timeout: Optional[float] = _DEFAULT,
                    push: Optional[Callable[[pb.Response], bool]] = None,
                    sub: Optional[Subscription] = None) -> Any:
        """Sends one request and returns its answer's body message."""
        transport = self._writer.transport
        if transport is not None and transport.get_write_buffer_size() > _WRITE_HIGH_WATER:
            await self._writer.drain()
        fut: asyncio.Future[Any] = self._loop.create_future()
        call = _Call(fut, field, push)
        rid = self._send(field, msg, call)
        if sub is not None:
            sub._request_id = rid
            self._subs[rid] = sub
        if timeout is _DEFAULT:
            timeout = self.call_timeout
        if timeout is not None:
            call.deadline = self._loop.time() + timeout
            if self._sweep is None:
                self._sweep = self._loop.call_later(min(_SWEEP_S, timeout), self._sweep_timeouts)
        try:
            return await fut
        except asyncio.CancelledError:
            # The caller gave up: its answer, when it comes, is dropped.
            if self._pending.get(rid) is call:
                del self._pending[rid]
            raise

    def _send_nowait(self, field: str, msg: Any,
                     on_error: Callable[[WhizbangError], None]) -> None:
        """Sends a request whose answer nobody awaits (a Credit): only an
        error answer is reported, to on_error."""
        self._send(field, msg, _Call(None, field, on_error=on_error))

    # ------------------------------------------------------------ Hello

    async def _hello(self, url: ServerURL, client_name: str, token: Optional[str],
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
        result: pb.HelloResult = await self._call("hello", hello)
        self.hello = result
        self.max_frame = result.max_frame or self.max_frame
        self.user = result.user
        self.roles = list(result.roles)
        if exchange is not None:
            # PBKDF2 runs off the loop: tens of milliseconds.
            final = await self._loop.run_in_executor(None, exchange.final, result.auth_data)
            auth: pb.AuthenticateResult = await self._call(
                "authenticate", pb.Authenticate(auth_data=final))
            exchange.verify(auth.auth_data)
            self.user = auth.user
            self.roles = list(auth.roles)

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

    # ------------------------------------------------------------ subscriptions

    async def _subscribe(self, req: pb.Subscribe, start: Start, window: int,
                         markers: bool) -> Subscription:
        # "from" is a Python keyword: the field is reached with setattr.
        if start == "start":
            setattr(req, "from", pb.FROM_START)
        elif start == "end":
            setattr(req, "from", pb.FROM_END)
        elif isinstance(start, int) and start >= 0:
            setattr(req, "from", pb.FROM_POSITION)
            req.position = start
        else:
            raise ValueError(f"start is 'start', 'end' or a position, not {start!r}")
        if window < 2:
            raise ValueError("window must be at least 2")
        req.credits = window
        sub = Subscription(self, window, markers)
        try:
            result: pb.SubscribeResult = await self._call("subscribe", req, sub=sub)
        except BaseException:
            self._subs.pop(sub._request_id, None)
            raise
        sub.id = result.subscription
        sub.start = result.start
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

    async def request(self, field: str, msg: Any, *, timeout: Optional[float] = _DEFAULT,
                      progress: Optional[Callable[[Any], None]] = None) -> Any:
        """Any request of the proto by its ``Request`` field name (e.g.
        ``"list_consumers"``, ``pb.ListConsumers()``); returns the answer's
        body. For ``scavenge`` and ``backup``, ``progress`` gets each pushed
        result with ``done`` false before the final one is returned."""
        if field not in ANSWERS:
            raise ValueError(f"no request {field!r} in the protocol")
        if field in ("subscribe", "join_consumer"):
            raise ValueError(f"use the subscribe_* methods for {field}")
        push = None
        if field in ("scavenge", "backup"):
            body = ANSWERS[field]

            def push(resp: pb.Response) -> bool:
                result = getattr(resp, body)
                if resp.WhichOneof("body") != body or result.done:
                    return False
                if progress is not None:
                    progress(result)
                return True
        return await self._call(field, msg, timeout=timeout, push=push)


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


async def connect(url: str, *, password: Optional[str] = None, token: Optional[str] = None,
                  client_name: str = "whizbang-python", timeout: float = 10.0,
                  call_timeout: Optional[float] = 30.0,
                  max_incoming_frame: int = framing.DEFAULT_MAX_INCOMING) -> Connection:
    """Connects to the server a ``whizbang://`` or ``whizbang+unix://`` URL
    names and says Hello, authenticating with ``token`` (an API token), the
    URL's user and ``password`` (SCRAM-SHA-256), or the TLS client
    certificate (``authMechanism=EXTERNAL``). ``timeout`` covers the TCP
    connect, the TLS handshake and the login together; ``call_timeout`` is
    every later call's default (None: wait for ever)."""
    server = parse_url(url)

    async def attempt() -> Connection:
        try:
            reader, writer = await _open(server)
        except ssl.SSLError as e:
            raise ConnectionClosedError(f"the TLS handshake with {server.address} failed: "
                                        f"{e}") from e
        except OSError as e:
            raise ConnectionClosedError(f"cannot connect to {server.address}: {e}") from e
        conn = Connection(reader, writer, call_timeout=call_timeout,
                          max_incoming_frame=max_incoming_frame)
        try:
            await conn._hello(server, client_name, token, password)
        except BaseException:
            await conn.close()
            raise
        return conn

    try:
        return await asyncio.wait_for(attempt(), timeout)
    except asyncio.TimeoutError:
        raise WhizbangTimeoutError(f"no connection to {server.address} within {timeout:g} s "
                                   "(connect, TLS and Hello)") from None
