// Durable consumer groups against a real whizbangd: a member's iterator,
// ack, nack (retry, park, skip), the checkpoint, parked events replayed,
// and a deleted group ending its member's iteration.
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { connect, WhizbangError, ErrorCode } from "../dist/index.js";
import { startServer } from "./helpers.mjs";

// Node 18 runs top-level hooks only around suites: everything is in one.
describe("consumer groups against whizbangd", () => {
  let server;
  let c;

  before(async () => {
    server = await startServer();
    c = await connect(server.url);
  });

  after(async () => {
    await c?.close();
    await server?.stop();
  });

  /** The next n events the member is handed. */
  async function take(member, n) {
    const got = [];
    while (got.length < n) {
      const { value, done } = await member.next();
      assert.equal(done, false);
      if (value.kind === "event") got.push(value);
    }
    return got;
  }

  it("a member is handed events, and settling them moves the checkpoint", async () => {
    const info = await c.createConsumer("g1", { streamPrefix: "job-" });
    assert.equal(info.config.name, "g1");
    await c.append("other-1", { type: "T" });
    const appended = await c.append("job-1", Array.from({ length: 6 }, (_, i) => ({ type: "Job", data: `${i}` })));
    const member = await c.joinConsumer("g1", { window: 10 });
    const first = await take(member, 6);
    assert.deepEqual(first.map((x) => x.delivery), [1, 1, 1, 1, 1, 1]);
    assert.deepEqual(first.map((x) => Buffer.from(x.event.data).toString()), ["0", "1", "2", "3", "4", "5"]);
    const ids = first.map((x) => x.event.id);

    assert.equal(await c.ack("g1", ids.slice(0, 3)), first[2].event.position);
    await c.nack("g1", [ids[3]], "retry");
    const [again] = await take(member, 1);
    assert.equal(again.delivery, 2);
    assert.equal(again.event.position, first[3].event.position);
    await c.nack("g1", [ids[4]], "park", { reason: "poison" });
    await c.nack("g1", [ids[5]], "skip");
    assert.equal(await c.ack("g1", [ids[3]]), appended.lastPosition);

    const parked = [];
    for await (const p of c.listParked("g1")) parked.push(p);
    assert.deepEqual(parked.map((p) => [p.reason, p.deliveries, p.event.position]), [["poison", 1, first[4].event.position]]);
    const [g1] = (await c.listConsumers()).filter((x) => x.config.name === "g1");
    assert.equal(g1.parked, 1n);
    assert.equal(g1.members, 1n);

    assert.equal(await c.replayParked("g1"), 1n);
    const [replayed] = await take(member, 1);
    assert.equal(replayed.event.position, first[4].event.position);
    await c.ack("g1", [replayed.event.id]);

    // Deleting the group ends its member's iteration with NOT_FOUND.
    const rest = assert.rejects(
      (async () => {
        for await (const _ of member);
      })(),
      (e) => e instanceof WhizbangError && e.code === ErrorCode.NOT_FOUND,
    );
    await c.deleteConsumer("g1");
    await rest;
    assert.deepEqual((await c.listConsumers()).map((x) => x.config.name), []);
  });

  it("two members share the events between them", async () => {
    await c.createConsumer("g2", { target: "stream", stream: "work-1" });
    await c.append("work-1", Array.from({ length: 20 }, (_, i) => ({ type: "W", data: `${i}` })));
    const a = await c.joinConsumer("g2", { window: 4 });
    const b = await c.joinConsumer("g2", { window: 4 });
    const seen = new Set();
    const work = async (m) => {
      let n = 0;
      for await (const item of m) {
        if (item.kind !== "event") continue;
        seen.add(item.event.version);
        n++;
        await c.ack("g2", [item.event.id]);
        if (seen.size === 20) break;
      }
      return n;
    };
    const pa = work(a);
    const pb = work(b);
    // Whichever member sees the last event stops; the other is closed.
    await Promise.race([pa, pb]);
    await a.close();
    await b.close();
    const [na, nb] = await Promise.all([pa, pb]);
    assert.equal(seen.size, 20);
    assert.equal(na + nb, 20, "an event went to two members");
    assert.ok(na > 0 && nb > 0, `one member got all (${na}, ${nb})`);
  });

  it("listParked pages through every parked event, from a position", async () => {
    await c.createConsumer("g3", { target: "stream", stream: "park-1" });
    await c.append("park-1", Array.from({ length: 5 }, (_, i) => ({ type: "P", data: `${i}` })));
    const member = await c.joinConsumer("g3", { window: 10 });
    const got = await take(member, 5);
    for (const x of got) await c.nack("g3", [x.event.id], "park", { reason: `r${Buffer.from(x.event.data)}` });
    const all = [];
    for await (const p of c.listParked("g3", { pageSize: 2 })) all.push(p.reason);
    assert.deepEqual(all, ["r0", "r1", "r2", "r3", "r4"]);
    const later = [];
    for await (const p of c.listParked("g3", { fromPosition: got[3].event.position, pageSize: 1 })) later.push(p.reason);
    assert.deepEqual(later, ["r3", "r4"]);
    await member.close();
    await assert.rejects(c.listParked("no-such-group").next(), (e) => e instanceof WhizbangError && e.code === ErrorCode.NOT_FOUND);
  });
});
