// Reconnection against a whizbangd that is killed (SIGKILL) and started
// again on the same port and data directory: appends in flight are sent
// again and land exactly once, a subscription resumes after its last event
// without a gap or a duplicate, a call made while the server is down waits
// for it, and a server that stays down fails calls after giveUpAfterMs.
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { connect, ConnectionError, ErrorCode } from "../dist/index.js";
import { startServer, sleep } from "./helpers.mjs";

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
