"""Reconnection (``connect(..., reconnect=...)``), against a whizbangd that is
killed (SIGKILL, or stopped with SIGTERM) and started again on the same port
and data directory mid-stream, through a proxy that loses one answer, and
against a fake server for what must be exact (the resume request, a
SHUTTING_DOWN answer, a silent server):

- appends in flight when the server dies land exactly once, and an append
  whose answer was lost is retried with its event ids and answered as a
  replay; a call that is not safe to repeat raises ConnectionLostError;
- a subscription ($all filtered, a stream) resumes after its last event:
  every event exactly once, in order, one caught-up mark; a consumer member
  joins again;
- a call made while the server is down waits for it; a server that stays
  down fails calls after give_up_after or max_attempts, and the next call
  tries again; the next host of the list is tried;
- without the option a broken connection stays broken."""
from __future__ import annotations

import asyncio
import os
import signal
from typing import Any, Optional

import pytest

import whizbang
from whizbang import CAUGHT_UP, Event, Reconnect
from whizbang._pb import whizbang_pb2 as pb

from fake import FakeServer, Peer
from proxy import Proxy
from server import Server

BOUND_S = 90
FAST = Reconnect(initial_delay=0.02, max_delay=0.2, give_up_after=20.0)


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, BOUND_S))


def kill_now(s: Server) -> None:
    """SIGKILL without waiting: the loop goes on while the process dies."""
    assert s.proc is not None
    os.kill(s.proc.pid, signal.SIGKILL)


async def restart_after(s: Server, delay: float) -> None:
    await asyncio.sleep(delay)
    await asyncio.to_thread(s.kill)  # reaps it
    await asyncio.to_thread(s.restart)


async def bounce(s: Server, delay: float = 0.1) -> None:
    kill_now(s)
    await restart_after(s, delay)


# ---------------------------------------------------------------- appends


def test_appends_in_flight_when_the_server_dies_land_exactly_once(server: Server) -> None:
    async def main() -> None:
        conn = await whizbang.connect(server.url, reconnect=FAST, call_timeout=30)
        n, nxt, done = 400, 0, 0
        acked: list[int] = []
        restarting: Optional[asyncio.Future[None]] = None

        async def worker() -> None:
            nonlocal nxt, done, restarting
            while nxt < n:
                i = nxt
                nxt += 1
                await conn.append("rc-appends", [Event("E", str(i).encode())])
                acked.append(i)
                done += 1
                if done == 100:
                    # Killed with up to 16 appends in flight, more to come.
                    kill_now(server)
                    restarting = asyncio.ensure_future(restart_after(server, 0.3))

        await asyncio.gather(*(worker() for _ in range(16)))
        assert restarting is not None
        await restarting
        assert conn.reconnections >= 1
        seen = [int(ev.data) async for ev in conn.read_stream("rc-appends")]
        assert len(seen) == n, f"{len(seen)} events stored for {n} appends"
        assert sorted(seen) == list(range(n))  # each exactly once
        assert sorted(acked) == list(range(n))  # every acknowledged one is there
        await conn.close()
    run(main())


def test_an_append_whose_answer_was_lost_is_a_replay(server: Server) -> None:
    """The server stored it, the answer was lost: the retry carries the same
    UUIDv7 ids, so the server answers a replay instead of storing it twice
    (or, here, refusing it: the expected version no longer holds)."""
    async def main() -> None:
        proxy = await Proxy("127.0.0.1", server.port).start()
        try:
            conn = await whizbang.connect(proxy.url, reconnect=FAST)
            await conn.append("rc-lost", [Event("First")])
            proxy.lose_next_answer()
            r = await conn.append("rc-lost", [Event("Second"), Event("Third")], exact=0)
            assert proxy.answers_lost == 1 and conn.reconnections == 1
            assert r.idempotent_replay and r.stream_version == 2
            assert [ev.type async for ev in conn.read_stream("rc-lost")] == [
                "First", "Second", "Third"]
            await conn.close()
        finally:
            await proxy.close()
    run(main())


