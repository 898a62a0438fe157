// Reconnection against a whizbangd that is killed (SIGKILL) and started
// again on the same port and data directory: appends in flight are sent
// again and land exactly once, a subscription resumes after its last event
// without a gap or a duplicate, a consumer member joins again, a call made
// while the server is down waits for it, and a server that stays down
// fails calls after giveUpAfterMs. Over a host list, the next host takes
// over. Against a fake server: an append is sent again with the same event
// ids, a lease is not sent again, and the waits between attempts back off
// with jitter.
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { connect, ConnectionError, WhizbangError, ErrorCode } from "../dist/index.js";
import { backoffDelay } from "../dist/client.js";
import { startServer, fakeServer, sleep } from "./helpers.mjs";

const reconnect = { initialDelayMs: 20, maxDelayMs: 200, giveUpAfterMs: 20000 };

// Node 18 runs top-level hooks only around suites: everything is in one.
describe("reconnection to a whizbangd killed and started again", () => {
  let server;

  before(async () => {
    server = await startServer();
  });

  after(async () => {
    await server?.stop();
  });

  /** Kills the server and starts it again once `when` resolves. */
  async function bounce(when = Promise.resolve()) {
    await server.kill("SIGKILL");
    await when;
    server = await server.restart();
  }

  it("appends in flight when the server dies land exactly once", async () => {
    const c = await connect(server.url, { reconnect, timeoutMs: 30000 });
    const n = 400;
    let next = 0;
    let done = 0;
    let bounced = null;
    const worker = async () => {
      while (next < n) {
        const i = next++;
        await c.append("rc-appends", { type: "E", data: String(i) });
        if (++done === 100) bounced = bounce();
      }
    };
    await Promise.all(Array.from({ length: 16 }, worker));
    await bounced;
    assert.ok(c.reconnections >= 1, "the client did not reconnect");
    const seen = [];
    for await (const e of c.readStream("rc-appends")) seen.push(Number(Buffer.from(e.data).toString()));
    assert.equal(seen.length, n, `${seen.length} events stored for ${n} appends`);
    assert.deepEqual([...seen].sort((a, b) => a - b), Array.from({ length: n }, (_, i) => i));
    await c.close();
  });

  it("a subscription resumes after its last event: no gap, no duplicate, one caught-up", async () => {
    const writer = await connect(server.url, { reconnect, timeoutMs: 30000 });
    const reader = await connect(server.url, { reconnect, timeoutMs: 30000 });
    for (let i = 0; i < 50; i++) await writer.append("rc-sub", { type: "E", data: String(i) });
    const sub = await reader.subscribe({ target: "stream", stream: "rc-sub", window: 8 });
    const versions = [];
    let caughtUp = 0;
    for await (const item of sub) {
      if (item.kind === "caughtUp") {
        // Killed once during the catch-up (below) and once after it: the
        // resumed subscription is caught up again at once, which is not
        // signalled twice.
        if (++caughtUp === 1) {
          await bounce(sleep(100));
          // Once the reader has subscribed again at the end, the next events.
          while (reader.reconnections < 2) await sleep(10);
          await sleep(200);
          for (let i = 50; i < 100; i++) await writer.append("rc-sub", { type: "E", data: String(i) });
        }
        continue;
      }
      versions.push(item.event.version);
      if (versions.length === 30) await bounce(sleep(100));
      if (versions.length === 100) break;
    }
    assert.deepEqual(versions, Array.from({ length: 100 }, (_, i) => BigInt(i)));
    assert.equal(caughtUp, 1);
    assert.ok(reader.reconnections >= 1);
    await writer.close();
    await reader.close();
  });

  it("a $all subscription resumes by position", async () => {
    const c = await connect(server.url, { reconnect, timeoutMs: 30000 });
    const sub = await c.subscribe({ streamPrefix: "rc-all-", window: 4 });
    const got = [];
    const reading = (async () => {
      for await (const item of sub) {
        if (item.kind !== "event") continue;
        got.push(Buffer.from(item.event.data).toString());
        if (got.length === 40) break;
      }
    })();
    for (let i = 0; i < 20; i++) await c.append(`rc-all-${i % 3}`, { type: "E", data: String(i) });
    await bounce();
    for (let i = 20; i < 40; i++) await c.append(`rc-all-${i % 3}`, { type: "E", data: String(i) });
    await reading;
    assert.deepEqual(got, Array.from({ length: 40 }, (_, i) => String(i)));
    await c.close();
  });

  it("a subscription from the end that received nothing yet resumes where it started", async () => {
    const setup = await connect(server.url);
    for (let i = 0; i < 5; i++) await setup.append("rc-end", { type: "E", data: String(i) });
    await setup.close();
    // The reader comes back late (its first wait is at least 600 ms), after
    // events were appended to the restarted server: they are not skipped.
    const reader = await connect(server.url, { reconnect: { ...reconnect, initialDelayMs: 1200, maxDelayMs: 2000 }, timeoutMs: 30000 });
    const sub = await reader.subscribe({ target: "stream", stream: "rc-end", from: "end" });
    assert.equal(sub.start, 5n);
    const got = [];
    const reading = (async () => {
      for await (const item of sub) {
        if (item.kind !== "event") continue;
        got.push(item.event.version);
        if (got.length === 5) break;
      }
    })();
    await bounce();
    const writer = await connect(server.url);
    for (let i = 5; i < 10; i++) await writer.append("rc-end", { type: "E", data: String(i) });
    assert.equal(reader.reconnections, 0, "the reader came back before the appends: the test proves nothing");
    const late = sleep(15000).then(() => "late");
    assert.notEqual(await Promise.race([reading, late]), "late", `after 15 s the subscription had ${got}`);
    assert.deepEqual(got, [5n, 6n, 7n, 8n, 9n]);
    assert.equal(reader.reconnections, 1);
    await writer.close();
    await reader.close();
  });

  it("a consumer group's member joins again", async () => {
    const c = await connect(server.url, { reconnect, timeoutMs: 30000 });
    await c.createConsumer("rc-group", { streamPrefix: "rc-job-" });
    const member = await c.joinConsumer("rc-group", { window: 4 });
    const settled = new Set();
    const working = (async () => {
      for await (const item of member) {
        if (item.kind !== "event") continue;
        settled.add(Buffer.from(item.event.data).toString());
        // An ack the restart interrupted is refused when sent again (the
        // restarted server has not handed the event out yet: it will, and
        // it is acked then), as docs/SUBSCRIPTIONS.md §2.3 says.
        await c.ack("rc-group", [item.event.id]).catch((e) => {
          if (e.code !== ErrorCode.BAD_REQUEST) throw e;
        });
        if (settled.size === 20) break;
      }
    })();
    for (let i = 0; i < 10; i++) await c.append("rc-job-1", { type: "J", data: String(i) });
    await bounce();
    for (let i = 10; i < 20; i++) await c.append("rc-job-1", { type: "J", data: String(i) });
    await working;
    assert.equal(settled.size, 20);
    assert.ok(c.reconnections >= 1, "the client did not reconnect");
    // Nothing was parked on the way (every event was settled).
    const [g] = (await c.listConsumers()).filter((x) => x.config.name === "rc-group");
    assert.equal(g.parked, 0n);
    await c.close();
  });

  it("a call made while the server is down waits for it to come back", async () => {
    const c = await connect(server.url, { reconnect, timeoutMs: 30000 });
    await server.kill("SIGKILL");
    const restarted = (async () => {
      await sleep(300);
      server = await server.restart();
    })();
    const info = await c.append("rc-wait", { type: "E" });
    assert.equal(info.streamVersion, 0n);
    await restarted;
    await c.close();
  });

  it("a server that stays down fails calls once giveUpAfterMs has passed", async () => {
    const c = await connect(server.url, { reconnect: { ...reconnect, giveUpAfterMs: 300 }, timeoutMs: 30000 });
    await server.kill("SIGKILL");
    const t0 = Date.now();
    await assert.rejects(c.ping(), ConnectionError);
    assert.ok(Date.now() - t0 < 5000, "gave up too late");
    server = await server.restart();
    // The next call tries again, and the server is back.
    await c.ping();
    await c.close();
  });

  it("without the option, a broken connection stays broken", async () => {
    const c = await connect(server.url);
    await server.kill("SIGKILL");
    server = await server.restart();
    await assert.rejects(c.ping(), ConnectionError);
    await c.close();
  });
});

