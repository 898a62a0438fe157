"""Framing and hostile answers: the pure decoder at every split offset, then
a fake server sending truncated, oversized, undecodable and unexpected
frames. Each must be an error raised within a bounded time, never a hang."""
from __future__ import annotations

import asyncio
import struct

import pytest

import whizbang
from whizbang import framing
from whizbang._pb import whizbang_pb2 as pb
from whizbang.errors import ErrorCode, error_class

from fake import FakeServer, Peer

BOUND_S = 10  # no test here waits longer for an outcome


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, BOUND_S))


def frames(*payloads: bytes) -> bytes:
    return b"".join(framing.encode(p) for p in payloads)


# ---------------------------------------------------------------- the decoder


def test_decoder_every_split_offset() -> None:
    payloads = [b"", b"a", b"\x00" * 300, bytes(range(256)) * 3]
    stream = frames(*payloads)
    for cut in range(len(stream) + 1):
        d = framing.FrameDecoder(1024)
        got = d.feed(stream[:cut]) + d.feed(stream[cut:])
        assert got == payloads, cut
        assert d.buffered == 0


def test_decoder_byte_by_byte_keeps_an_incomplete_frame() -> None:
    d = framing.FrameDecoder(1024)
    got: list[bytes] = []
    for b in frames(b"hello", b"world")[:-1]:
        got += d.feed(bytes([b]))
    assert got == [b"hello"]
    assert d.buffered == 4 + 4  # the second frame's header and 4 of its 5 bytes


def test_decoder_refuses_a_length_above_the_bound_from_the_header_alone() -> None:
    d = framing.FrameDecoder(1024)
    assert d.feed(struct.pack(">I", 1024) + b"x") == []  # at the bound: waits for the rest
    d = framing.FrameDecoder(1024)
    with pytest.raises(framing.FrameTooLarge) as e:
        d.feed(struct.pack(">I", 1025))  # no body needed to refuse it
    assert e.value.size == 1025 and e.value.limit == 1024


# ---------------------------------------------------------------- a fake server


async def ping_pong(peer: Peer) -> None:
    while True:
        req = await peer.request()
        peer.send(pb.Response(id=req.id, pong=pb.Pong(nonce=req.ping.nonce)))


def test_keepalive_is_skipped() -> None:
    """Response{id 0, pong} before the answer is a keepalive, not an answer.
    This is the test the negative control (WB_PY_FAKE_CORRUPT=1) breaks."""
    async def script(peer: Peer) -> None:
        await peer.hello()
        req = await peer.request()
        peer.send(pb.Response(id=0, pong=pb.Pong()))
        peer.send(pb.Response(id=0, pong=pb.Pong()))
        peer.send(pb.Response(id=req.id, pong=pb.Pong(nonce=req.ping.nonce)))
        await ping_pong(peer)

    async def main() -> None:
        async with FakeServer(script) as fake:
            async with await whizbang.connect(fake.url) as conn:
                assert await conn.ping(7) == 7
                assert await conn.ping(8) == 8
                assert conn.keepalives == 2
            assert fake.errors == []
    run(main())


def test_truncated_frame_then_close() -> None:
    async def script(peer: Peer) -> None:
        await peer.hello()
        await peer.request()
        peer.send_raw(struct.pack(">I", 50) + b"\x08\x02" + b"\x00" * 8)  # 10 of 50 bytes
        await peer.writer.drain()
        peer.close()

    async def main() -> None:
        async with FakeServer(script) as fake:
            conn = await whizbang.connect(fake.url)
            with pytest.raises(whizbang.ConnectionClosedError, match="middle of a frame"):
                await conn.ping(1)
            with pytest.raises(whizbang.ConnectionClosedError):
                await conn.ping(2)  # and every later call, at once
            await conn.close()
    run(main())


def test_truncated_frame_then_silence_times_out() -> None:
    async def script(peer: Peer) -> None:
        await peer.hello()
        await peer.request()
        peer.send_raw(struct.pack(">I", 50) + b"\x08\x02")
        await asyncio.sleep(BOUND_S)

    async def main() -> None:
        async with FakeServer(script) as fake:
            async with await whizbang.connect(fake.url, call_timeout=0.3) as conn:
                with pytest.raises(whizbang.WhizbangTimeoutError):
                    await conn.ping(1)
    run(main())


