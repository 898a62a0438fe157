"""The conformance runner of the `whizbang` CLI ($WHIZBANG_CLI): one CLI
command per step (with --json), its output read back and printed, one JSON
line per case, for run.py to judge (tests/conformance/README.md). It checks
nothing itself.

What the CLI cannot show is reported as not observable, with the reason:
how it parses a URL it accepts (it connects rather than print it; the
refusals are checked), text without "://" (read as HOST:PORT, never as a
URL), the code table (it names the codes it meets), and of Hello only the
user and roles (`whoami`)."""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from typing import Any, Optional

from runner_common import data, emit, framing_urls, note, ref

CLI = os.environ.get("WHIZBANG_CLI") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build", "client", "whizbang")
URL = os.environ["WB_CONF_URL"]
CODES = {c["name"]: c["code"] for c in data("error_cases.json")["codes"]}
BASE_ENV = {k: v for k, v in os.environ.items() if not k.startswith("WHIZBANG_")}


class CliError(Exception):
    """A command that failed other than with a server error."""


def cli(args: list[str], *, server: str = URL, env: Optional[dict[str, str]] = None,
        timeout_ms: Optional[int] = 20000, limit_s: float = 30) -> tuple[int, list[Any], str]:
    """Runs whizbang with args; returns its exit status, the JSON objects it
    printed and its standard error."""
    cmd = [CLI, "--server", server, "--json"]
    if timeout_ms is not None:
        cmd += ["--timeout-ms", str(timeout_ms)]
    p = subprocess.run(cmd + args, env={**BASE_ENV, **(env or {})}, stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=limit_s)
    out = []
    for line in p.stdout.decode("utf-8", "replace").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            raise CliError(f"whizbang {' '.join(args)} printed {line!r}, which is not JSON")
    return p.returncode, out, p.stderr.decode("utf-8", "replace")


class Failed(Exception):
    def __init__(self, result: dict[str, Any]) -> None:
        super().__init__(str(result))
        self.result = result


def run_ok(args: list[str], **kw: Any) -> list[Any]:
    """Runs a command; a server error becomes Failed(the error result)."""
    rc, out, err = cli(args, **kw)
    if rc < 0:
        raise CliError(f"whizbang {' '.join(args)} died of signal {-rc}: {err}")
    errors = [o for o in out if isinstance(o, dict) and "error" in o]
    if rc != 0 or errors:
        if not errors:
            raise CliError(f"whizbang {' '.join(args)} exited {rc}: {err.strip()}")
        e = errors[-1]
        if e["error"] not in CODES:
            raise CliError(f"whizbang {' '.join(args)}: {e['error']}: {e.get('message')}")
        r: dict[str, Any] = {"code": CODES[e["error"]], "name": e["error"],
                             "message": e.get("message", "")}
        if "actual_version" in e:
            r["actual_version"] = e["actual_version"]
        raise Failed({"error": r})
    return out


def url_cases() -> None:
    for case in data("url_cases.json")["cases"]:
        url = case["url"]
        if "://" not in url:
            emit("url", url, {"unobservable_case": "the CLI reads text without :// as HOST:PORT"})
            continue
        if "refused" not in case:
            emit("url", url, {"unobservable_case": "the CLI connects to a URL it accepts; it "
                                                   "prints no parse of it"})
            continue
        rc, out, err = cli(["ping"], server=url, timeout_ms=2000, limit_s=15)
        errors = [o for o in out if isinstance(o, dict) and "error" in o]
        if rc < 0:
            emit("url", url, {"crash": f"signal {-rc}: {err}"})
        elif rc != 0 and errors and errors[0]["message"].startswith("the server's URL: "):
            emit("url", url, {"refused": errors[0]["message"][len("the server's URL: "):]})
        else:
            emit("url", url, {"accepted": f"exit {rc}: {out} {err.strip()}"})


def framing() -> None:
    urls = framing_urls()
    for case in data("framing_cases.json")["cases"]:
        rc, out, err = cli(["ping"], server=urls[case["id"]], timeout_ms=5000)
        errors = [o for o in out if isinstance(o, dict) and "error" in o]
        if rc == 0 and not errors:
            result = {"outcome": "ok"}
        elif rc < 0:
            result = {"outcome": "crash", "detail": f"signal {-rc}: {err}"}
        elif errors and errors[0]["error"] == "E_TIMEOUT":
            result = {"outcome": "timeout", "detail": errors[0]["message"]}
        elif errors:
            result = {"outcome": "error", "detail": f"{errors[0]['error']}: {errors[0]['message']}"}
        else:
            result = {"outcome": "crash", "detail": f"exit {rc} without an error: {err}"}
        emit("framing", case["id"], result)