def test_a_call_not_safe_to_repeat_raises_connection_lost(server: Server) -> None:
    async def main() -> None:
        proxy = await Proxy("127.0.0.1", server.port).start()
        try:
            conn = await whizbang.connect(proxy.url, reconnect=FAST)
            proxy.lose_next_answer()
            with pytest.raises(whizbang.ConnectionLostError):
                await conn.create_consumer("rc-once")
            # It was carried out, once; the connection works again.
            names = [c.config.name for c in await conn.list_consumers()]
            assert names.count("rc-once") == 1
            proxy.lose_next_answer()
            with pytest.raises(whizbang.ConnectionLostError):
                await conn.lease("rc-projection")
            assert await conn.ping(2) == 2  # connected again (the next answer is Hello's)
            proxy.lose_next_answer()
            with pytest.raises(whizbang.ConnectionLostError):
                await conn.request("get_stats", pb.GetStats())  # request(): never repeated
            assert await conn.ping(3) == 3
            assert conn.reconnections == 3
            await conn.close()
        finally:
            await proxy.close()
    run(main())


# ---------------------------------------------------------------- subscriptions


def test_a_stream_subscription_resumes_without_gap_or_duplicate(server: Server) -> None:
    async def main() -> None:
        writer = await whizbang.connect(server.url, reconnect=FAST, call_timeout=30)
        reader = await whizbang.connect(server.url, reconnect=FAST, call_timeout=30)
        for i in range(50):
            await writer.append("rc-sub", [Event("E", str(i).encode())])
        sub = await reader.subscribe_stream("rc-sub", window=8, markers=True)
        versions: list[int] = []
        caught_up = 0
        async for item in sub:
            if item is CAUGHT_UP:
                # Killed once during the catch-up (below) and once after it:
                # the resumed subscription is caught up again at once, which
                # is not signalled twice.
                caught_up += 1
                if caught_up == 1:
                    await bounce(server)
                    while reader.reconnections < 2 or sub.resumed < 2:
                        await asyncio.sleep(0.01)
                    for i in range(50, 100):
                        await writer.append("rc-sub", [Event("E", str(i).encode())])
                continue
            versions.append(item.version)
            assert int(item.data) == item.version
            if len(versions) == 30:
                await bounce(server)
            if len(versions) == 100:
                break
        assert versions == list(range(100))
        assert caught_up == 1 and sub.resumed == 2
        await sub.close()
        await writer.close()
        await reader.close()
    run(main())


def test_an_all_subscription_resumes_by_position_across_a_sigterm(server: Server) -> None:
    """A graceful stop (SIGTERM: requests not started are answered
    SHUTTING_DOWN, then the connection closes) and a restart, with appends
    going on: every append lands once, and the filtered $all subscriber sees
    each exactly once, in order."""
    async def main() -> None:
        conn = await whizbang.connect(server.url, reconnect=FAST, call_timeout=30)
        sub = await conn.subscribe_all(stream_prefix="rc-all-", window=4)
        got: list[str] = []

        async def reading() -> None:
            async for ev in sub:
                got.append(ev.data.decode())
                if len(got) == 60:
                    break

        task = asyncio.ensure_future(reading())

        async def appending(lo: int, hi: int) -> None:
            for i in range(lo, hi):
                await conn.append(f"rc-all-{i % 3}", [Event("E", str(i).encode())])

        await appending(0, 20)
        async def stop_and_restart() -> None:
            await asyncio.to_thread(server.kill, signal.SIGTERM)
            await asyncio.sleep(0.2)
            await asyncio.to_thread(server.restart)

        restarting = asyncio.ensure_future(stop_and_restart())
        await appending(20, 40)  # sent while it stops, and after: they wait for the restart
        await restarting
        await appending(40, 60)
        await asyncio.wait_for(task, 30)
        assert got == [str(i) for i in range(60)]
        assert sub.resumed >= 1 and conn.reconnections >= 1
        stored = sorted([int(ev.data) async for ev in conn.read_all(stream_prefix="rc-all-")])
        assert stored == list(range(60))
        await sub.close()
        await conn.close()
    run(main())


def test_a_consumer_member_joins_again(server: Server) -> None:
    async def main() -> None:
        conn = await whizbang.connect(server.url, reconnect=FAST, call_timeout=30)
        await conn.create_consumer("rc-group", stream_prefix="rc-job-")
        member = await conn.join_consumer("rc-group", window=4)
        settled: set[str] = set()

        async def working() -> None:
            async for ev in member:
                settled.add(ev.data.decode())
                try:
                    await conn.ack("rc-group", [ev])
                except whizbang.BadRequestError:
                    # An ack the restart interrupted is refused when sent
                    # again: the restarted server has not handed the event
                    # out yet; it will, and it is acked then
                    # (docs/SUBSCRIPTIONS.md §2.3).
                    pass
                if len(settled) == 20:
                    break

        task = asyncio.ensure_future(working())
        for i in range(10):
            await conn.append("rc-job-1", [Event("J", str(i).encode())])
        await bounce(server)
        for i in range(10, 20):
            await conn.append("rc-job-1", [Event("J", str(i).encode())])
        await asyncio.wait_for(task, 30)
        assert settled == {str(i) for i in range(20)}
        assert member.resumed >= 1
        await member.close()
        info = [c for c in await conn.list_consumers() if c.config.name == "rc-group"][0]
        assert info.members == 0
        await conn.close()
    run(main())


