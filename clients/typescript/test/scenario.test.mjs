// The scenario against a real whizbangd on port 0: hello → append with
// expected versions → read → subscribe (catch-up, then live) → lease and
// commit with a text where → watermark → query; and the projection worker.
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import {
  connect,
  WhizbangError,
  ApplyError,
  TimeoutError,
  WatermarkTimeoutError,
  ErrorCode,
  Op,
  Expr,
  fieldsOf,
  uuidText,
} from "../dist/index.js";
import { startServer, sleep } from "./helpers.mjs";

// Node 18 runs top-level hooks only around suites: everything is in one.
describe("the scenario against whizbangd", () => {
  let server;
  let c;

  before(async () => {
    server = await startServer();
    c = await connect(server.url, { clientName: "ts-scenario", timeoutMs: 10000 });
  });

  after(async () => {
    await c?.close();
    const exit = await server?.stop();
    assert.deepEqual(exit, { code: 0, sig: null }, "whizbangd did not exit cleanly on SIGTERM");
  });

  const ev = (type, data) => ({ type, data: JSON.stringify(data) });
  const text = (e) => Buffer.from(e.data).toString("utf8");

  it("hello: the server's limits and who the connection is", async () => {
    assert.equal(c.hello.protocolVersion, 1);
    assert.ok(c.hello.maxFrame >= 4096);
    assert.ok(c.hello.maxReadCount > 0);
    assert.equal(c.hello.authRequired, false);
    assert.ok(c.roles.includes("admin"), `roles ${c.roles}`);
    assert.ok((await c.ping()) >= 0);
  });

  it("append with each expected version, and WRONG_EXPECTED_VERSION with the actual one", async () => {
    const first = await c.append("order-1", ev("Placed", { n: 0 }), { expected: "noStream" });
    assert.equal(first.streamVersion, 0n);
    assert.equal(typeof first.firstPosition, "bigint");
    assert.equal(first.idempotentReplay, false);
    await assert.rejects(c.append("order-1", ev("Placed", {}), { expected: "noStream" }), (e) => {
      assert.ok(e instanceof WhizbangError);
      assert.equal(e.code, ErrorCode.WRONG_EXPECTED_VERSION);
      assert.equal(e.actualVersion, 0n);
      return true;
    });
    const second = await c.append("order-1", ev("Paid", { n: 1 }), { expected: 0 });
    assert.equal(second.streamVersion, 1n);
    await assert.rejects(c.append("order-1", ev("Paid", {}), { expected: 5n }), (e) => e.actualVersion === 1n);
    const third = await c.append("order-1", [ev("Shipped", { n: 2 }), ev("Delivered", { n: 3 })], {
      expected: "streamExists",
    });
    assert.equal(third.streamVersion, 3n);
    assert.equal(third.lastPosition - third.firstPosition, 1n);
    await assert.rejects(c.append("order-none", ev("X", {}), { expected: "streamExists" }), (e) => e.actualVersion === -1n);
    await assert.rejects(c.append("order-none", ev("X", {}), { expected: 0n }), (e) => e.actualVersion === -1n);
    const any = await c.append("order-1", ev("Noted", { n: 4 }));
    assert.equal(any.streamVersion, 4n);
  });

  it("an append retried with its event ids is answered as a replay", async () => {
    const a = await c.append("order-2", [ev("Placed", {}), ev("Paid", {})]);
    assert.equal(a.eventIds.length, 2);
    assert.match(uuidText(a.eventIds[0]), /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    const again = await c.append(
      "order-2",
      a.eventIds.map((id, i) => ({ ...ev(i === 0 ? "Placed" : "Paid", {}), id })),
      { expected: "noStream" },
    );
    assert.equal(again.idempotentReplay, true);
    assert.equal(again.firstPosition, a.firstPosition);
  });

  it("pipelined appends on one connection: all answered, versions 0..n-1", async () => {
    const n = 200;
    const results = await Promise.all(Array.from({ length: n }, (_, i) => c.append("pipe-1", ev("E", { i }))));
    const versions = results.map((r) => r.streamVersion).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    assert.deepEqual(versions, Array.from({ length: n }, (_, i) => BigInt(i)));
    const info = await c.streamInfo("pipe-1");
    assert.equal(info.eventCount, BigInt(n));
  });

  it("readStream pages by itself, forward and backward", async () => {
    const fwd = [];
    for await (const e of c.readStream("pipe-1", { pageSize: 7 })) fwd.push(e.version);
    assert.equal(fwd.length, 200);
    assert.deepEqual(fwd, Array.from({ length: 200 }, (_, i) => BigInt(i)));
    const back = [];
    for await (const e of c.readStream("order-1", { direction: "backward", pageSize: 2 })) back.push(e.type);
    assert.deepEqual(back, ["Noted", "Delivered", "Shipped", "Paid", "Placed"]);
    const limited = [];
    for await (const e of c.readStream("pipe-1", { fromVersion: 10n, limit: 3 })) limited.push(e.version);
    assert.deepEqual(limited, [10n, 11n, 12n]);
    await assert.rejects(
      (async () => {
        for await (const _ of c.readStream("no-such-stream"));
      })(),
      (e) => e instanceof WhizbangError && e.code === ErrorCode.NOT_FOUND,
    );
  });

  it("readAll with a prefix and types, paged", async () => {
    const got = [];
    for await (const e of c.readAll({ streamPrefix: "order-", eventTypes: ["Placed"], pageSize: 1 })) got.push(e.stream);
    assert.deepEqual(got, ["order-1", "order-2"]);
    let prev = 0n;
    let n = 0;
    for await (const e of c.readAll({ pageSize: 50 })) {
      assert.ok(e.position > prev);
      prev = e.position;
      n++;
    }
    const stats = await c.stats();
    assert.equal(BigInt(n), stats.lastPosition);
  });

  it("stream metadata hides events; a soft delete hides the stream", async () => {
    await c.append("meta-1", [ev("A", {}), ev("B", {}), ev("C", {})]);
    const m = await c.setStreamMetadata("meta-1", { maxCount: 2n });
    assert.equal(m.maxCount, 2n);
    assert.equal((await c.getStreamMetadata("meta-1")).maxCount, 2n);
    const types = [];
    for await (const e of c.readStream("meta-1")) types.push(e.type);
    assert.deepEqual(types, ["B", "C"]);
    assert.equal(await c.deleteStream("meta-1"), 2n);
    assert.equal((await c.streamInfo("meta-1")).deleted, true);
    await assert.rejects(c.readStream("meta-1").next(), (e) => e.code === ErrorCode.NOT_FOUND);
  });

  it("subscribe to $all: catch-up, the caught-up signal, then live events", async () => {
    const sub = await c.subscribe({ streamPrefix: "live-", window: 4 });
    const before = 10;
    for (let i = 0; i < before; i++) await c.append("live-1", ev("Before", { i }));
    // Appended after the subscription started, but before it is read: they
    // are catch-up or live depending on timing; what matters is order and
    // that nothing is missed or repeated.
    const seen = [];
    let caughtUpAt = -1;
    let appendedLive = false;
    for await (const item of sub) {
      if (item.kind === "caughtUp") {
        caughtUpAt = seen.length;
        assert.equal(sub.isCaughtUp, true);
        for (let i = 0; i < 6; i++) await c.append("live-2", ev("After", { i }));
        appendedLive = true;
        continue;
      }
      assert.equal(item.kind, "event");
      seen.push(`${item.event.stream}:${item.event.version}`);
      if (appendedLive && seen.length === before + 6) break;
    }
    assert.ok(caughtUpAt >= 0, "no caught-up signal");
    await sub.caughtUp;
    assert.deepEqual(seen, [
      ...Array.from({ length: before }, (_, i) => `live-1:${i}`),
      ...Array.from({ length: 6 }, (_, i) => `live-2:${i}`),
    ]);
    // After the break (Unsubscribe), the connection goes on.
    await c.ping();
  });

  it("subscribe to a stream from a version, with more events than the window", async () => {
    const sub = await c.subscribe({ target: "stream", stream: "pipe-1", from: 150n, window: 8 });
    assert.equal(sub.start, 150n);
    const versions = [];
    for await (const item of sub) {
      if (item.kind === "caughtUp") break;
      versions.push(item.event.version);
    }
    assert.deepEqual(versions, Array.from({ length: 50 }, (_, i) => BigInt(150 + i)));
  });

  it("lease, commit with a text where, watermark, query", async () => {
    const [grant] = await c.lease("orders-view", { durationMs: 5000 });
    assert.equal(typeof grant.sequence, "bigint");
    assert.equal(typeof grant.token, "bigint");
    await c.extend(grant, { durationMs: 5000 });
    const result = await c.commit(grant, [
      Op.text('upsert Order "o-1" {customer_id: "c-42", status: "Pending", total: 120}'),
      Op.text('upsert Order "o-2" {customer_id: "c-42", status: "Pending", total: 80}'),
      Op.upsert("Order", "o-3", { customer_id: "c-7", status: "Pending", total: 300n }),
    ]);
    assert.equal(result.sequence, grant.sequence);

    const [g2] = await c.lease("orders-view");
    const applied = await c.commit(g2, ['update Order where customer_id == "c-42" and total >= 100 set status = "Paid"'], {
      ack: "applied",
    });
    assert.equal(applied.applyError, ErrorCode.OK);
    assert.equal(applied.results[0].affected, 1n);

    const w = await c.waitForWatermark(g2.sequence, 5000);
    assert.equal(w.reached, true);
    assert.ok((await c.watermark()).watermark >= g2.sequence);

    const paid = [];
    for await (const e of c.query("Order", 'status == "Paid"')) paid.push(e.id);
    assert.deepEqual(paid, ["o-1"]);
    const all = [];
    for await (const e of c.query("Order", undefined, { pageSize: 1 })) all.push(e.id);
    assert.deepEqual(all, ["o-1", "o-2", "o-3"]);
    const built = [];
    for await (const e of c.query("Order", Expr.and(Expr.eq("status", "Pending"), Expr.gt("total", 100)))) built.push(e.id);
    assert.deepEqual(built, ["o-3"]);

    const o1 = await c.getEntity("Order", "o-1");
    assert.deepEqual(fieldsOf(o1), { customer_id: "c-42", status: "Paid", total: 120n });
    assert.equal(await c.getEntity("Order", "o-404"), null);
    const plan = await c.explain("Order", 'customer_id == "c-42"');
    assert.equal(typeof plan.plan, "string");
    assert.ok(plan.plan.length > 0);
  });

  it("a where clause that does not parse is INVALID_EXPRESSION naming the column", async () => {
    await assert.rejects(
      (async () => {
        for await (const _ of c.query("Order", "total >= "));
      })(),
      (e) => e instanceof WhizbangError && e.code === ErrorCode.INVALID_EXPRESSION && /column/.test(e.message),
    );
    const [g] = await c.lease("orders-view");
    await assert.rejects(c.commit(g, ["update Order where set"]), (e) => e.code === ErrorCode.INVALID_EXPRESSION);
    await c.release(g, "test over");
    await assert.rejects(c.commit(g, []), (e) => e.code === ErrorCode.LEASE_NOT_FOUND);
  });

  it("subscribe to the ledger: committed entries up to the watermark, then caught up", async () => {
    const sub = await c.subscribe({ target: "ledger" });
    const kinds = [];
    for await (const item of sub) {
      if (item.kind === "caughtUp") break;
      kinds.push(item.entry.sequence);
    }
    const { watermark } = await c.watermark();
    assert.deepEqual(kinds, Array.from({ length: Number(watermark) }, (_, i) => BigInt(i + 1)));
  });

  it("withLease: Extends keep the lease while the work outlasts it, then commits", async () => {
    let extendedPast = false;
    const result = await c.withLease(
      "slow-view",
      async ({ sequence, signal }) => {
        assert.equal(typeof sequence, "bigint");
        await sleep(2500);
        extendedPast = !signal.aborted;
        return ['upsert Slow "s-1" {done: true}'];
      },
      // The work lasts 2.5 leases: only Extends keep the lease alive.
      { durationMs: 1000, ack: "applied", waitForWatermarkMs: 5000 },
    );
    assert.equal(extendedPast, true);
    assert.equal(result.applyError, ErrorCode.OK);
    const s = await c.getEntity("Slow", "s-1");
    assert.deepEqual(fieldsOf(s), { done: true });
  });

  it("stage: staged work is checked like a commit's, then the commit goes through", async () => {
    const result = await c.withLease("staged-view", async ({ stage }) => {
      await stage(['upsert Staged "x-1" {n: 1}']);
      await assert.rejects(stage(["upsert Staged"]), (e) => e.code === ErrorCode.INVALID_EXPRESSION);
      return ['upsert Staged "x-1" {n: 2}'];
    }, { ack: "applied" });
    assert.equal(result.applyError, ErrorCode.OK);
    assert.deepEqual(fieldsOf(await c.getEntity("Staged", "x-1")), { n: 2n });
  });

  it("a subscription ends with the error the server pushes (a hard delete)", async () => {
    await c.append("short-lived", ev("T", {}));
    const sub = await c.subscribe({ target: "stream", stream: "short-lived" });
    const seen = [];
    await assert.rejects(
      (async () => {
        for await (const item of sub) {
          seen.push(item.kind);
          if (item.kind === "caughtUp") await c.deleteStream("short-lived", { hard: true });
        }
      })(),
      (e) => e instanceof WhizbangError && e.code === ErrorCode.STREAM_DELETED,
    );
    assert.deepEqual(seen, ["event", "caughtUp"]);
    await c.ping();
  });

  it("withLease: a throw releases the sequence (a gap) and is rethrown", async () => {
    const before = await c.stats();
    await assert.rejects(
      c.withLease("slow-view", async () => {
        throw new Error("the work failed");
      }),
      /the work failed/,
    );
    const after = await c.stats();
    assert.equal(after.leasesReleased, before.leasesReleased + 1n);
    // The gap is final: the watermark passes it.
    const { watermark, nextSequence } = await c.watermark();
    assert.equal(watermark, nextSequence - 1n);
  });

  it("withLease: a lost lease aborts the work's signal and rejects with the Extend's error", async () => {
    let aborted = false;
    await assert.rejects(
      c.withLease(
        "lost-view",
        async ({ signal }) => {
          // The lease (200 ms) expires before the first Extend (700 ms).
          await new Promise((resolve) => {
            const t = setTimeout(resolve, 5000);
            signal.addEventListener("abort", () => (clearTimeout(t), resolve()), { once: true });
          });
          aborted = signal.aborted;
          return ['upsert Lost "l-1" {n: 1}'];
        },
        { durationMs: 200, extendEveryMs: 700 },
      ),
      (e) =>
        e instanceof WhizbangError &&
        (e.code === ErrorCode.LEASE_NOT_FOUND || e.code === ErrorCode.LEASE_EXPIRED) &&
        e.requestId > 0n,
    );
    assert.equal(aborted, true, "the work's signal was not aborted");
    assert.equal(await c.getEntity("Lost", "l-1"), null);
  });

  it("withLease: ops that fail to apply reject with an ApplyError carrying the commit", async () => {
    await c.withLease("apply-view", async () => ['upsert Named "n-1" {name: "x"}'], { ack: "applied" });
    await assert.rejects(
      c.withLease("apply-view", async () => ['update Named where name == "x" inc name by 1'], { ack: "applied" }),
      (e) => {
        assert.ok(e instanceof ApplyError && e instanceof WhizbangError);
        assert.equal(e.code, ErrorCode.BAD_REQUEST);
        assert.match(e.serverMessage, /not a number/);
        assert.equal(e.failedOp, 1);
        assert.equal(e.actualVersion, undefined);
        assert.equal(typeof e.commit.sequence, "bigint");
        return true;
      },
    );
    // A no-op: the entity is as it was.
    assert.deepEqual(fieldsOf(await c.getEntity("Named", "n-1")), { name: "x" });
  });

  it("withLease: a watermark that does not come in time is a WatermarkTimeoutError with the durable commit", async () => {
    // An earlier sequence held open keeps the watermark below the commit.
    const [held] = await c.lease("held-view", { durationMs: 10000 });
    await assert.rejects(
      c.withLease("late-view", async () => ['upsert Late "x" {n: 1}'], { waitForWatermarkMs: 200 }),
      (e) => {
        assert.ok(e instanceof WatermarkTimeoutError && e instanceof TimeoutError);
        assert.equal(e.name, "TimeoutError");
        assert.equal(e.code, undefined);
        assert.ok(e.commit.sequence > held.sequence);
        return true;
      },
    );
    await c.release(held);
  });

  it("a call that waits too long times out; the connection goes on", async () => {
    const { nextSequence } = await c.watermark();
    const far = nextSequence + 1000n;
    await assert.rejects(
      c.call("waitForWatermark", { sequence: far, timeoutMs: 5000n }, { timeoutMs: 100 }),
      (e) => e instanceof TimeoutError && e.name === "TimeoutError" && e.code === undefined,
    );
    await c.ping();
    // waitForWatermark() gives the server's wait its own time.
    const w = await c.waitForWatermark(far, 200, { timeoutMs: 2000 });
    assert.equal(w.reached, false);
  });

  it("a request above max_frame is refused here, and the connection survives", async () => {
    const big = "x".repeat(c.hello.maxFrame + 10);
    await assert.rejects(c.append("big", { type: "T", data: big }), RangeError);
    await c.ping();
  });

  it("errors of the server map to their codes", async () => {
    await assert.rejects(c.append("", ev("T", {})), (e) => e.code === ErrorCode.BAD_REQUEST);
    await assert.rejects(c.streamInfo("never-written"), (e) => e.code === ErrorCode.NOT_FOUND);
    await c.append("doomed", ev("T", {}));
    assert.equal(await c.deleteStream("doomed", { hard: true }), 0n);
    await assert.rejects(c.append("doomed", ev("T", {})), (e) => e.code === ErrorCode.STREAM_DELETED);
    const [g] = await c.lease("orders-view");
    await assert.rejects(c.commit({ sequence: g.sequence, token: g.token + 1n }, []), (e) => e.code === ErrorCode.LEASE_TOKEN_MISMATCH);
    await c.release(g);
  });
});
