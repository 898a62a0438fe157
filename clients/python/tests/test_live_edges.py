"""What a real whizbangd does at the edges, each with its own server:
keepalives on a quiet connection, an error pushed to a subscription, the
server stopping under a subscriber and a waiting call, and a Scavenge's
progress."""
from __future__ import annotations

import asyncio

import pytest

import whizbang
from whizbang import Event
from whizbang._pb import whizbang_pb2 as pb

from server import Server


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_keepalives_on_a_quiet_connection_are_skipped() -> None:
    s = Server()
    s.start(["--keepalive-interval=100ms"])
    try:
        async def main() -> None:
            async with await whizbang.connect(s.url) as conn:
                sub = await conn.subscribe_all("end")
                await asyncio.sleep(0.6)  # about five keepalives
                assert conn.keepalives >= 2
                assert await conn.ping(1) == 1
                await conn.append("quiet", [Event("Late")])
                assert (await asyncio.wait_for(sub.__anext__(), 10)).type == "Late"
                assert not conn.closed
        run(main())
    finally:
        s.stop()


def test_error_pushed_to_a_subscription(server: Server) -> None:
    """A hard delete ends a stream subscription with STREAM_DELETED, pushed
    with the Subscribe's id: the iterator raises it, after what came first."""
    async def main() -> None:
        async with await whizbang.connect(server.url) as conn:
            await conn.append("doomed", [Event("First")])
            sub = await conn.subscribe_stream("doomed")
            assert (await sub.__anext__()).type == "First"
            await conn.request("delete_stream", pb.DeleteStream(stream="doomed", hard=True))
            with pytest.raises(whizbang.StreamDeletedError):
                await asyncio.wait_for(sub.__anext__(), 10)
            assert await conn.ping(2) == 2  # the connection goes on
    run(main())


def test_scavenge_reports_progress(server: Server) -> None:
    async def main() -> None:
        async with await whizbang.connect(server.url) as conn:
            for _ in range(3):
                await conn.append("scavenged", [Event("E") for _ in range(1000)])
            await conn.request("delete_stream", pb.DeleteStream(stream="scavenged"))
            progress: list[pb.ScavengeResult] = []
            final = await conn.request("scavenge", pb.Scavenge(), progress=progress.append)
            assert final.done and final.events_removed >= 3000
            assert progress and not any(p.done for p in progress)  # 1000 events a chunk
            assert [p.position for p in progress] == sorted(p.position for p in progress)
    run(main())


def test_server_stopping_ends_subscriptions_and_calls() -> None:
    s = Server()
    s.start()
    try:
        async def main() -> None:
            conn = await whizbang.connect(s.url)
            sub = await conn.subscribe_all("end")
            wait = asyncio.ensure_future(conn.wait_for_watermark(10**9, timeout_ms=30_000))
            await asyncio.sleep(0.1)
            await asyncio.get_running_loop().run_in_executor(None, s.stop)
            with pytest.raises((whizbang.ConnectionClosedError, whizbang.ShuttingDownError)):
                await asyncio.wait_for(sub.__anext__(), 10)
            with pytest.raises((whizbang.ConnectionClosedError, whizbang.ShuttingDownError)):
                await asyncio.wait_for(wait, 10)
            with pytest.raises(whizbang.ConnectionClosedError):
                await conn.ping()
            await conn.close()
        run(main())
    finally:
        s.stop()
