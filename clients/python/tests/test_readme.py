"""The README's examples run as written, against a real whizbangd."""
from __future__ import annotations

import os
import re
import subprocess
import sys

from server import Server

PKG = os.path.normpath(os.path.join(os.path.dirname(__file__), ".."))


def test_readme_examples(server: Server) -> None:
    with open(os.path.join(PKG, "README.md"), encoding="utf-8") as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
    assert len(blocks) == 4
    outputs = []
    for code in blocks:
        code = code.replace("whizbang://127.0.0.1:7411", server.url)
        done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": PKG},
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout.splitlines())
    assert outputs[0][0] == "order-1 is at version 0"
    assert outputs[0][1] == "0 OrderPlaced b'{\"total\": 120}'"
    assert outputs[0][2].endswith(" order-1 OrderPlaced")
    assert outputs[1] == ["['OrderPlaced']"]
    # Reconnection: the first URL answers; the same event again is a replay.
    assert outputs[2][0].startswith("stored at ") and outputs[2][0].endswith(" replay: False")
    assert outputs[2][1] == "replay: True"
    # Consumer groups: one mailed and acked, one parked with its reason.
    assert outputs[3] == ["mail to ann@example.com delivery 1", "['bad address']"]
