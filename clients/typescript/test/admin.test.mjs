// The calls answered with progress pushes before their answer (Scavenge,
// Backup), and Verify, against a real whizbangd.
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect } from "../dist/index.js";
import { startServer } from "./helpers.mjs";

// Node 18 runs top-level hooks only around suites: everything is in one.
describe("admin calls with progress against whizbangd", () => {
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
});
