"""The conformance runner of the Python client (clients/python, package
whizbang): drives the client through every case of the data files and prints
what it saw, one JSON line per case, for run.py to judge
(tests/conformance/README.md). It checks nothing itself."""
from __future__ import annotations

import asyncio
import sys
from typing import Any

import whizbang as wb
from whizbang import framing as wb_framing
from whizbang import pb
from whizbang.errors import error_class
from runner_common import data, emit, framing_urls, note, ref

import os

URL = os.environ["WB_CONF_URL"]
FRAMING_TIMEOUT_S = 5.0
STEP_TIMEOUT_S = 20.0


def url_cases() -> None:
    for case in data("url_cases.json")["cases"]:
        try:
            u = wb.parse_url(case["url"])
        except wb.InvalidURLError as e:
            emit("url", case["url"], {"refused": e.message})
            continue
        except Exception as e:  # noqa: BLE001 - anything else is the parser failing
            emit("url", case["url"], {"crash": repr(e)})
            continue
        emit("url", case["url"], {"ok": {
            "user": u.user, "address": u.address, "unix": bool(u.unix_path), "tls": u.tls,
            "tls_ca_file": u.tls_ca_file, "tls_cert_file": u.tls_cert_file,
            "tls_key_file": u.tls_key_file, "tls_server_name": u.tls_server_name,
            "external": u.external}})


def codes() -> None:
    table = data("error_cases.json")["codes"]
    emit("codes", "names", {str(c["code"]): wb.ErrorCode(c["code"]).name for c in table})
    emit("codes", "typed", {str(c["code"]): error_class(c["code"]).__name__
                            for c in table if c["code"] != 0})


async def framing() -> None:
    cases = data("framing_cases.json")
    if wb_framing.DEFAULT_MAX_INCOMING != cases["client_max_frame"]:
        note(f"the client's frame bound is {wb_framing.DEFAULT_MAX_INCOMING}, the cases' "
             f"{cases['client_max_frame']}")
    urls = framing_urls()
    for case in cases["cases"]:
        try:
            conn = await wb.connect(urls[case["id"]], timeout=FRAMING_TIMEOUT_S,
                                    call_timeout=FRAMING_TIMEOUT_S)
        except wb.WhizbangError as e:
            emit("framing", case["id"], {"outcome": "error", "detail": f"connect: {e}"})
            continue
        try:
            await conn.ping(7)
            result = {"outcome": "ok"}
        except wb.WhizbangTimeoutError as e:
            result = {"outcome": "timeout", "detail": str(e)}
        except wb.WhizbangError as e:
            result = {"outcome": "error", "detail": f"{type(e).__name__}: {e}"}
        except Exception as e:  # noqa: BLE001 - not an error the client reports: a crash
            result = {"outcome": "crash", "detail": repr(e)}
        finally:
            await conn.close()
        emit("framing", case["id"], result)


def error_result(e: wb.WhizbangError) -> dict[str, Any]:
    err: dict[str, Any] = {"code": e.code, "message": e.message}
    try:
        err["name"] = wb.ErrorCode(e.code).name
    except ValueError:
        err["name"] = f"UNKNOWN_{e.code}"
    if e.actual_version is not None:
        err["actual_version"] = e.actual_version
    return {"error": err}


def events_result(events: list[pb.RecordedEvent]) -> dict[str, Any]:
    return {"versions": [e.version for e in events], "positions": [e.position for e in events],
            "types": [e.type for e in events], "streams": [e.stream for e in events],
            "data": [e.data.decode("utf-8", "replace") for e in events],
            "_ids": [e.id for e in events]}


