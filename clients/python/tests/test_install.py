"""The package installs as the README says (a venv that sees Debian's
protobuf, pip without an index) and the installed copy, not this source
tree, talks to whizbangd."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

from server import Server

PKG = os.path.normpath(os.path.join(os.path.dirname(__file__), ".."))

CHECK = """
import asyncio, os, sys, whizbang
assert whizbang.__file__.startswith(sys.prefix), whizbang.__file__
assert os.path.exists(os.path.join(os.path.dirname(whizbang.pb.__file__), "whizbang_pb2.pyi"))
async def main():
    async with await whizbang.connect(sys.argv[1]) as conn:
        r = await conn.append("installed", [whizbang.Event("Installed")])
        print(await conn.ping(41) + 1, r.stream_version)
asyncio.run(main())
"""


def test_pip_install_into_a_venv(server: Server) -> None:
    with tempfile.TemporaryDirectory(prefix="wb-py-venv-") as d:
        # A copy: setuptools builds in the tree it is given.
        src = os.path.join(d, "src")
        shutil.copytree(PKG, src, ignore=shutil.ignore_patterns("tests", "__pycache__", "build",
                                                                "*.egg-info"))
        venv = os.path.join(d, "venv")
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", venv], check=True)
        py = os.path.join(venv, "bin", "python")
        subprocess.run([py, "-m", "pip", "install", "-q", "--no-index", "--no-build-isolation",
                        src], check=True, cwd=d)
        out = subprocess.run([py, "-c", CHECK, server.url], check=True, cwd=d,
                             capture_output=True, text=True).stdout
        assert out.split() == ["42", "0"]
