"""What this client holds of the contract, checked against the contract:
the request → answer table against docs/PROTOCOL.md §2 and the proto, the
error codes against the proto's enum, and the generated code against what
protoc makes of proto/whizbang.proto today."""
from __future__ import annotations

import filecmp
import os
import re
import shutil
import subprocess
import tempfile

import pytest

from whizbang import errors
from whizbang._pb import whizbang_pb2 as pb
from whizbang.aio import ANSWERS

REPO = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
PB_DIR = os.path.join(REPO, "clients", "python", "whizbang", "_pb")


def doc_answers() -> dict[str, str]:
    """The §2 table "Request body | Response body | pushes after it"."""
    with open(os.path.join(REPO, "docs", "PROTOCOL.md"), encoding="utf-8") as f:
        doc = f.read()
    start = doc.index("| `Request` body | `Response` body |")
    end = doc.index("\n\n", start)
    table: dict[str, str] = {}
    for line in doc[start:end].splitlines()[2:]:
        cells = line.split("|")
        requests = re.findall(r"`([a-z_]+)`", cells[1])
        answer_cell = re.sub(r"\([^)]*\)", "", cells[2])
        if answer_cell.strip().startswith("the same name"):
            answers = requests
        else:
            answers = re.findall(r"`([a-z_]+)`", answer_cell)
            if len(answers) == 1:
                answers = answers * len(requests)
        assert len(answers) == len(requests), line
        table.update(zip(requests, answers))
    return table


def test_answers_are_the_documents_table() -> None:
    assert ANSWERS == doc_answers()


def test_answers_cover_every_request_and_name_response_fields() -> None:
    requests = {f.name for f in pb.Request.DESCRIPTOR.oneofs_by_name["body"].fields}
    responses = {f.name for f in pb.Response.DESCRIPTOR.oneofs_by_name["body"].fields}
    assert set(ANSWERS) == requests
    assert set(ANSWERS.values()) <= responses


def test_error_codes_are_the_protos() -> None:
    assert {c.name: c.value for c in errors.ErrorCode} == dict(pb.ErrorCode.items())
    for code in errors.ErrorCode:
        if code != errors.ErrorCode.OK:
            assert errors.error_class(code).code == code
    assert errors.error_class(1000) is errors.InternalError


def test_generated_code_is_current() -> None:
    """Fails when proto/whizbang.proto changed without regenerating
    whizbang/_pb with generate.sh."""
    if shutil.which("protoc") is None:
        pytest.fail("protoc is missing: apt-get install protobuf-compiler "
                    "(deploy/install-deps.sh --test installs it)")
    with tempfile.TemporaryDirectory() as out:
        subprocess.run(["sh", os.path.join(REPO, "clients", "python", "generate.sh"), out],
                       check=True)
        for name in ("whizbang_pb2.py", "whizbang_pb2.pyi"):
            assert filecmp.cmp(os.path.join(out, name), os.path.join(PB_DIR, name),
                               shallow=False), (
                f"whizbang/_pb/{name} differs from what protoc makes of proto/whizbang.proto: "
                "run clients/python/generate.sh")


@pytest.mark.parametrize("rid", [1, 127, 128, 300, 2**32 + 5, 2**64 - 1])
def test_requests_encode_as_the_runtime_does(rid: int) -> None:
    """encode_request() writes the envelope by hand; every body field, with
    a body empty and one not, must give the runtime's bytes."""
    from whizbang.aio import encode_request
    for f in pb.Request.DESCRIPTOR.oneofs_by_name["body"].fields:
        empty = f.message_type._concrete_class()
        for msg in (empty, pb.Ping(nonce=rid)) if f.name == "ping" else (empty,):
            want = pb.Request(id=rid, **{f.name: msg}).SerializeToString()
            assert encode_request(rid, f.name, msg) == want, f.name
    big = pb.AppendEvents(stream="s", events=[pb.NewEvent(type="T", data=b"x" * 300)])
    assert encode_request(rid, "append_events", big) == pb.Request(
        id=rid, append_events=big).SerializeToString()