class Steps:
    """Runs the steps of scenario.json and error_cases.json on one connection."""

    def __init__(self, conn: wb.Connection) -> None:
        self.conn = conn
        self.results: dict[str, Any] = {}
        self.leases: dict[str, pb.LeaseGrant] = {}
        self.tokens: dict[str, str] = {}
        self.others: dict[str, wb.Connection] = {}
        self.member: Any = None  # the consumer membership's iterator, joined once

    async def on(self, step: dict[str, Any]) -> wb.Connection:
        """The connection a step runs on: its "as" names a token step."""
        who = step.get("as")
        if who is None:
            return self.conn
        if who not in self.others:
            self.others[who] = await wb.connect(URL, token=self.tokens[who])
        return self.others[who]

    def lease_of(self, step: dict[str, Any]) -> tuple[int, int]:
        if "lease" in step:
            g = self.leases[step["lease"]]
            return g.sequence, g.token + step.get("token_delta", 0)
        return int(step["sequence"]), int(step["token"])

    def ids_of(self, spec: dict[str, Any]) -> list[bytes]:
        ids = self.results[spec["step"]]["_ids"]
        return [ids[i] for i in spec["indexes"]]

    async def run(self, step: dict[str, Any]) -> dict[str, Any]:
        op = step["op"]
        conn = await self.on(step)
        if op == "hello":
            h = conn.hello
            return {"protocol_version": h.protocol_version, "server_version": h.server_version,
                    "max_frame": h.max_frame, "max_read_count": h.max_read_count,
                    "max_append_events": h.max_append_events,
                    "max_event_size": h.max_event_size, "user": conn.user,
                    "roles": list(conn.roles)}
        if op == "append":
            events = [wb.Event(e["type"], e["data"].encode()) for e in step["events"]]
            exp = step["expected"]
            if isinstance(exp, int):
                r = await conn.append(step["stream"], events, exact=exp)
            else:
                r = await conn.append(step["stream"], events, expected={
                    "any": wb.ANY, "no_stream": wb.NO_STREAM, "exists": wb.STREAM_EXISTS}[exp])
            return {"stream_version": r.stream_version, "first_position": r.first_position,
                    "last_position": r.last_position}
        if op == "read_stream":
            return events_result([e async for e in conn.read_stream(
                step["stream"], backward=step.get("backward", False))])
        if op == "read_all":
            return events_result([e async for e in conn.read_all(
                stream_prefix=step.get("stream_prefix", ""))])
        if op == "subscribe_stream":
            return await self.subscribe(conn, step)
        if op.startswith("consumer_"):
            return await self.consumer(conn, step)
        if op == "lease":
            [grant] = await conn.lease(step["projection"],
                                       duration_ms=step.get("duration_ms", 0))
            self.leases[step["id"]] = grant
            return {"sequence": grant.sequence}
        if op == "stage":
            seq, token = self.lease_of(step)
            await conn.stage(seq, token, step["ops"])
            return {}
        if op == "commit":
            seq, token = self.lease_of(step)
            r = await conn.commit(seq, token, step["ops"],
                                  ack_applied=step.get("ack") == "applied")
            out: dict[str, Any] = {"sequence": r.sequence}
            if step.get("ack") == "applied":
                out["apply_error"] = int(r.apply_error)
            return out
        if op == "release":
            seq, token = self.lease_of(step)
            await conn.release(seq, token)
            return {}
        if op == "wait_watermark":
            r = await conn.wait_for_watermark(ref(self.results, step["sequence"]),
                                              step["timeout_ms"])
            return {"reached": r.reached, "watermark": r.watermark}
        if op == "query":
            found = [e async for e in conn.query(step["type"], step["where"])]
            return {"ids": [e.id for e in found], "fields": [wb.fields(e) for e in found]}
        if op == "get_entity":
            e = await conn.get_entity(step["type"], step["id"])
            return {"id": e.id, "type": e.type, "version": e.version, "fields": wb.fields(e),
                    "created_sequence": e.created_sequence,
                    "updated_sequence": e.updated_sequence}
        if op == "delete_stream":
            last = await conn.delete_stream(step["stream"], hard=step.get("hard", False))
            return {"last_version": last}
        if op == "create_token":
            r = await conn.create_token(step["role"])
            self.tokens[step["id"]] = r.token
            return {}
        if op == "sleep":
            await asyncio.sleep(step["ms"] / 1000)
            return {}
        raise ValueError(f"unknown operation {op!r}")

    async def subscribe(self, conn: wb.Connection, step: dict[str, Any]) -> dict[str, Any]:
        sub = await conn.subscribe_stream(step["stream"], "start", markers=True)
        catchup: list[pb.RecordedEvent] = []
        live: list[pb.RecordedEvent] = []
        caught_up = False
        try:
            async for item in sub:
                if item is wb.CAUGHT_UP:
                    caught_up = True
                    ev = step["live"]
                    await conn.append(step["stream"], [wb.Event(ev["type"], ev["data"].encode())])
                elif caught_up:
                    live.append(item)
                    break
                else:
                    catchup.append(item)
        finally:
            await sub.close()
        return {"catchup_versions": [e.version for e in catchup], "caught_up": caught_up,
                "live_versions": [e.version for e in live], "live_types": [e.type for e in live]}

    async def consumer(self, conn: wb.Connection, step: dict[str, Any]) -> dict[str, Any]:
        op, name = step["op"], step["name"]
        if op == "consumer_create":
            extra = {"ack_timeout_ms": step["ack_timeout_ms"]} if "ack_timeout_ms" in step else {}
            info = await conn.create_consumer(name, stream_prefix=step["stream_prefix"],
                                              start="start", **extra)
            return {"name": info.config.name, "checkpoint": info.checkpoint}
        if op == "consumer_read":
            if self.member is None:
                self.member = await join(conn, name)
            got: list[tuple[pb.RecordedEvent, int]] = []
            while len(got) < step["count"]:
                got.append(await asyncio.wait_for(self.member.next(), STEP_TIMEOUT_S))
            out = events_result([e for e, _ in got])
            out["deliveries"] = [d for _, d in got]
            return out
        if op == "consumer_ack":
            return {"checkpoint": await conn.ack(name, self.ids_of(step["events"]))}
        if op == "consumer_nack":
            return {"checkpoint": await conn.nack(name, self.ids_of(step["events"]),
                                                  action=step["action"],
                                                  reason=step.get("reason", ""))}
        if op == "consumer_list":
            for info in await conn.list_consumers():
                if info.config.name == name:
                    return {"checkpoint": info.checkpoint, "parked": info.parked,
                            "in_flight": info.in_flight, "members": info.members,
                            "delivered": info.delivered, "acked": info.acked}
            return {"missing": name}
        raise ValueError(f"unknown operation {op!r}")

    async def close(self) -> None:
        if self.member is not None:
            await self.member.close()
        for c in self.others.values():
            await c.close()


