"""A TCP proxy in front of a real whizbangd that can lose an answer: with
``lose_next_answer()``, the next bytes the server sends to a client are
dropped and both sides of that client's connection are cut, so the request
was carried out by the server and its answer never reached the client (the
case an idempotent retry is for). ``cut()`` cuts every connection now;
``close()`` also stops accepting (a host that is gone)."""
from __future__ import annotations

import asyncio
from typing import Optional


class Proxy:
    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.accepted = 0
        self.answers_lost = 0
        self._lose = False
        self._server: Optional[asyncio.base_events.Server] = None
        self._pairs: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"whizbang://127.0.0.1:{self.port}"

    async def start(self) -> "Proxy":
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def lose_next_answer(self) -> None:
        self._lose = True

    def cut(self) -> None:
        for a, b in self._pairs:
            for w in (a, b):
                w.transport.abort()
        self._pairs.clear()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self.cut()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _handle(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        self._tasks.add(asyncio.current_task())  # type: ignore[arg-type]
        self.accepted += 1
        try:
            sreader, swriter = await asyncio.open_connection(*self.target)
        except OSError:
            cwriter.transport.abort()
            return
        pair = (cwriter, swriter)
        self._pairs.append(pair)

        async def pump(r: asyncio.StreamReader, w: asyncio.StreamWriter, answers: bool) -> None:
            try:
                while True:
                    data = await r.read(1 << 16)
                    if not data:
                        break
                    if answers and self._lose:
                        self._lose = False
                        self.answers_lost += 1
                        break  # dropped, and the connection cut below
                    w.write(data)
                    await w.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                cwriter.transport.abort()
                swriter.transport.abort()

        try:
            await asyncio.gather(pump(creader, swriter, False), pump(sreader, cwriter, True))
        finally:
            if pair in self._pairs:
                self._pairs.remove(pair)
            self._tasks.discard(asyncio.current_task())  # type: ignore[arg-type]
