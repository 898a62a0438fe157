"""What the Python and CLI runners share: the data run.py prepared, and the
one-line-per-case output run.py judges (tests/conformance/README.md)."""
from __future__ import annotations

import json
import os
import sys
from typing import Any


def data(name: str) -> Any:
    """One of the data files, as run.py wrote it for this runner ({p} replaced)."""
    with open(os.path.join(os.environ["WB_CONF_DATA"], name), encoding="utf-8") as f:
        return json.load(f)


def framing_urls() -> dict[str, str]:
    """Framing case id -> the URL of the fake server that plays it."""
    return json.loads(os.environ["WB_CONF_FRAMING"])


def emit(section: str, ident: str, result: Any) -> None:
    print(json.dumps({"section": section, "id": ident, "result": result}), flush=True)


def note(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def step_ids(spec: dict[str, Any], results: dict[str, Any]) -> tuple[str, list[int]]:
    """The step and indexes an "events" argument names."""
    return spec["step"], list(spec["indexes"])


def ref(results: dict[str, Any], v: Any) -> Any:
    """A {"$ref": "STEP.FIELD"} argument, resolved against earlier results."""
    if isinstance(v, dict) and "$ref" in v:
        step, _, key = v["$ref"].partition(".")
        return results[step][key]
    return v
