"""The blocking facade against a real whizbangd: the asyncio client's
calls, iterators and errors, from plain threads."""
from __future__ import annotations

import threading

import pytest

import whizbang
from whizbang import Client, Event

from server import Server


def test_sync_client(server: Server) -> None:
    with Client(server.url) as c:
        assert c.ping(3) == 3
        c.append("sync-1", [Event("A"), Event("B")], expected=whizbang.NO_STREAM)
        with pytest.raises(whizbang.WrongExpectedVersionError) as e:
            c.append("sync-1", [Event("C")], expected=whizbang.NO_STREAM)
        assert e.value.actual_version == 1
        assert [ev.type for ev in c.read_stream("sync-1")] == ["A", "B"]
        assert [ev.type for ev in c.read_stream("sync-1", limit=1)] == ["A"]

        with c.subscribe_stream("sync-1") as sub:
            assert [next(sub).type for _ in range(2)] == ["A", "B"]
            with pytest.raises(TimeoutError):
                sub.next(timeout=0.2)  # caught up, nothing live yet
            assert sub.caught_up
            c.append("sync-1", [Event("Live")])
            assert sub.next(timeout=10).type == "Live"

        errors: list[BaseException] = []

        def writer(n: int) -> None:
            try:
                for i in range(50):
                    c.append(f"sync-thread-{n}", [Event("T", str(i).encode())])
            except BaseException as ex:  # noqa: BLE001 - checked below
                errors.append(ex)

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
        assert c.stream_info("sync-thread-3").event_count == 50

        result = c.run_projection("sync-view", lambda lease: 'upsert V "v" {n: 1}',
                                  wait_watermark=True)
        assert whizbang.fields(c.get_entity("V", "v")) == {"n": 1}
        assert result.sequence >= 1
    with pytest.raises(whizbang.ConnectionClosedError):
        Client(server.url.rsplit(":", 1)[0] + ":1")
