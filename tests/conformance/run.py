#!/usr/bin/python3
"""The conformance suite's harness (tests/conformance/README.md).

    run.py NAME COMMAND [ARGS...]

runs one client's runner (COMMAND, e.g. the conformance_c executable, or
/usr/bin/python3 conformance_py.py) against:

- one live whizbangd: 127.0.0.1 port 0, a fresh temporary data directory, the
  anonymous role admin, and the server_args of error_cases.json;
- a fake server for the framing cases (framing_cases.json): one listener per
  case, which answers Hello as whizbangd would and then answers the runner's
  Ping with the case's bytes;

and judges what the runner saw. A runner only drives its client: it reads the
cases from $WB_CONF_DATA (the data files with "{p}" replaced by a prefix of
its own, so that runners could share a server) and prints one JSON object per
case on stdout, {"section", "id", "result"}. The expected results live in the
data files and are checked here, by one judge for every client, so that the
four clients are held to exactly the same expectations.

NAME is c, cli, py or ts (the prefix, and for ts the build of
clients/typescript/dist first). With WB_CONF_LIE=1 (the negative control,
should_fail in meson) a proxy between the runner and the server lies: it adds
1 to every AppendResult.stream_version and every Error.actual_version. The
run must then fail exactly at the steps that check those figures, and only
there; this script exits 1 when it does (the expected failure) and 0, saying
why, when the lie went unnoticed or the run failed for another reason (a
crash is not a catch). Exit 77: a tool is missing (google.protobuf, node).
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "clients", "python"))
try:
    from whizbang._pb import whizbang_pb2 as pb  # noqa: E402
except ImportError as e:  # python3-protobuf missing
    print(f"SKIP: /usr/bin/python3 cannot import the protobuf runtime: {e}", file=sys.stderr)
    sys.exit(77)

DATA_FILES = ("url_cases.json", "error_cases.json", "framing_cases.json", "scenario.json")
RUN_TIMEOUT_S = 120
START_TIMEOUT_S = 20
HOLD_S = 30
LIE = os.environ.get("WB_CONF_LIE") == "1"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- data

def substitute(v: Any, prefix: str) -> Any:
    if isinstance(v, str):
        return v.replace("{p}", prefix)
    if isinstance(v, list):
        return [substitute(x, prefix) for x in v]
    if isinstance(v, dict):
        return {k: substitute(x, prefix) for k, x in v.items()}
    return v


def load_data(prefix: str) -> dict[str, Any]:
    data = {}
    for name in DATA_FILES:
        with open(os.path.join(HERE, name), encoding="utf-8") as f:
            data[name] = substitute(json.load(f), prefix)
    return data


# ---------------------------------------------------------------- the server

def program(env: str, built: str) -> str:
    path = os.environ.get(env) or os.path.join(REPO, "build", built)
    if not os.access(path, os.X_OK):
        raise SystemExit(f"{env} is not set and {path} does not exist: run through meson test")
    return path


class Server:
    """whizbangd on 127.0.0.1 port 0, as clients/python/tests/server.py starts it."""

    def __init__(self, extra: list[str]) -> None:
        self.dir = tempfile.mkdtemp(prefix="wb-conf-")
        port_file = os.path.join(self.dir, "port")
        self.log_file = os.path.join(self.dir, "server.log")
        args = [program("WHIZBANGD", "server/whizbangd"), "--listen", "127.0.0.1:0",
                "--data-dir", os.path.join(self.dir, "data"), "--port-file", port_file,
                "--metrics-listen", "off", "--anonymous-role=admin", *extra]
        with open(self.log_file, "ab") as logf:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf)
        deadline = time.monotonic() + START_TIMEOUT_S
        self.port = 0
        while self.port == 0:
            try:
                with open(port_file) as f:
                    text = f.read().strip()
                if text.isdigit():
                    self.port = int(text)
                    break
            except FileNotFoundError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit("whizbangd did not start:\n" + self.tail())
            time.sleep(0.01)

    def tail(self) -> str:
        try:
            with open(self.log_file, errors="replace") as f:
                return "".join(f.readlines()[-20:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        keep = os.environ.get("WB_KEEP_SERVER_LOGS")
        if keep and os.path.isdir(keep) and os.path.exists(self.log_file):
            shutil.copy(self.log_file, os.path.join(keep, f"conf-{os.getpid()}.log"))
        shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------- frames

def varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def unknown_field(number: int, payload: bytes) -> bytes:
    """A length-delimited field a decoder of this protocol does not know."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def padded(payload: bytes, size: int) -> bytes:
    """payload and an unknown field that make it exactly size bytes."""
    key = varint(1000 << 3 | 2)
    for width in range(1, 6):
        n = size - len(payload) - len(key) - width
        if n >= 0 and len(varint(n)) == width:
            return payload + key + varint(n) + bytes(n)
    raise ValueError(f"cannot pad {len(payload)} bytes to {size}")


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    (n,) = struct.unpack(">I", await reader.readexactly(4))
    return await reader.readexactly(n)