describe("reconnection over a host list", () => {
  it("the first host that answers is used; when it dies, the next one takes over", async () => {
    const a = await startServer();
    const b = await startServer();
    // A port nobody listens on: the first URL of the list is skipped.
    const dead = await startServer();
    await dead.stop();
    try {
      const c = await connect([dead.url, a.url, b.url], { reconnect, timeoutMs: 30000, clientName: "ts-hosts" });
      assert.equal((await c.append("hl", { type: "E" })).streamVersion, 0n);
      assert.equal((await c.append("hl", { type: "E" })).streamVersion, 1n);
      await a.kill("SIGKILL");
      // Sent again to b, a store of its own: its stream starts at 0.
      assert.equal((await c.append("hl", { type: "E" })).streamVersion, 0n);
      assert.ok(c.reconnections >= 1);
      const other = await connect(b.url);
      assert.ok((await other.listClients()).some((x) => x.clientName === "ts-hosts"));
      await other.close();
      await c.close();
    } finally {
      await a.stop();
      await b.stop();
    }
  });
});

describe("reconnection against a fake server", () => {
  const fast = { initialDelayMs: 10, maxDelayMs: 50, giveUpAfterMs: 5000 };
  const hex = (id) => Buffer.from(id).toString("hex");

  it("an append whose connection broke is sent again with the same event ids", async () => {
    const socks = [];
    const seen = [];
    const fake = await fakeServer((req, reply, raw) => {
      if (req.body.case !== "appendEvents") return;
      if (!socks.includes(raw.sock)) socks.push(raw.sock);
      const conn = socks.indexOf(raw.sock);
      seen.push({ conn, ids: req.body.value.events.map((e) => hex(e.id)) });
      // The first connection breaks before the answer (was it stored?).
      if (conn === 0) raw.sock.destroy();
      else reply({ id: req.id, body: { case: "appendEvents", value: { firstPosition: 1n, lastPosition: 2n, streamVersion: 1n, idempotentReplay: true } } });
    });
    try {
      const c = await connect(fake.url, { reconnect: fast, timeoutMs: 5000 });
      const r = await c.append("s", [{ type: "A" }, { type: "B" }]);
      assert.equal(r.idempotentReplay, true);
      assert.deepEqual(seen.map((x) => x.conn), [0, 1]);
      assert.deepEqual(seen[1].ids, seen[0].ids);
      assert.deepEqual(r.eventIds.map(hex), seen[0].ids);
      assert.equal(c.reconnections, 1);
      await c.close();
    } finally {
      await fake.close();
    }
  });

  it("a lease whose connection broke is not sent again: it fails with the ConnectionError", async () => {
    let leases = 0;
    const fake = await fakeServer((req, reply, raw) => {
      if (req.body.case === "lease") {
        leases++;
        raw.sock.destroy();
      } else if (req.body.case === "ping") {
        reply({ id: req.id, body: { case: "pong", value: { nonce: req.body.value.nonce } } });
      }
    });
    try {
      const c = await connect(fake.url, { reconnect: fast, timeoutMs: 5000 });
      await assert.rejects(c.lease("p"), (e) => e instanceof ConnectionError && e.code === undefined);
      await c.ping();
      assert.equal(leases, 1);
      await c.close();
    } finally {
      await fake.close();
    }
  });

  it("attempts back off: each wait at least half of initialDelayMs doubled per attempt", async () => {
    const helloAt = [];
    const refusals = 5;
    const handler = (req, reply, raw) => {
      if (req.body.case === "hello") {
        helloAt.push(performance.now());
        // The first connection, and the one after the refusals, are
        // answered; those between are closed at their Hello.
        if (helloAt.length === 1 || helloAt.length === refusals + 2)
          reply({ id: req.id, body: { case: "hello", value: { protocolVersion: 1, maxFrame: 4194304, maxReadCount: 1000 } } });
        else raw.sock.destroy();
      } else if (req.body.case === "ping") {
        if (helloAt.length === 1) raw.sock.destroy();
        else reply({ id: req.id, body: { case: "pong", value: { nonce: req.body.value.nonce } } });
      }
    };
    handler.hello = "scripted";
    const fake = await fakeServer(handler);
    const r = { initialDelayMs: 40, maxDelayMs: 400, giveUpAfterMs: 20000 };
    try {
      const c = await connect(fake.url, { reconnect: r, timeoutMs: 20000 });
      await c.ping();
      assert.equal(helloAt.length, refusals + 2);
      assert.equal(c.reconnections, 1);
      // helloAt[1] is the first attempt (at once); the wait after attempt
      // k (from 0) is at least half of min(400, 40 * 2^k).
      for (let k = 0; k < refusals; k++) {
        const gap = helloAt[k + 2] - helloAt[k + 1];
        const least = Math.min(r.maxDelayMs, r.initialDelayMs * 2 ** k) / 2;
        assert.ok(gap >= least - 2, `wait ${k}: ${gap.toFixed(1)} ms, less than ${least} ms`);
      }
      await c.close();
    } finally {
      await fake.close();
    }
  });

  // A fake server whose Hellos are answered by answers[k] for the k-th
  // (an error code, or 0: welcome), and whose first connection breaks at
  // its first Ping.
  async function helloScript(answers) {
    let hellos = 0;
    const handler = (req, reply, raw) => {
      if (req.body.case === "hello") {
        const code = answers[Math.min(hellos++, answers.length - 1)];
        if (code === 0) reply({ id: req.id, body: { case: "hello", value: { protocolVersion: 1, maxFrame: 4194304 } } });
        else reply({ id: req.id, error: { code, message: `hello refused with ${code}` } });
      } else if (hellos === 1) {
        raw.sock.destroy();
      } else {
        reply({ id: req.id, body: { case: "pong", value: { nonce: req.body.value.nonce } } });
      }
    };
    handler.hello = "scripted";
    const fake = await fakeServer(handler);
    return { fake, hellos: () => hellos };
  }

  it("a server stopping or busy at Hello is tried again; a refusal is final", async () => {
    const busy = await helloScript([0, ErrorCode.SHUTTING_DOWN, ErrorCode.RESOURCE_EXHAUSTED, 0]);
    try {
      const c = await connect(busy.fake.url, { reconnect: fast, timeoutMs: 5000 });
      await c.ping();
      assert.equal(busy.hellos(), 4);
      await c.close();
    } finally {
      await busy.fake.close();
    }
    const refused = await helloScript([0, ErrorCode.UNAUTHENTICATED, 0]);
    try {
      const c = await connect(refused.fake.url, { reconnect: fast, timeoutMs: 5000 });
      await assert.rejects(c.ping(), (e) => e instanceof WhizbangError && e.code === ErrorCode.UNAUTHENTICATED);
      assert.equal(refused.hellos(), 2);
      await c.close();
    } finally {
      await refused.fake.close();
    }
  });

  it("backoffDelay: doubling up to the cap, with jitter between half and all of it", () => {
    const r = { initialDelayMs: 100, maxDelayMs: 5000 };
    assert.deepEqual([0, 1, 2, 3, 6, 7, 100].map((k) => backoffDelay(k, r, () => 0)), [50, 100, 200, 400, 2500, 2500, 2500]);
    assert.equal(backoffDelay(3, r, () => 0.5), 600);
    assert.ok(backoffDelay(3, r, () => 0.999999) < 800);
    const spread = new Set(Array.from({ length: 50 }, () => backoffDelay(2, r)));
    assert.ok(spread.size > 1, "no jitter");
    for (const d of spread) assert.ok(d >= 200 && d < 400, `${d}`);
  });
});