def test_oversized_frame_is_refused_from_its_header() -> None:
    async def script(peer: Peer) -> None:
        await peer.hello()
        await peer.request()
        peer.send_raw(struct.pack(">I", 0x7FFFFFFF))  # 2 GiB announced, nothing follows
        await asyncio.sleep(BOUND_S)

    async def main() -> None:
        async with FakeServer(script) as fake:
            conn = await whizbang.connect(fake.url)
            with pytest.raises(whizbang.ProtocolError, match="2147483647 bytes"):
                await conn.ping(1)
            assert conn.closed
            await conn.close()
    run(main())


def test_frame_above_the_clients_own_bound() -> None:
    async def script(peer: Peer) -> None:
        await peer.hello()
        req = await peer.request()
        peer.send(pb.Response(id=req.id, pong=pb.Pong()), extra=b"\xba\x3e\x88\x10" + b"x" * 2056)

    async def main() -> None:
        async with FakeServer(script) as fake:
            conn = await whizbang.connect(fake.url, max_incoming_frame=2048)
            with pytest.raises(whizbang.ProtocolError, match="limit of 2048"):
                await conn.ping(0)
            await conn.close()
    run(main())


def test_unknown_fields() -> None:
    """An unknown field beside the expected body is skipped (a newer
    server's addition); an answer whose body is unknown or not the one the
    request → answer table names is a server bug: INTERNAL."""
    unknown = b"\xb8\x3e\x01"  # field 999, varint 1

    async def script(peer: Peer) -> None:
        await peer.hello()
        req = await peer.request()
        peer.send(pb.Response(id=req.id, pong=pb.Pong(nonce=req.ping.nonce)), extra=unknown)
        req = await peer.request()
        peer.send(pb.Response(id=req.id), extra=unknown)  # no body this client knows
        req = await peer.request()
        peer.send(pb.Response(id=req.id, stats=pb.ServerStats()))  # the wrong body
        await ping_pong(peer)

    async def main() -> None:
        async with FakeServer(script) as fake:
            async with await whizbang.connect(fake.url) as conn:
                assert await conn.ping(5) == 5
                with pytest.raises(whizbang.InternalError, match="body None"):
                    await conn.ping(6)
                with pytest.raises(whizbang.InternalError, match="'stats'"):
                    await conn.ping(7)
                assert await conn.ping(8) == 8  # the connection is still fine
    run(main())


def test_undecodable_frame() -> None:
    async def script(peer: Peer) -> None:
        await peer.hello()
        await peer.request()
        peer.send_raw(struct.pack(">I", 3) + b"\x0a\xff\xff")
        await asyncio.sleep(BOUND_S)

    async def main() -> None:
        async with FakeServer(script) as fake:
            conn = await whizbang.connect(fake.url)
            with pytest.raises(whizbang.ProtocolError, match="does not decode"):
                await conn.ping(1)
            await conn.close()
    run(main())


def test_id0_error_fails_everything_pending() -> None:
    async def script(peer: Peer) -> None:
        await peer.hello()
        for _ in range(3):
            await peer.request()
        peer.send(pb.Response(id=0, error=pb.Error(
            code=pb.RESOURCE_EXHAUSTED, message="an administrator closed this connection")))
        await asyncio.sleep(BOUND_S)

    async def main() -> None:
        async with FakeServer(script) as fake:
            conn = await whizbang.connect(fake.url)
            results = await asyncio.gather(conn.ping(1), conn.ping(2), conn.ping(3),
                                           return_exceptions=True)
            for r in results:
                assert isinstance(r, whizbang.ResourceExhaustedError), r
                assert "administrator closed" in r.message
            with pytest.raises(whizbang.ConnectionClosedError, match="administrator closed"):
                await conn.ping(4)
            await conn.close()
    run(main())


def test_server_closes_without_answering() -> None:
    async def script(peer: Peer) -> None:
        await peer.hello()
        await peer.request()
        peer.close()

    async def main() -> None:
        async with FakeServer(script) as fake:
            conn = await whizbang.connect(fake.url)
            with pytest.raises(whizbang.ConnectionClosedError, match="closed the connection"):
                await conn.ping(1)
            await conn.close()
    run(main())


