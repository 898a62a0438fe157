// The conformance runner of the TypeScript client (clients/typescript, built
// into dist/ by run.py first): drives the client through every case of the
// data files and prints what it saw, one JSON line per case, for run.py to
// judge (tests/conformance/README.md). It checks nothing itself.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import {
  connect,
  parseUrl,
  UrlError,
  WhizbangError,
  ConnectionError,
  FrameTooLargeError,
  ErrorCode,
  errorCodeName,
  fieldsOf,
  DEFAULT_MAX_RESPONSE,
} from "../../clients/typescript/dist/index.js";

const URL = process.env.WB_CONF_URL;
const FRAMING_TIMEOUT_MS = 5000;

const data = (name) => JSON.parse(readFileSync(join(process.env.WB_CONF_DATA, name), "utf8"));

/** JSON for what the client hands out: BigInts as numbers (the scenario's
 * figures are all far below 2^53). */
function plain(v) {
  if (typeof v === "bigint") return Number(v);
  if (v instanceof Uint8Array) return `x"${Buffer.from(v).toString("hex")}"`;
  if (Array.isArray(v)) return v.map(plain);
  if (v !== null && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  return v;
}

function emit(section, id, result) {
  const shown = Object.fromEntries(Object.entries(result).filter(([k]) => !k.startsWith("_")));
  process.stdout.write(JSON.stringify({ section, id, result: plain(shown) }) + "\n");
}

function urlCases() {
  for (const c of data("url_cases.json").cases) {
    let u;
    try {
      u = parseUrl(c.url);
    } catch (err) {
      emit("url", c.url, err instanceof UrlError ? { refused: err.message } : { crash: String(err) });
      continue;
    }
    emit("url", c.url, {
      ok: {
        user: u.user,
        address: u.address,
        unix: u.unixSocket,
        tls: u.tls,
        tls_ca_file: u.tlsCaFile,
        tls_cert_file: u.tlsCertFile,
        tls_key_file: u.tlsKeyFile,
        tls_server_name: u.tlsServerName,
        external: u.external,
      },
    });
  }
}

function codes() {
  const names = {};
  for (const c of data("error_cases.json").codes) names[String(c.code)] = errorCodeName(c.code);
  emit("codes", "names", names);
  emit("codes", "typed", {
    unobservable_case: "one WhizbangError class carries every server code (code, codeName)",
  });
}

const isTimeout = (err) => err?.name === "TimeoutError" || err?.name === "AbortError";

async function framing() {
  const cases = data("framing_cases.json");
  if (DEFAULT_MAX_RESPONSE !== cases.client_max_frame)
    process.stderr.write(`the client's frame bound is ${DEFAULT_MAX_RESPONSE}, the cases' ${cases.client_max_frame}\n`);
  const urls = JSON.parse(process.env.WB_CONF_FRAMING);
  for (const c of cases.cases) {
    let client;
    let result;
    try {
      client = await connect(urls[c.id], { timeoutMs: FRAMING_TIMEOUT_MS, clientName: "conformance-ts" });
      await client.ping();
      result = { outcome: "ok" };
    } catch (err) {
      if (isTimeout(err)) result = { outcome: "timeout", detail: String(err) };
      else if (err instanceof WhizbangError || err instanceof ConnectionError || err instanceof FrameTooLargeError)
        result = { outcome: "error", detail: `${err.name}: ${err.message}` };
      else result = { outcome: "crash", detail: String(err?.stack ?? err) };
    } finally {
      await client?.close().catch(() => undefined);
    }
    emit("framing", c.id, result);
  }
}

function eventsResult(events) {
  return {
    versions: events.map((e) => e.version),
    positions: events.map((e) => e.position),
    types: events.map((e) => e.type),
    streams: events.map((e) => e.stream),
    data: events.map((e) => Buffer.from(e.data).toString("utf8")),
    _ids: events.map((e) => e.id),
  };
}

async function all(iter) {
  const out = [];
  for await (const x of iter) out.push(x);
  return out;
}

/** The next event item of a subscription or membership, within 10 s. */
async function nextEvent(sub) {
  const deadline = Date.now() + 10000;
  for (;;) {
    const left = deadline - Date.now();
    if (left <= 0) throw new Error("no item within 10 s");
    let timer;
    const r = await Promise.race([
      sub.next(),
      new Promise((_, reject) => (timer = setTimeout(() => reject(new Error("no item within 10 s")), left))),
    ]).finally(() => clearTimeout(timer));
    if (r.done) throw new Error("the subscription ended");
    return r.value;
  }
}

class Steps {
  constructor(client) {
    this.client = client;
    this.results = {};
    this.leases = {};
    this.tokens = {};
    this.others = {};
    this.member = null;
  }

  async on(step) {
    const who = step.as;
    if (who === undefined) return this.client;
    this.others[who] ??= await connect(URL, { token: this.tokens[who], clientName: "conformance-ts" });
    return this.others[who];
  }

  leaseOf(step) {
    if (step.lease !== undefined) {
      const g = this.leases[step.lease];
      return { sequence: g.sequence, token: g.token + BigInt(step.token_delta ?? 0) };
    }
    return { sequence: BigInt(step.sequence), token: BigInt(step.token) };
  }

  idsOf(spec) {
    const ids = this.results[spec.step]._ids;
    return spec.indexes.map((i) => ids[i]);
  }

  ref(v) {
    if (v !== null && typeof v === "object" && "$ref" in v) {
      const [step, key] = v.$ref.split(".");
      return BigInt(this.results[step][key]);
    }
    return BigInt(v);
  }

  async run(step) {
    const c = await this.on(step);
    switch (step.op) {
      case "hello": {
        const h = c.hello;
        return {
          protocol_version: h.protocolVersion,
          server_version: h.serverVersion,
          max_frame: h.maxFrame,
          max_read_count: h.maxReadCount,
          max_append_events: h.maxAppendEvents,
          max_event_size: h.maxEventSize,
          user: c.user,
          roles: c.roles,
        };
      }
      case "append": {
        const exp = step.expected;
        const expected = typeof exp === "number" ? exp : { any: "any", no_stream: "noStream", exists: "streamExists" }[exp];
        const r = await c.append(step.stream, step.events.map((e) => ({ type: e.type, data: e.data })), { expected });
        return { stream_version: r.streamVersion, first_position: r.firstPosition, last_position: r.lastPosition };
      }
      case "read_stream":
        return eventsResult(await all(c.readStream(step.stream, { direction: step.backward ? "backward" : "forward" })));
      case "read_all":
        return eventsResult(await all(c.readAll({ streamPrefix: step.stream_prefix })));
      case "subscribe_stream": {
        const sub = await c.subscribe({ target: "stream", stream: step.stream, from: "start" });
        const catchup = [];
        const live = [];
        let caughtUp = false;
        try {
          while (live.length === 0) {
            const item = await nextEvent(sub);
            if (item.kind === "caughtUp") {
              caughtUp = true;
              await c.append(step.stream, { type: step.live.type, data: step.live.data });
            } else if (item.kind === "event") (caughtUp ? live : catchup).push(item.event);
          }
        } finally {
          await sub.return?.();
        }
        return {
          catchup_versions: catchup.map((e) => e.version),
          caught_up: caughtUp,
          live_versions: live.map((e) => e.version),
          live_types: live.map((e) => e.type),
        };
      }
      case "consumer_create": {
        const info = await c.createConsumer(step.name, {
          streamPrefix: step.stream_prefix,
          from: "start",
          ...(step.ack_timeout_ms !== undefined ? { ackTimeoutMs: step.ack_timeout_ms } : {}),
        });
        return { name: info.config.name, checkpoint: info.checkpoint };
      }
      case "consumer_read": {
        this.member ??= await c.joinConsumer(step.name, { window: 16 });
        const got = [];
        while (got.length < step.count) {
          const item = await nextEvent(this.member);
          if (item.kind === "event") got.push(item);
        }
        return { ...eventsResult(got.map((x) => x.event)), deliveries: got.map((x) => x.delivery) };
      }
      case "consumer_ack":
        return { checkpoint: await c.ack(step.name, this.idsOf(step.events)) };
      case "consumer_nack":
        return {
          checkpoint: await c.nack(step.name, this.idsOf(step.events), step.action, step.reason !== undefined ? { reason: step.reason } : {}),
        };
      case "consumer_list": {
        const info = (await c.listConsumers()).find((x) => x.config.name === step.name);
        if (info === undefined) return { missing: step.name };
        return {
          checkpoint: info.checkpoint,
          parked: info.parked,
          in_flight: info.inFlight,
          members: info.members,
          delivered: info.delivered,
          acked: info.acked,
        };
      }
      case "lease": {
        const [g] = await c.lease(step.projection, { durationMs: step.duration_ms ?? 0 });
        this.leases[step.id] = g;
        return { sequence: g.sequence };
      }
      case "stage":
        await c.stage(this.leaseOf(step), step.ops);
        return {};
      case "commit": {
        const r = await c.commit(this.leaseOf(step), step.ops, { ack: step.ack ?? "durable" });
        return step.ack === "applied" ? { sequence: r.sequence, apply_error: r.applyError } : { sequence: r.sequence };
      }
      case "release":
        await c.release(this.leaseOf(step));
        return {};
      case "wait_watermark": {
        const r = await c.waitForWatermark(this.ref(step.sequence), step.timeout_ms);
        return { reached: r.reached, watermark: r.watermark };
      }
      case "query": {
        const found = await all(c.query(step.type, step.where));
        return { ids: found.map((e) => e.id), fields: found.map((e) => fieldsOf(e)) };
      }
      case "get_entity": {
        const e = await c.getEntity(step.type, step.id);
        if (e === null) return { missing: step.id };
        return {
          id: e.id,
          type: e.type,
          version: e.version,
          fields: fieldsOf(e),
          created_sequence: e.createdSequence,
          updated_sequence: e.updatedSequence,
        };
      }
      case "delete_stream":
        return { last_version: await c.deleteStream(step.stream, { hard: step.hard ?? false }) };
      case "create_token": {
        const r = await c.createToken(step.role);
        this.tokens[step.id] = r.token;
        return {};
      }
      case "sleep":
        await new Promise((r) => setTimeout(r, step.ms));
        return {};
      default:
        throw new Error(`unknown operation ${step.op}`);
    }
  }

  async close() {
    await this.member?.return?.();
    for (const o of Object.values(this.others)) await o.close();
  }
}

function errorResult(err) {
  const e = { code: err.code, name: errorCodeName(err.code), message: err.serverMessage };
  if (err.actualVersion !== undefined) e.actual_version = err.actualVersion;
  return { error: e };
}

async function steps() {
  const client = await connect(URL, { clientName: "conformance-ts", timeoutMs: 20000 });
  const runner = new Steps(client);
  try {
    for (const [section, name] of [
      ["scenario", "scenario.json"],
      ["errors", "error_cases.json"],
    ]) {
      for (const step of data(name).steps) {
        let result;
        try {
          result = await runner.run(step);
        } catch (err) {
          // A server's error with its request's id is an answer; one with
          // id 0 (the connection is gone) is not.
          result = err instanceof WhizbangError && err.requestId !== 0n ? errorResult(err) : { crash: String(err?.stack ?? err) };
        }
        runner.results[step.id] = result;
        emit(section, step.id, result);
      }
    }
  } finally {
    await runner.close();
    await client.close();
  }
}

urlCases();
codes();
await framing();
await steps();