def hello_answer(rid: int) -> bytes:
    body = pb.Response(id=rid, hello=pb.HelloResult(
        protocol_version=1, server_version="conformance-fake", max_frame=4194304,
        max_read_count=1000, max_append_events=10000, max_event_size=4194304 - 1024,
        roles=["admin"])).SerializeToString()
    return struct.pack(">I", len(body)) + body


def case_bytes(case: dict[str, Any], rid: int, nonce: int, client_max: int) -> bytes:
    """The bytes a framing case answers a Ping with (framing_cases.json)."""
    kind = case["payload"]
    if kind == "pong":
        payload = pb.Response(id=rid, pong=pb.Pong(nonce=nonce)).SerializeToString()
    elif kind == "pong+unknown":
        payload = (pb.Response(id=rid, pong=pb.Pong(nonce=nonce)).SerializeToString()
                   + unknown_field(999, b"a field of a newer protocol"))
    elif kind == "empty":
        payload = b""
    elif kind.startswith("hex:"):
        payload = bytes.fromhex(kind[4:])
    elif kind.startswith("error:"):
        err = pb.Error(message="an error code of a newer protocol")
        err.code = int(kind[6:])  # proto3 enums are open: any number goes
        payload = pb.Response(id=rid, error=err).SerializeToString()
    else:
        raise ValueError(f"framing case {case['id']}: unknown payload {kind!r}")

    def size(v: Any) -> int:
        if v == "max":
            return client_max
        if v == "max+1":
            return client_max + 1
        return int(v)

    if "pad_to" in case:
        payload = padded(payload, size(case["pad_to"]))
    header = struct.pack(">I", size(case.get("length", len(payload))))
    body = case.get("body", "full")
    if body == "full":
        return header + payload
    if body == "none":
        return header
    if body.startswith("cut:"):
        return header + payload[:len(payload) - int(body[4:])]
    if body.startswith("header:"):
        return header[:int(body[7:])]
    raise ValueError(f"framing case {case['id']}: unknown body {body!r}")