def test_error_codes_map_to_classes() -> None:
    """Every code of §5 answers its class, with code, message and (for
    WRONG_EXPECTED_VERSION) actual_version; a code this client does not know
    is handled like INTERNAL, keeping its number."""
    codes = [c for c in range(1, 18)] + [99]

    async def script(peer: Peer) -> None:
        await peer.hello()
        reqs = [await peer.request() for _ in codes]
        for req, code in zip(reversed(reqs), reversed(codes)):  # answered in reverse order
            peer.send(pb.Response(id=req.id, error=pb.Error(
                code=code, message=f"message {code}", actual_version=-1 if code == 7 else 0)))
        await asyncio.sleep(BOUND_S)

    async def main() -> None:
        async with FakeServer(script) as fake:
            async with await whizbang.connect(fake.url) as conn:
                results = await asyncio.gather(*(conn.ping(c) for c in codes),
                                               return_exceptions=True)
        for code, r in zip(codes, results):
            assert isinstance(r, whizbang.WhizbangError), r
            assert r.code == code and r.message == f"message {code}"
            assert type(r) is error_class(code)
            if code == 99:
                assert isinstance(r, whizbang.InternalError)
            else:
                assert type(r).__name__.upper().replace("ERROR", "").replace("_", "") == \
                    ErrorCode(code).name.replace("_", ""), (code, type(r))
        wev = results[codes.index(7)]
        assert isinstance(wev, whizbang.WrongExpectedVersionError) and wev.actual_version == -1
    run(main())


def test_pipelined_answers_in_any_order() -> None:
    async def script(peer: Peer) -> None:
        await peer.hello()
        reqs = [await peer.request() for _ in range(100)]
        for req in reversed(reqs):
            peer.send(pb.Response(id=req.id, pong=pb.Pong(nonce=req.ping.nonce)))
        await asyncio.sleep(BOUND_S)

    async def main() -> None:
        async with FakeServer(script) as fake:
            async with await whizbang.connect(fake.url) as conn:
                got = await asyncio.gather(*(conn.ping(n) for n in range(100)))
        assert got == list(range(100))
    run(main())


def test_request_above_max_frame_is_refused_here() -> None:
    async def script(peer: Peer) -> None:
        await peer.hello(max_frame=4096)
        await ping_pong(peer)

    async def main() -> None:
        async with FakeServer(script) as fake:
            async with await whizbang.connect(fake.url) as conn:
                with pytest.raises(whizbang.FrameTooLargeError, match="refused here") as e:
                    await conn.append("s", [whizbang.Event("T", b"x" * 5000)])
                assert e.value.code == ErrorCode.FRAME_TOO_LARGE
                assert await conn.ping(3) == 3  # the connection survives
    run(main())


def test_hello_without_answer_times_out_the_connect() -> None:
    async def script(peer: Peer) -> None:
        await peer.request()
        await asyncio.sleep(BOUND_S)

    async def main() -> None:
        async with FakeServer(script) as fake:
            with pytest.raises(whizbang.WhizbangTimeoutError, match="Hello"):
                await whizbang.connect(fake.url, timeout=0.3)
    run(main())


def test_scram_server_signature_must_verify() -> None:
    """A server that does not hold the user's keys cannot make v=: the
    client refuses it even though the server says the login succeeded."""
    async def script(peer: Peer) -> None:
        req = await peer.request()
        first = req.hello.auth_data.decode()
        nonce = first.split("r=", 1)[1]
        server_first = f"r={nonce}SERVERNONCE,s=QUFBQUFBQUFBQUFBQUFBQQ==,i=4096"
        peer.send(pb.Response(id=req.id, hello=pb.HelloResult(
            protocol_version=1, max_frame=4194304, auth_data=server_first.encode())))
        req = await peer.request()
        assert req.WhichOneof("body") == "authenticate"
        peer.send(pb.Response(id=req.id, authenticate=pb.AuthenticateResult(
            auth_data=b"v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", user="alice")))
        await asyncio.sleep(BOUND_S)

    async def main() -> None:
        async with FakeServer(script) as fake:
            with pytest.raises(whizbang.UnauthenticatedError, match="does not verify"):
                await whizbang.connect(fake.url.replace("//", "//alice@"), password="pw")
    run(main())
