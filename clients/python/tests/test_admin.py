"""Stream metadata and deletes, and the admin calls with progress callbacks
(scavenge, backup), verify, list_clients and indexes, against a real
whizbangd (one with a backup-dir)."""
from __future__ import annotations

import asyncio
import os
import tempfile
from typing import Iterator

import pytest

import whizbang
from whizbang import Event
from whizbang._pb import whizbang_pb2 as pb

from server import Server

BOUND_S = 60


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, BOUND_S))


@pytest.fixture(scope="module")
def backup_server() -> Iterator[tuple[Server, str]]:
    backups = tempfile.mkdtemp(prefix="wb-py-backups-")
    os.rmdir(backups)  # the server makes it, 0700
    s = Server()
    s.start(["--backup-dir", backups])
    try:
        yield s, backups
    finally:
        s.stop()
        for root, dirs, files in os.walk(backups, topdown=False):
            for f in files:
                os.unlink(os.path.join(root, f))
            for d in dirs:
                os.rmdir(os.path.join(root, d))
        if os.path.isdir(backups):
            os.rmdir(backups)


def test_stream_metadata(backup_server: tuple[Server, str]) -> None:
    server, _ = backup_server

    async def main() -> None:
        async with await whizbang.connect(server.url) as conn:
            await conn.append("md-1", [Event("E", str(i).encode()) for i in range(5)])
            assert await conn.get_stream_metadata("md-1") == pb.StreamMetadata()
            got = await conn.set_stream_metadata("md-1", max_count=2)
            assert got.max_count == 2
            assert (await conn.get_stream_metadata("md-1")).max_count == 2
            assert [ev.version async for ev in conn.read_stream("md-1")] == [3, 4]
            await conn.set_stream_metadata("md-1", pb.StreamMetadata(truncate_before=1))
            md = await conn.get_stream_metadata("md-1")
            assert md.truncate_before == 1 and md.max_count == 0  # replaced, not merged
            assert [ev.version async for ev in conn.read_stream("md-1")] == [1, 2, 3, 4]
    run(main())


def test_soft_and_hard_delete(backup_server: tuple[Server, str]) -> None:
    server, _ = backup_server

    async def main() -> None:
        async with await whizbang.connect(server.url) as conn:
            await conn.append("del-soft", [Event("E"), Event("E")])
            assert await conn.delete_stream("del-soft") == 1
            with pytest.raises(whizbang.NotFoundError):
                [ev async for ev in conn.read_stream("del-soft")]
            r = await conn.append("del-soft", [Event("Again")])  # written again: versions go on
            assert r.stream_version == 2
            assert [ev.type async for ev in conn.read_stream("del-soft")] == ["Again"]

            await conn.append("del-hard", [Event("E")])
            assert await conn.delete_stream("del-hard", hard=True) == 0
            with pytest.raises(whizbang.StreamDeletedError):
                await conn.append("del-hard", [Event("E")])
    run(main())


def test_scavenge_with_progress(backup_server: tuple[Server, str]) -> None:
    server, _ = backup_server

    async def main() -> None:
        async with await whizbang.connect(server.url) as conn:
            for _ in range(3):
                await conn.append("scv-1", [Event("E") for _ in range(1000)])
            await conn.delete_stream("scv-1")
            progress: list[pb.ScavengeResult] = []
            final = await conn.scavenge(progress.append)
            assert final.done and final.events_removed >= 3000
            assert progress and not any(p.done for p in progress)
            assert [p.position for p in progress] == sorted(p.position for p in progress)
    run(main())


def test_backup_verify_clients_indexes(backup_server: tuple[Server, str]) -> None:
    server, backups = backup_server

    async def main() -> None:
        async with await whizbang.connect(server.url, client_name="admin-test") as conn:
            r = await conn.append("bk-1", [Event("E", b"x" * 1000) for _ in range(50)])
            progress: list[pb.BackupResult] = []
            result = await conn.backup("first", on_progress=progress.append)
            assert result.done and result.path == os.path.join(os.path.realpath(backups), "first")
            assert os.path.isfile(os.path.join(result.path, "data.mdb"))
            assert result.last_position >= r.last_position and result.bytes > 0
            assert all(not p.done for p in progress)
            with pytest.raises(whizbang.BadRequestError):
                await conn.backup("first")  # never overwrites

            v = await conn.verify()
            assert v.match and v.first_difference == ""

            clients = await conn.list_clients()
            me = [c for c in clients if c.self]
            assert len(me) == 1 and me[0].client_name == "admin-test"

            await conn.create_index("Order", "status")
            assert [(i.type, i.field) for i in (await conn.list_indexes()).indexes
                    if i.type == "Order"] == [("Order", "status")]
            await conn.drop_index("Order", "status")
            assert not [i for i in (await conn.list_indexes()).indexes if i.type == "Order"]
    run(main())


def test_admin_through_the_blocking_client(backup_server: tuple[Server, str]) -> None:
    server, _ = backup_server
    with whizbang.Client(server.url) as c:
        c.append("sync-md", [Event("E") for _ in range(3)])
        c.set_stream_metadata("sync-md", max_count=1)
        assert c.get_stream_metadata("sync-md").max_count == 1
        assert [ev.version for ev in c.read_stream("sync-md")] == [2]
        assert c.delete_stream("sync-md") == 2
        seen: list[int] = []
        assert c.scavenge(lambda p: seen.append(p.position)).done
        assert c.backup("from-sync").done
        assert c.verify().match
        assert any(ci.self for ci in c.list_clients())