class Background:
    """An asyncio loop on a thread: the fake server and the lying proxy."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.servers: list[asyncio.base_events.Server] = []
        self.errors: list[str] = []

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    async def _listen(self, handler: Any) -> int:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        self.servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    def fake(self, case: dict[str, Any], client_max: int) -> int:
        """A listener that plays one framing case; returns its port."""
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                req = pb.Request.FromString(await asyncio.wait_for(read_frame(reader), 10))
                if req.WhichOneof("body") != "hello":
                    raise RuntimeError(f"the first request is {req.WhichOneof('body')}, not hello")
                writer.write(hello_answer(req.id))
                req = pb.Request.FromString(await asyncio.wait_for(read_frame(reader), 10))
                if req.WhichOneof("body") != "ping":
                    raise RuntimeError(f"the second request is {req.WhichOneof('body')}, not ping")
                data = case_bytes(case, req.id, req.ping.nonce, client_max)
                writer.write(data)
                await writer.drain()
                if case.get("then", "hold") == "hold":
                    # Until the client hangs up (or HOLD_S): a client that
                    # waits for more than was sent can only time out.
                    try:
                        await asyncio.wait_for(reader.read(), HOLD_S)
                    except asyncio.TimeoutError:
                        pass
            except (asyncio.IncompleteReadError, ConnectionError):
                pass  # the client went away: the runner says what it saw
            except Exception as e:  # noqa: BLE001 - reported at the end
                self.errors.append(f"framing case {case['id']}: {e!r}")
            finally:
                writer.close()
        return self.run(self._listen(handle))

    def liar(self, upstream: int) -> int:
        """A proxy to 127.0.0.1:upstream that adds 1 to every
        AppendResult.stream_version and Error.actual_version it forwards."""
        async def pump_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while data := await reader.read(1 << 16):
                    writer.write(data)
                    await writer.drain()
            except ConnectionError:
                pass
            finally:
                writer.close()

        async def pump_down(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while True:
                    resp = pb.Response.FromString(await read_frame(reader))
                    if resp.WhichOneof("body") == "append_events":
                        resp.append_events.stream_version += 1
                    if resp.HasField("error") and resp.error.code == pb.WRONG_EXPECTED_VERSION:
                        resp.error.actual_version += 1
                    body = resp.SerializeToString()
                    writer.write(struct.pack(">I", len(body)) + body)
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream)
            await asyncio.gather(pump_up(reader, up_writer), pump_down(up_reader, writer))
        return self.run(self._listen(handle))

    def stop(self) -> None:
        async def close() -> None:
            for s in self.servers:
                s.close()
            for t in asyncio.all_tasks():
                if t is not asyncio.current_task():
                    t.cancel()
        try:
            self.run(close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)


# ---------------------------------------------------------------- the judge

URL_DEFAULTS = {"user": "", "address": "", "unix": False, "tls": False, "tls_ca_file": "",
                "tls_cert_file": "", "tls_key_file": "", "tls_server_name": "",
                "external": False}


class Judge:
    def __init__(self, results: dict[tuple[str, str], Any]) -> None:
        self.results = results
        self.passed: list[str] = []
        self.failed: dict[str, str] = {}
        self.skipped: list[str] = []

    def result(self, section: str, ident: str) -> Any:
        return self.results.get((section, ident))

    def ref(self, path: str) -> Any:
        step, _, key = path.partition(".")
        for section in ("scenario", "errors"):
            r = self.result(section, step)
            if isinstance(r, dict):
                v: Any = r
                for part in key.split("."):
                    if isinstance(v, list) and part.isdigit() and int(part) < len(v):
                        v = v[int(part)]
                    else:
                        v = v.get(part) if isinstance(v, dict) else None
                return v
        return None

    def resolve(self, v: Any) -> Any:
        if isinstance(v, dict) and set(v) == {"$ref"}:
            return self.ref(v["$ref"])
        return v

    @staticmethod
    def same(a: Any, b: Any) -> bool:
        if isinstance(a, bool) or isinstance(b, bool):
            return type(a) is type(b) and a == b
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            return a == b
        return type(a) is type(b) and a == b

    def match(self, want: Any, got: Any, where: str, skips: list[str],
              unobservable: dict[str, str]) -> Optional[str]:
        """Why got does not match want (None when it does)."""
        want = self.resolve(want)
        if isinstance(want, dict) and len(want) == 1 and next(iter(want)).startswith("$"):
            op, arg = next(iter(want.items()))
            arg = self.resolve(arg)
            if op == "$contains":
                ok = isinstance(got, str) and arg in got
            elif op == "$ge":
                ok = isinstance(got, (int, float)) and not isinstance(got, bool) and got >= arg
            elif op == "$ascending":
                ok = (isinstance(got, list) and len(got) > 0
                      and all(x < y for x, y in zip(got, got[1:])) == arg)
            else:
                return f"{where}: unknown matcher {op}"
            return None if ok else f"{where}: {got!r} does not satisfy {op} {arg!r}"
        if isinstance(want, dict):
            if not isinstance(got, dict):
                return f"{where}: {got!r} is not an object"
            for k, w in want.items():
                if k in unobservable:
                    skips.append(f"{where}.{k} ({unobservable[k]})")
                    continue
                if k not in got:
                    return f"{where}.{k}: missing (expected {w!r})"
                why = self.match(w, got[k], f"{where}.{k}", skips, {})
                if why:
                    return why
            return None
        if isinstance(want, list):
            if not isinstance(got, list) or len(got) != len(want):
                return f"{where}: {got!r}, expected {want!r}"
            for i, (w, g) in enumerate(zip(want, got)):
                why = self.match(w, g, f"{where}[{i}]", skips, {})
                if why:
                    return why
            return None
        if not self.same(want, got):
            return f"{where}: {got!r}, expected {want!r}"
        return None

    def check(self, section: str, ident: str, want: Any, exact_keys: bool = False) -> None:
        name = f"{section}/{ident}"
        got = self.result(section, ident)
        if got is None:
            self.failed[name] = "the runner reported nothing"
            return
        if isinstance(got, dict) and "crash" in got:
            self.failed[name] = f"the client failed outside its error reporting: {got['crash']}"
            return
        if isinstance(got, dict) and isinstance(got.get("unobservable_case"), str):
            self.skipped.append(f"{name} ({got['unobservable_case']})")
            return
        unobservable = got.get("unobservable", {}) if isinstance(got, dict) else {}
        skips: list[str] = []
        if isinstance(want, dict) and isinstance(got, dict) and "error" not in want and "error" in got:
            why: Optional[str] = f"an error where success was expected: {got['error']}"
        elif isinstance(want, dict) and isinstance(got, dict) and "error" in want and "error" not in got:
            why = f"success ({got}) where an error was expected"
        else:
            why = self.match(want, got, name, skips, unobservable)
            if (why is None and exact_keys and isinstance(want, dict)
                    and isinstance(got, dict)):
                extra = set(got) - set(want) - {"unobservable"}
                if extra:
                    why = f"{name}: unexpected {sorted(extra)} in {got}"
        if why is None and isinstance(want, dict) and isinstance(want.get("error"), dict):
            # An error expectation that names no actual_version means the
            # client must not report one.
            e = got.get("error", {})
            if "actual_version" not in want["error"] and isinstance(e, dict) and \
                    e.get("actual_version") is not None:
                why = f"{name}.error.actual_version: {e['actual_version']}, expected none"
        if why:
            self.failed[name] = why
        else:
            self.passed.append(name)
        self.skipped.extend(skips)


def judge(data: dict[str, Any], results: dict[tuple[str, str], Any]) -> Judge:
    j = Judge(results)
    for case in data["url_cases.json"]["cases"]:
        if "refused" in case:
            want: Any = {"refused": {"$contains": case["refused"]}}
        else:
            want = {"ok": {**URL_DEFAULTS, **case["expect"]}}
        j.check("url", case["url"], want, exact_keys=True)
    codes = data["error_cases.json"]["codes"]
    j.check("codes", "names", {str(c["code"]): c["name"] for c in codes})
    j.check("codes", "typed", {str(c["code"]): c["python_class"] for c in codes
                               if "python_class" in c})
    for case in data["framing_cases.json"]["cases"]:
        j.check("framing", case["id"], {"outcome": case["expect"]})
    for section, name in (("scenario", "scenario.json"), ("errors", "error_cases.json")):
        for step in data[name]["steps"]:
            j.check(section, step["id"], step.get("expect", {}))
    return j


# ---------------------------------------------------------------- the data's own checks

def doc_url_rows() -> list[dict[str, Any]]:
    """The case table of docs/PROTOCOL.md, "Connection URLs", as url_cases.json writes cases."""
    with open(os.path.join(REPO, "docs", "PROTOCOL.md"), encoding="utf-8") as f:
        doc = f.read()
    start = doc.index("\n### Connection URLs\n")
    end = doc.index("\n#", start + 1)

    def cell(s: str) -> str:
        s = s.strip()
        return s[1:-1] if len(s) >= 2 and s[0] == s[-1] == "`" else s

    rows = []
    for line in doc[start:end].splitlines():
        if not line.startswith("| `"):
            continue
        cells = line.split("|")
        url, user, tls, last = cell(cells[1]), cell(cells[2]), cell(cells[3]), cell(cells[4])
        if last.startswith("refused: "):
            rows.append({"url": url, "refused": last[len("refused: "):]})
            continue
        expect: dict[str, Any] = {"address": last}
        if user:
            expect["user"] = user
        if last.startswith("unix:"):
            expect["unix"] = True
        keys = {"ca": "tls_ca_file", "cert": "tls_cert_file", "key": "tls_key_file",
                "name": "tls_server_name"}
        # "tls ca=/tmp/my certs/ca.crt name=db1": a value may hold spaces.
        for word in re.split(r" (?=(?:ca|cert|key|name)=|external$)", tls) if tls else []:
            if word == "tls":
                expect["tls"] = True
            elif word == "external":
                expect["external"] = True
            else:
                k, _, v = word.partition("=")
                expect[keys[k]] = v
        rows.append({"url": url, "expect": expect})
    return rows


def check_data(data: dict[str, Any]) -> list[str]:
    """The data files against their sources: every row of docs/PROTOCOL.md's
    URL table is a case of url_cases.json with the same answer, and the code
    table is the proto's ErrorCode enum and docs/PROTOCOL.md §5's table."""
    problems = []
    cases = {c["url"]: c for c in data["url_cases.json"]["cases"]}
    rows = doc_url_rows()
    if len(rows) < 50:
        problems.append(f"docs/PROTOCOL.md's URL table has {len(rows)} rows: not read right")
    for row in rows:
        case = cases.get(row["url"])
        if case is None:
            problems.append(f"url_cases.json lacks the documented case {row['url']}")
        elif case != row:
            problems.append(f"url_cases.json says {case} where docs/PROTOCOL.md says {row}")
    codes = {c["code"]: c["name"] for c in data["error_cases.json"]["codes"]}
    proto = {v.number: v.name for v in pb.ErrorCode.DESCRIPTOR.values}
    if codes != proto:
        problems.append(f"error_cases.json's codes {codes} are not the proto's {proto}")
    with open(os.path.join(REPO, "docs", "PROTOCOL.md"), encoding="utf-8") as f:
        doc = f.read()
    sec = doc[doc.index("\n## 5. Error codes"):doc.index("\n## 6.")]
    documented = {int(m.group(1)): m.group(2)
                  for m in re.finditer(r"^\| (\d+) \| `([A-Z_]+)` \|", sec, re.M)}
    if documented != codes:
        problems.append(f"docs/PROTOCOL.md §5 lists {documented}, error_cases.json {codes}")
    return problems


# ---------------------------------------------------------------- main

def build_ts() -> None:
    """clients/typescript's pinned dependencies and dist/, as its run-tests.sh
    makes them (meson runs this test alone, so it never races that one)."""
    ts = os.path.join(REPO, "clients", "typescript")
    if shutil.which("node") is None or shutil.which("npm") is None:
        log("SKIP: node or npm is missing")
        sys.exit(77)
    lock = os.path.join(ts, "package-lock.json")
    installed = os.path.join(ts, "node_modules", ".package-lock.json")
    if not os.path.exists(installed) or os.path.getmtime(lock) > os.path.getmtime(installed):
        if subprocess.run(["npm", "ci", "--offline", "--no-audit", "--no-fund"], cwd=ts,
                          stdout=sys.stderr).returncode != 0:
            subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=ts,
                           stdout=sys.stderr, check=True)
    subprocess.run(["npm", "run", "--silent", "build"], cwd=ts, stdout=sys.stderr, check=True)


def main() -> int:
    if len(sys.argv) < 3 or sys.argv[1] not in ("c", "cli", "py", "ts"):
        log(__doc__ or "")
        return 2
    name, command = sys.argv[1], sys.argv[2:]
    if name == "ts":
        build_ts()
    prefix = f"{name}_{secrets.token_hex(3)}"
    data = load_data(prefix)
    problems = check_data(data)
    workdir = tempfile.mkdtemp(prefix="wb-conf-data-")
    for fname, content in data.items():
        with open(os.path.join(workdir, fname), "w", encoding="utf-8") as f:
            json.dump(content, f)
    server = Server(data["error_cases.json"].get("server_args", []))
    bg = Background()
    try:
        client_max = int(data["framing_cases.json"]["client_max_frame"])
        framing = {c["id"]: f"whizbang://127.0.0.1:{bg.fake(c, client_max)}"
                   for c in data["framing_cases.json"]["cases"]}
        port = bg.liar(server.port) if LIE else server.port
        env = dict(os.environ, WB_CONF_URL=f"whizbang://127.0.0.1:{port}",
                   WB_CONF_DATA=workdir, WB_CONF_PREFIX=prefix,
                   WB_CONF_FRAMING=json.dumps(framing),
                   PYTHONPATH=os.path.join(REPO, "clients", "python"),
                   PYTHONDONTWRITEBYTECODE="1")
        log(f"conformance: runner {name} ({' '.join(command)}) against whizbangd on port "
            f"{server.port}{' through the lying proxy' if LIE else ''}, prefix {prefix}")
        t0 = time.monotonic()
        try:
            proc = subprocess.run(command, env=env, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                  timeout=RUN_TIMEOUT_S)
            rc, out = proc.returncode, proc.stdout
        except subprocess.TimeoutExpired as e:
            rc, out = -999, e.stdout or b""
            log(f"the runner did not finish within {RUN_TIMEOUT_S} s")
        elapsed = time.monotonic() - t0
    finally:
        bg.stop()
        server_log = server.tail()
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    results: dict[tuple[str, str], Any] = {}
    bad_lines = []
    for line in out.decode("utf-8", "replace").splitlines():
        try:
            obj = json.loads(line)
            results[(obj["section"], str(obj["id"]))] = obj["result"]
        except (ValueError, KeyError, TypeError):
            bad_lines.append(line)
    j = judge(data, results)
    for line in bad_lines:
        log(f"NOT A RESULT: {line[:300]}")
    for s in j.skipped:
        log(f"SKIP {s}")
    for k, why in j.failed.items():
        log(f"FAIL {k}: {why}")
    for p in problems:
        log(f"DATA {p}")
    for e in bg.errors:
        log(f"FAKE {e}")
    log(f"conformance {name}: {len(j.passed)} passed, {len(j.failed)} failed, "
        f"{len(j.skipped)} checks not observable; runner exit {rc}; {elapsed:.1f} s")
    if rc != 0 and j.failed:
        log("server log tail:\n" + server_log)
    ok = rc == 0 and not j.failed and not problems and not bad_lines and not bg.errors
    if not LIE:
        return 0 if ok else 1
    # The negative control: the lie must be caught exactly where the figures
    # it changes are checked, by a runner that otherwise ran through.
    lied = set()
    for section, fname in (("scenario", "scenario.json"), ("errors", "error_cases.json")):
        for step in data[fname]["steps"]:
            e = step.get("expect", {})
            if "stream_version" in e or (isinstance(e.get("error"), dict)
                                         and "actual_version" in e["error"]):
                lied.add(f"{section}/{step['id']}")
    caught = set(j.failed)
    if rc == 0 and lied and caught == lied and not problems and not bad_lines:
        log(f"negative control: the lie was caught at all {len(lied)} steps it touches, "
            "and nowhere else")
        return 1
    log(f"negative control NOT satisfied: runner exit {rc}; lie touches {sorted(lied)}; "
        f"failures at {sorted(caught)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