def events_result(lines: list[Any], deliveries: bool = False) -> dict[str, Any]:
    evs = [o for o in lines if "version" in o and "type" in o]
    r = {"versions": [e["version"] for e in evs], "positions": [e["position"] for e in evs],
         "types": [e["type"] for e in evs], "streams": [e["stream"] for e in evs],
         "data": [e["data"] for e in evs], "_ids": [e["id"] for e in evs]}
    if deliveries:
        r["deliveries"] = [e["delivery"] for e in evs]
    return r


class Steps:
    def __init__(self) -> None:
        self.results: dict[str, Any] = {}
        self.leases: dict[str, tuple[int, int]] = {}
        self.tokens: dict[str, str] = {}

    def lease_of(self, step: dict[str, Any]) -> tuple[int, str]:
        if "lease" in step:
            seq, token = self.leases[step["lease"]]
            token += step.get("token_delta", 0)
        else:
            seq, token = int(step["sequence"]), int(step["token"])
        return seq, f"{token % (1 << 64):016x}"

    def ids_of(self, spec: dict[str, Any]) -> list[str]:
        ids = self.results[spec["step"]]["_ids"]
        return [ids[i] for i in spec["indexes"]]

    def run(self, step: dict[str, Any]) -> dict[str, Any]:
        op = step["op"]
        env = {"WHIZBANG_TOKEN": self.tokens[step["as"]]} if "as" in step else None
        if op == "hello":
            [who] = run_ok(["whoami"], env=env)
            unobservable = {k: "whoami prints the user and roles, not the rest of HelloResult"
                            for k in ("protocol_version", "max_frame", "max_read_count",
                                      "max_append_events", "max_event_size")}
            return {"user": who["user"], "roles": who["roles"], "unobservable": unobservable}
        if op == "append":
            exp = step["expected"]
            args = ["append", step["stream"], "--expected-version",
                    str(exp) if isinstance(exp, int) else {"any": "any", "no_stream": "no-stream",
                                                           "exists": "exists"}[exp]]
            for ev in step["events"]:
                args += ["--type", ev["type"], "--data", ev["data"]]
            [r] = run_ok(args, env=env)
            return {"stream_version": r["version"], "first_position": r["first_position"],
                    "last_position": r["position"]}
        if op == "read_stream":
            args = ["read", step["stream"]] + (["--backwards"] if step.get("backward") else [])
            return events_result(run_ok(args, env=env))
        if op == "read_all":
            return events_result(run_ok(["read-all", "--stream-prefix", step["stream_prefix"]],
                                        env=env))
        if op == "subscribe_stream":
            return self.subscribe(step)
        if op == "consumer_create":
            [r] = run_ok(["consumer", "create", step["name"], "--all", "--stream-prefix",
                          step["stream_prefix"], "--from", "start"]
                         + (["--ack-timeout", f"{step['ack_timeout_ms']}ms"]
                            if "ack_timeout_ms" in step else []), env=env)
            return {"name": r["name"], "checkpoint": r["checkpoint"]}
        if op == "consumer_read":
            # A member that leaves hands its unsettled events back at once;
            # the acks and nacks that follow settle them by id.
            return events_result(run_ok(["consumer", "read", step["name"], "--count",
                                         str(step["count"]), "--wait-ms", "10000"], env=env),
                                 deliveries=True)
        if op == "consumer_ack":
            [r] = run_ok(["consumer", "ack", step["name"], *self.ids_of(step["events"])], env=env)
            return {"checkpoint": r["checkpoint"]}
        if op == "consumer_nack":
            [r] = run_ok(["consumer", "nack", step["name"], *self.ids_of(step["events"]),
                          "--action", step["action"]]
                         + (["--reason", step["reason"]] if "reason" in step else []), env=env)
            return {"checkpoint": r["checkpoint"]}
        if op == "consumer_list":
            for r in run_ok(["consumer", "list"], env=env):
                if r.get("name") == step["name"]:
                    return {k: r[k] for k in ("checkpoint", "parked", "in_flight", "members",
                                              "delivered", "acked")}
            return {"missing": step["name"]}
        if op == "lease":
            args = ["lease", "--projection", step["projection"]]
            if "duration_ms" in step:
                args += ["--duration-ms", str(step["duration_ms"])]
            [r] = run_ok(args, env=env)
            self.leases[step["id"]] = (r["sequence"], int(r["token"], 16))
            return {"sequence": r["sequence"]}
        if op in ("stage", "commit", "release"):
            seq, token = self.lease_of(step)
            args = [op, str(seq), "--token", token]
            for text in step.get("ops", []):
                args += ["--op", text]
            if op == "commit":
                args += ["--ack", step.get("ack", "durable")]
            [r] = run_ok(args, env=env)
            if op != "commit":
                return {}
            out = {"sequence": r["sequence"]}
            if step.get("ack") == "applied":
                out["apply_error"] = CODES[r["apply_error"]]
            return out
        if op == "wait_watermark":
            seq = ref(self.results, step["sequence"])
            rc, out, err = cli(["watermark", "--wait", str(seq), "--timeout-ms",
                                str(step["timeout_ms"])], env=env, timeout_ms=None)
            if rc not in (0, 1) or not out:
                raise CliError(f"watermark --wait exited {rc}: {err}")
            return {"reached": out[-1]["reached"], "watermark": out[-1]["watermark"]}
        if op == "query":
            lines = run_ok(["query", step["type"], step["where"], "--all"], env=env)
            found = [o for o in lines if "fields" in o]
            return {"ids": [o["id"] for o in found], "fields": [o["fields"] for o in found]}
        if op == "get_entity":
            [e] = run_ok(["get", step["type"], step["id"]], env=env)
            return {k: e[k] for k in ("id", "type", "version", "fields", "created_sequence",
                                      "updated_sequence")}
        if op == "delete_stream":
            out = run_ok(["delete", step["stream"]] + (["--hard"] if step.get("hard") else []),
                         env=env)
            return {"last_version": out[-1]["last_version"]}
        if op == "create_token":
            [r] = run_ok(["token", "create", "--role", step["role"]], env=env)
            self.tokens[step["id"]] = r["token"]
            return {}
        if op == "sleep":
            time.sleep(step["ms"] / 1000)
            return {}
        raise ValueError(f"unknown operation {op!r}")

    def subscribe(self, step: dict[str, Any]) -> dict[str, Any]:
        """`whizbang subscribe` in the background: read to the caught-up line,
        append the live event, read it, then Ctrl-C (which unsubscribes)."""
        p = subprocess.Popen([CLI, "--server", URL, "--json", "subscribe", "--stream",
                              step["stream"], "--from", "start"], env=BASE_ENV,
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        catchup: list[Any] = []
        live: list[Any] = []
        caught_up = False
        buf = b""
        deadline = time.monotonic() + 15
        try:
            assert p.stdout is not None
            while not live and time.monotonic() < deadline:
                ready, _, _ = select.select([p.stdout], [], [], 0.5)
                if not ready:
                    if p.poll() is not None:
                        break
                    continue
                chunk = os.read(p.stdout.fileno(), 65536)
                if not chunk:
                    break
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    o = json.loads(line)
                    if o.get("caught_up"):
                        caught_up = True
                        ev = step["live"]
                        run_ok(["append", step["stream"], "--type", ev["type"], "--data",
                                ev["data"]])
                    elif "version" in o:
                        (live if caught_up else catchup).append(o)
        finally:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if p.returncode != 0:
            raise CliError(f"subscribe exited {p.returncode}: "
                           f"{p.stderr.read().decode() if p.stderr else ''}")
        return {"catchup_versions": [e["version"] for e in catchup], "caught_up": caught_up,
                "live_versions": [e["version"] for e in live],
                "live_types": [e["type"] for e in live]}


def steps() -> None:
    runner = Steps()
    for section, name in (("scenario", "scenario.json"), ("errors", "error_cases.json")):
        for step in data(name)["steps"]:
            try:
                result = runner.run(step)
            except Failed as e:
                result = e.result
            except Exception as e:  # noqa: BLE001 - reported, and the run goes on
                result = {"crash": repr(e)}
            runner.results[step["id"]] = result
            emit(section, step["id"], {k: v for k, v in result.items() if not k.startswith("_")})


def main() -> int:
    if not os.access(CLI, os.X_OK):
        note(f"no whizbang CLI at {CLI}: set WHIZBANG_CLI")
        return 2
    url_cases()
    emit("codes", "names", {"unobservable_case": "the CLI names the codes it meets; it has no "
                                                 "table to list"})
    emit("codes", "typed", {"unobservable_case": "the CLI prints error names, it has no types"})
    framing()
    steps()
    return 0


if __name__ == "__main__":
    sys.exit(main())