# ---------------------------------------------------------------- waiting, giving up, hosts


def test_a_call_made_while_the_server_is_down_waits_for_it(server: Server) -> None:
    async def main() -> None:
        conn = await whizbang.connect(server.url, reconnect=FAST, call_timeout=30)
        kill_now(server)
        restarting = asyncio.ensure_future(restart_after(server, 0.3))
        r = await conn.append("rc-wait", [Event("E")])
        assert r.stream_version == 0 and conn.reconnections == 1
        await restarting
        await conn.close()
    run(main())


def test_a_server_that_stays_down_fails_calls_then_the_next_call_tries_again(
        server: Server) -> None:
    async def main() -> None:
        conn = await whizbang.connect(server.url, call_timeout=30, reconnect=Reconnect(
            initial_delay=0.02, max_delay=0.1, give_up_after=0.3))
        sub = await conn.subscribe_all("end")
        await asyncio.to_thread(server.kill)
        with pytest.raises(whizbang.ConnectionClosedError, match="no connection"):
            await conn.ping()
        with pytest.raises(whizbang.ConnectionClosedError):
            await asyncio.wait_for(sub.__anext__(), 10)  # its resume gave up too
        await asyncio.to_thread(server.restart)
        assert await conn.ping(4) == 4
        await conn.close()

        bounded = await whizbang.connect(server.url, call_timeout=30, reconnect=Reconnect(
            initial_delay=0.01, max_delay=0.02, give_up_after=60, max_attempts=3))
        await asyncio.to_thread(server.kill)
        with pytest.raises(whizbang.ConnectionClosedError, match="after 3 attempts"):
            await bounded.ping()
        await asyncio.to_thread(server.restart)
        await bounded.close()
    run(main())


def test_the_next_host_of_the_list(server: Server) -> None:
    async def main() -> None:
        # A host that refuses is passed over, at connect and after.
        async with await whizbang.connect(["whizbang://127.0.0.1:1", server.url]) as conn:
            assert await conn.ping(1) == 1
        proxy = await Proxy("127.0.0.1", server.port).start()
        conn = await whizbang.connect([proxy.url, server.url], reconnect=FAST)
        assert proxy.accepted == 1
        await proxy.close()  # the first host goes away for good
        assert await conn.ping(2) == 2
        assert conn.reconnections == 1 and proxy.accepted == 1
        clients = await conn.list_clients()
        assert any(c.self for c in clients)
        await conn.close()
    run(main())


def test_without_reconnect_a_broken_connection_stays_broken(server: Server) -> None:
    async def main() -> None:
        conn = await whizbang.connect(server.url)
        await asyncio.to_thread(server.kill)
        await asyncio.to_thread(server.restart)
        with pytest.raises(whizbang.ConnectionClosedError) as e:
            await conn.ping()
        assert not isinstance(e.value, whizbang.ConnectionLostError)
        assert conn.closed and conn.reconnections == 0
        await conn.close()
    run(main())


# ---------------------------------------------------------------- exact, with a fake server


