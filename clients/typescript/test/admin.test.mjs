// The admin calls against a real whizbangd: those answered with progress
// pushes before their answer (Scavenge, Backup), Verify, indexes, the
// ledger read page by page, users, roles and tokens, the server's
// connections (ListClients, Disconnect) and Reload.
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, ConnectionError, WhizbangError, ErrorCode, fieldsOf, pb } from "../dist/index.js";
import { startServer } from "./helpers.mjs";

async function collect(it) {
  const out = [];
  for await (const x of it) out.push(x);
  return out;
}

// Node 18 runs top-level hooks only around suites: everything is in one.
describe("admin calls against whizbangd", () => {
  let server;
  let c;
  let backups;

  before(async () => {
    backups = mkdtempSync(join(tmpdir(), "wb-ts-backups-"));
    server = await startServer(["--backup-dir", backups]);
    c = await connect(server.url);
  });

  after(async () => {
    await c?.close();
    await server?.stop();
    if (backups) rmSync(backups, { recursive: true, force: true });
  });

  it("scavenge: a progress push per chunk of 1000 events, then the final figures", async () => {
    const batch = Array.from({ length: 100 }, () => ({ type: "T", data: "x".repeat(50) }));
    await Promise.all(Array.from({ length: 25 }, () => c.append("scav-1", batch)));
    await c.deleteStream("scav-1");
    const progress = [];
    const r = await c.scavenge((p) => progress.push(p));
    assert.ok(progress.length >= 2, `${progress.length} progress pushes`);
    for (const p of progress) assert.equal(p.done, false);
    assert.deepEqual(progress.map((p) => p.position).slice(0, 2), [1000n, 2000n]);
    assert.equal(r.done, true);
    assert.equal(r.eventsRemoved, 2500n);
    assert.equal(r.position, r.lastPosition);
    // Through client.call() too, without a callback: the answer is the
    // Response with done true, not the first push.
    const again = await c.call("scavenge", {});
    assert.equal(again.done, true);
    assert.equal(again.eventsRemoved, 0n);
  });

  it("a progress callback that throws fails its call, and the connection goes on", async () => {
    // More than one chunk of 1000 events to examine: a progress push comes.
    const batch = Array.from({ length: 100 }, () => ({ type: "T" }));
    await Promise.all(Array.from({ length: 15 }, () => c.append("scav-2", batch)));
    await assert.rejects(
      c.scavenge(() => {
        throw new Error("callback failed");
      }),
      /callback failed/,
    );
    await c.ping();
  });

  it("backup: the copy's directory once done", async () => {
    let pushes = 0;
    const r = await c.backup("b1", () => pushes++);
    assert.equal(r.done, true);
    assert.equal(r.path, join(backups, "b1"));
    assert.ok(existsSync(join(r.path, "data.mdb")));
    assert.ok(r.bytes > 0n);
  });

  it("verify: the read models match a replay of the ledger", async () => {
    const [g] = await c.lease("v");
    await c.commit(g, ['upsert V "v-1" {n: 1}'], { ack: "applied" });
    const r = await c.verify();
    assert.equal(r.match, true, r.firstDifference);
    assert.ok(r.entriesReplayed >= 1n);
  });

  it("indexes: create (answered once applied), list, a query that uses it, drop", async () => {
    const [g] = await c.lease("idx-view");
    await c.commit(
      g,
      Array.from({ length: 5 }, (_, i) => `upsert Item "i-${i}" {colour: "${i % 2 ? "red" : "blue"}", n: ${i}}`),
      { ack: "applied" },
    );
    const made = await c.createIndex("Item", "colour");
    assert.equal(made.index.type, "Item");
    assert.equal(made.index.field, "colour");
    assert.equal(made.index.entries, 5n);
    assert.equal(made.index.createdSequence, made.sequence);
    // The change went through the ledger, at a sequence of its own.
    const [entry] = await collect(c.readLedger({ fromSequence: made.sequence, limit: 1 }));
    assert.equal(entry.projection, "$index");
    await assert.rejects(c.createIndex("Item", "colour"), (e) => e instanceof WhizbangError && e.code === ErrorCode.BAD_REQUEST);
    const listed = await c.listIndexes("Item");
    assert.deepEqual(listed.map((x) => `${x.type}.${x.field}:${x.entries}`), ["Item.colour:5"]);
    assert.deepEqual((await c.listIndexes()).map((x) => x.field), ["colour"]);
    assert.deepEqual(await c.listIndexes("Other"), []);
    assert.equal((await c.explain("Item", 'colour == "red"')).strategy, pb.PlanStrategy.PLAN_INDEX);
    const red = (await collect(c.query("Item", 'colour == "red"'))).map((e) => fieldsOf(e).n);
    assert.deepEqual(red, [1n, 3n]);
    const dropped = await c.dropIndex("Item", "colour");
    assert.ok(dropped.sequence > made.sequence);
    assert.deepEqual(await c.listIndexes("Item"), []);
    await assert.rejects(c.dropIndex("Item", "colour"), (e) => e instanceof WhizbangError && e.code === ErrorCode.NOT_FOUND);
    assert.equal((await c.explain("Item", 'colour == "red"')).strategy, pb.PlanStrategy.PLAN_SCAN);
  });

  it("readLedger: every entry up to the watermark, page after page, from a sequence", async () => {
    for (let i = 0; i < 5; i++) {
      const [g] = await c.lease("ledger-view");
      await c.commit(g, [`upsert L "l-${i}" {i: ${i}}`], { ack: "applied" });
    }
    const { watermark } = await c.watermark();
    const all = await collect(c.readLedger({ pageSize: 2 }));
    assert.deepEqual(all.map((e) => e.sequence), Array.from({ length: Number(watermark) }, (_, i) => BigInt(i + 1)));
    const tail = await collect(c.readLedger({ fromSequence: watermark - 1n }));
    assert.deepEqual(tail.map((e) => e.sequence), [watermark - 1n, watermark]);
    assert.equal(tail[1].projection, "ledger-view");
    assert.equal(tail[1].applied, true);
    assert.equal((await collect(c.readLedger({ limit: 3, pageSize: 2 }))).length, 3);
  });

  it("users, roles and tokens: put, list, revoke, delete", async () => {
    await c.putRole("orders-reader", ["streams:read:orders-"]);
    let roles = await c.listRoles();
    const mine = roles.find((r) => r.name === "orders-reader");
    assert.deepEqual(mine.grants, ["streams:read:orders-"]);
    assert.equal(mine.builtin, false);
    assert.ok(roles.some((r) => r.name === "admin" && r.builtin));
    await assert.rejects(c.putRole("bad", ["streams:read"]), (e) => e.code === ErrorCode.BAD_REQUEST && /grant 1/.test(e.message));
    // The default iterations are the server's default --scram-iterations.
    await c.putUser("carol", ["orders-reader"], { password: "pw of carol" });
    await c.putUser("dave", ["reader"]);
    const users = await c.listUsers();
    assert.deepEqual(
      users.filter((u) => u.name === "carol" || u.name === "dave").map((u) => [u.name, u.roles, u.hasPassword]),
      [["carol", ["orders-reader"], true], ["dave", ["reader"], false]],
    );
    const t = await c.createToken("orders-reader", { description: "for a test" });
    let tokens = await c.listTokens();
    const listed = tokens.find((x) => x.id === t.id);
    assert.equal(listed.role, "orders-reader");
    assert.equal(listed.description, "for a test");
    assert.equal(listed.revoked, false);
    assert.ok(!JSON.stringify(tokens, (_, v) => (typeof v === "bigint" ? String(v) : v)).includes(t.token));
    await c.revokeToken(t.id);
    tokens = await c.listTokens();
    assert.equal(tokens.find((x) => x.id === t.id).revoked, true);
    await c.deleteUser("carol");
    await c.deleteUser("dave");
    await assert.rejects(c.deleteUser("carol"), (e) => e.code === ErrorCode.NOT_FOUND);
    assert.ok(!(await c.listUsers()).some((u) => u.name === "carol"));
    await c.deleteRole("orders-reader");
    await assert.rejects(c.deleteRole("admin"), (e) => e.code === ErrorCode.BAD_REQUEST);
    roles = await c.listRoles();
    assert.ok(!roles.some((r) => r.name === "orders-reader"));
  });

  it("listClients and disconnect: the closed connection's calls carry the server's code", async () => {
    const victim = await connect(server.url, { clientName: "ts-victim" });
    const clients = await c.listClients();
    const me = clients.find((x) => x.self);
    assert.ok(me !== undefined && me.requests > 0n);
    const v = clients.find((x) => x.clientName === "ts-victim");
    assert.ok(v !== undefined, "the other connection is not listed");
    assert.equal(v.self, false);
    assert.match(v.peer, /^127\.0\.0\.1:[0-9]+$/);
    const waiting = victim.call("waitForWatermark", { sequence: 1n << 40n, timeoutMs: 10000n }, { timeoutMs: 0 });
    // The call that waited gets the server's connection-level error, the
    // next one a ConnectionError: both with the server's code. The check
    // is attached before the disconnect, whose answer may come after the
    // victim's rejection (an unhandled rejection fails the run).
    const waited = assert.rejects(waiting, (e) => {
      assert.ok(e instanceof WhizbangError);
      assert.equal(e.code, ErrorCode.RESOURCE_EXHAUSTED);
      assert.equal(e.requestId, 0n);
      assert.match(e.serverMessage, /administrator closed this connection/);
      return true;
    });
    await c.disconnect(v.id);
    await waited;
    await assert.rejects(victim.ping(), (e) => {
      assert.ok(e instanceof ConnectionError);
      assert.equal(e.code, ErrorCode.RESOURCE_EXHAUSTED);
      assert.equal(e.actualVersion, undefined);
      assert.match(e.serverMessage, /administrator closed this connection/);
      return true;
    });
    await victim.close();
    await assert.rejects(c.disconnect(v.id), (e) => e.code === ErrorCode.NOT_FOUND);
    assert.ok(!(await c.listClients()).some((x) => x.id === v.id));
  });

  it("reload: a server without TLS loads nothing and says so", async () => {
    const r = await c.reload();
    assert.equal(r.tls, false);
    assert.equal(r.tlsNotAfter, 0n);
  });
});