async def join(conn: wb.Connection, name: str) -> Any:
    """A consumer membership: next() gives (event, delivery)."""
    it = await conn.join_consumer(name, window=16)

    class Member:
        async def next(self) -> tuple[pb.RecordedEvent, int]:
            event = await it.__anext__()
            return event, it.delivery  # how many times the one just yielded was delivered

        async def close(self) -> None:
            await it.close()
    return Member()


async def steps() -> None:
    conn = await wb.connect(URL, client_name="conformance-py")
    runner = Steps(conn)
    try:
        for section, name in (("scenario", "scenario.json"), ("errors", "error_cases.json")):
            for step in data(name)["steps"]:
                try:
                    result = await asyncio.wait_for(runner.run(step), STEP_TIMEOUT_S)
                except wb.WhizbangError as e:
                    if isinstance(e, (wb.ConnectionClosedError, wb.WhizbangTimeoutError)):
                        result = {"crash": f"{type(e).__name__}: {e}"}
                    else:
                        result = error_result(e)
                except Exception as e:  # noqa: BLE001 - reported, and the run goes on
                    result = {"crash": repr(e)}
                runner.results[step["id"]] = result
                emit(section, step["id"], {k: v for k, v in result.items() if not k.startswith("_")})
    finally:
        await runner.close()
        await conn.close()


async def main() -> int:
    url_cases()
    codes()
    await framing()
    await steps()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
