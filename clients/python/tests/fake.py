"""A fake whizbangd: a TCP server on 127.0.0.1 port 0 that reads request
frames and sends whatever a test's script says, hostile bytes included.

The negative control: with WB_PY_FAKE_CORRUPT=1 every Response sent with
``send()`` goes out as bytes that do not decode, so a test that expects
success must fail (meson runs one so, with should_fail).
"""
from __future__ import annotations

import asyncio
import os
import struct
from typing import Awaitable, Callable, Optional

from whizbang._pb import whizbang_pb2 as pb

CORRUPT = os.environ.get("WB_PY_FAKE_CORRUPT") == "1"
READ_TIMEOUT_S = 10


class Peer:
    """The fake's side of one client connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def request(self) -> pb.Request:
        header = await asyncio.wait_for(self.reader.readexactly(4), READ_TIMEOUT_S)
        (n,) = struct.unpack(">I", header)
        body = await asyncio.wait_for(self.reader.readexactly(n), READ_TIMEOUT_S)
        return pb.Request.FromString(body)

    def send_raw(self, data: bytes) -> None:
        self.writer.write(data)

    def send(self, resp: pb.Response, extra: bytes = b"") -> None:
        """One Response frame (its bytes, then extra: e.g. an unknown field)."""
        body = resp.SerializeToString() + extra
        if CORRUPT:
            body = b"\x0a\xff\xff\xff"  # a length-delimited field that runs past the end
        self.send_raw(struct.pack(">I", len(body)) + body)

    async def hello(self, max_frame: int = 4194304) -> pb.Request:
        """Answers the client's Hello as whizbangd 0.1.0 would."""
        req = await self.request()
        assert req.WhichOneof("body") == "hello", req
        self.send(pb.Response(id=req.id, hello=pb.HelloResult(
            protocol_version=1, server_version="fake", max_frame=max_frame,
            max_read_count=1000, max_append_events=10000, max_event_size=max_frame - 1024,
            roles=["admin"])))
        return req

    def close(self) -> None:
        self.writer.close()


Script = Callable[[Peer], Awaitable[None]]


class FakeServer:
    """``async with FakeServer(script) as fake:`` runs script(peer) for each
    connection; ``fake.url`` names it; ``fake.errors`` holds what a script
    raised (a test checks it is empty)."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.url = ""
        self.errors: list[BaseException] = []
        self._server: Optional[asyncio.base_events.Server] = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._tasks.add(asyncio.current_task())  # type: ignore[arg-type]
        peer = Peer(reader, writer)
        try:
            await self.script(peer)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the client went away: its side of the test says what that means
        except BaseException as e:  # noqa: BLE001 - reported through self.errors
            self.errors.append(e)
        finally:
            writer.close()

    async def __aenter__(self) -> "FakeServer":
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"whizbang://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()