def test_the_resume_request_starts_after_the_last_event_with_the_credits_left() -> None:
    """The first connection pushes positions 5 and 6 of a $all subscription
    (window 10), then breaks; the test consumes one of them. The second
    Subscribe must start at 7, with 10 - 1 queued - 1 consumed = 8 credits,
    its filters kept; nothing is delivered twice."""
    subscribes: list[pb.Subscribe] = []

    async def script(peer: Peer) -> None:
        await peer.hello()
        req = await peer.request()
        assert req.WhichOneof("body") == "subscribe"
        subscribes.append(req.subscribe)
        peer.send(pb.Response(id=req.id, subscribe=pb.SubscribeResult(subscription=1, start=5)))
        if len(subscribes) == 1:
            for pos in (5, 6):
                peer.send(pb.Response(id=req.id, subscription_item=pb.SubscriptionItem(
                    subscription=1, event=pb.RecordedEvent(position=pos, stream="p-1"))))
            peer.send(pb.Response(id=req.id, subscription_item=pb.SubscriptionItem(
                subscription=1, caught_up=True)))
            await peer.writer.drain()
            await asyncio.sleep(0.2)  # while the test takes one
            peer.close()
            return
        peer.send(pb.Response(id=req.id, subscription_item=pb.SubscriptionItem(
            subscription=2, caught_up=True)))  # not said twice
        peer.send(pb.Response(id=req.id, subscription_item=pb.SubscriptionItem(
            subscription=2, event=pb.RecordedEvent(position=7, stream="p-2"))))
        await asyncio.sleep(5)

    async def main() -> None:
        async with FakeServer(script) as fake:
            async with await whizbang.connect(fake.url, reconnect=FAST) as conn:
                sub = await conn.subscribe_all(stream_prefix="p-", window=10, markers=True)
                items: list[Any] = [await sub.__anext__()]
                await asyncio.sleep(0.5)  # the link breaks, the subscription resumes
                for _ in range(3):
                    items.append(await asyncio.wait_for(sub.__anext__(), 5))
                assert [getattr(i, "position", i) for i in items] == [5, 6, CAUGHT_UP, 7]
                assert sub.resumed == 1 and conn.reconnections == 1
            assert fake.errors == []
    run(main())
    first, second = subscribes
    assert getattr(first, "from") == pb.FROM_START and first.credits == 10
    assert getattr(second, "from") == pb.FROM_POSITION and second.position == 7
    assert second.credits == 8 and second.stream_prefix == "p-"


def test_shutting_down_answer_is_sent_again_on_the_next_connection() -> None:
    """An append answered SHUTTING_DOWN was not carried out (PROTOCOL.md
    §1): with reconnect it is sent again, with the same event id, once the
    server is back; a lease so answered is not retried."""
    appends: list[pb.AppendEvents] = []

    async def script(peer: Peer) -> None:
        await peer.hello()
        while True:
            req = await peer.request()
            body = req.WhichOneof("body")
            if body == "append_events":
                appends.append(req.append_events)
                if len(appends) == 1:
                    peer.send(pb.Response(id=req.id, error=pb.Error(
                        code=pb.SHUTTING_DOWN, message="the server is shutting down")))
                    await peer.writer.drain()
                    peer.close()
                    return
                peer.send(pb.Response(id=req.id, append_events=pb.AppendResult(
                    first_position=1, last_position=1, stream_version=0)))
            elif body == "lease":
                peer.send(pb.Response(id=req.id, error=pb.Error(
                    code=pb.SHUTTING_DOWN, message="the server is shutting down")))
            else:
                peer.send(pb.Response(id=req.id, pong=pb.Pong(nonce=req.ping.nonce)))

    async def main() -> None:
        async with FakeServer(script) as fake:
            async with await whizbang.connect(fake.url, reconnect=FAST) as conn:
                r = await conn.append("s", [Event("E")])
                assert r.stream_version == 0 and conn.reconnections == 1
                with pytest.raises(whizbang.ShuttingDownError):
                    await conn.lease("p")
            assert fake.errors == []
    run(main())
    assert len(appends) == 2 and appends[0].events[0].id == appends[1].events[0].id


def test_a_silent_server_is_taken_for_dead() -> None:
    async def script(peer: Peer) -> None:
        await peer.hello()
        await asyncio.sleep(5)  # reads nothing, answers nothing, no keepalive

    async def main() -> None:
        async with FakeServer(script) as fake:
            conn = await whizbang.connect(fake.url, call_timeout=None, dead_after=0.3)
            with pytest.raises(whizbang.ConnectionClosedError, match="taken for dead"):
                await conn.ping()
            await conn.close()
    run(main())


def test_the_blocking_client_reconnects(server: Server) -> None:
    with whizbang.Client(server.url, reconnect=FAST, call_timeout=30) as c:
        c.append("rc-sync", [Event("E", b"0")])
        with c.subscribe_stream("rc-sync", window=4) as sub:
            assert sub.next(timeout=10).data == b"0"
            server.kill()
            server.restart()
            c.append("rc-sync", [Event("E", b"1")])  # waits for the new connection
            assert sub.next(timeout=10).data == b"1"  # resumed after version 0
            assert sub.resumed == 1 and c.reconnections == 1
        assert [ev.data for ev in c.read_stream("rc-sync")] == [b"0", b"1"]
