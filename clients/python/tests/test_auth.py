"""Logging in against a real whizbangd: an API token, SCRAM-SHA-256 with a
credential made here, a wrong password, the Unix socket, and TLS with the
ALPN whizbang/1 (certificates made by the CLI's `certs` commands)."""
from __future__ import annotations

import asyncio
import os
import subprocess
import tempfile
from typing import Iterator

import pytest

import whizbang

from server import Server, program


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_token(server: Server) -> None:
    async def main() -> None:
        async with await whizbang.connect(server.url) as admin:
            made = await admin.create_token("reader", description="python test")
        async with await whizbang.connect(server.url, token=made.token) as conn:
            assert conn.user == f"token:{made.id}" and conn.roles == ["reader"]
            await conn.ping()
            with pytest.raises(whizbang.PermissionDeniedError):
                await conn.append("t", [whizbang.Event("X")])
        with pytest.raises(whizbang.UnauthenticatedError, match="authentication failed"):
            await whizbang.connect(server.url, token=made.token[:-4] + "AAAA")
    run(main())


def test_scram(server: Server) -> None:
    async def main() -> None:
        async with await whizbang.connect(server.url) as admin:
            # The server's default --scram-iterations (100 000) is the least it takes.
            await admin.put_user("alice", ["writer"], password="correct horse")
        url = server.url.replace("//", "//alice@")
        async with await whizbang.connect(url, password="correct horse") as conn:
            assert conn.user == "alice" and conn.roles == ["writer"]
            await conn.append("alice-1", [whizbang.Event("X")])
        with pytest.raises(whizbang.UnauthenticatedError, match="authentication failed"):
            await whizbang.connect(url, password="wrong horse")
    run(main())


def test_unix_socket(server: Server) -> None:
    async def main() -> None:
        async with await whizbang.connect(server.unix_url) as conn:
            assert conn.user == f"uid:{os.getuid()}" and "admin" in conn.roles
            assert await conn.ping(9) == 9
    run(main())


@pytest.fixture(scope="module")
def certs() -> Iterator[str]:
    cli = program("WHIZBANG_CLI", "client/whizbang")
    with tempfile.TemporaryDirectory(prefix="wb-py-certs-") as d:
        for args in (["create-ca", "--out-dir", d],
                     ["create-node", "--ca-dir", d, "--out-dir", d, "--dns", "localhost",
                      "--ip", "127.0.0.1"],
                     ["create-client", "--ca-dir", d, "--out-dir", d, "--user", "carol"]):
            subprocess.run([cli, "certs", *args], check=True, capture_output=True)
        other = os.path.join(d, "other")
        os.mkdir(other)
        subprocess.run([cli, "certs", "create-ca", "--out-dir", other, "--name", "Other CA"],
                       check=True, capture_output=True)
        yield d


@pytest.fixture(scope="module")
def tls_server(certs: str) -> Iterator[Server]:
    s = Server()
    s.start([f"--tls-cert-file={certs}/node.crt", f"--tls-key-file={certs}/node.key",
             f"--tls-ca-file={certs}/ca.crt", "--tls-client-cert=optional"])
    try:
        yield s
    finally:
        s.stop()


def test_tls(tls_server: Server, certs: str) -> None:
    base = f"whizbang://localhost:{tls_server.port}?tlsCaFile={certs}/ca.crt"

    async def main() -> None:
        async with await whizbang.connect(base) as conn:
            ssl_obj = conn._writer.get_extra_info("ssl_object")
            assert ssl_obj.selected_alpn_protocol() == "whizbang/1"
            assert ssl_obj.version() in ("TLSv1.2", "TLSv1.3")
            stats = await conn.stats()
            assert stats.tls
            await conn.put_user("carol", ["reader"])
        # By address: the certificate carries 127.0.0.1 as an IP name.
        ip = f"whizbang://127.0.0.1:{tls_server.port}?tlsCaFile={certs}/ca.crt"
        async with await whizbang.connect(ip) as conn:
            await conn.ping()
        # EXTERNAL: the client certificate names the user.
        ext = (base + f"&tlsCertFile={certs}/client-carol.crt"
               f"&tlsKeyFile={certs}/client-carol.key&authMechanism=EXTERNAL")
        async with await whizbang.connect(ext) as conn:
            assert conn.user == "carol" and conn.roles == ["reader"]
        # A CA that did not sign the server's certificate, a name it lacks.
        with pytest.raises(whizbang.UnauthenticatedError, match="does not verify"):
            await whizbang.connect(
                f"whizbang://localhost:{tls_server.port}?tlsCaFile={certs}/other/ca.crt")
        with pytest.raises(whizbang.UnauthenticatedError, match="does not verify"):
            await whizbang.connect(base + "&tlsServerName=db1.example.com")
        with pytest.raises(ValueError, match="tlsCaFile"):
            await whizbang.connect(f"whizbang://localhost:{tls_server.port}?tls=true")
    run(main())
