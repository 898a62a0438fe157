// Hostile and odd answers from a fake server: each ends in a result or an
// error, never a hang or a crash. Under WB_TS_FAKE_CORRUPT=1 the fake server
// corrupts every answer that should succeed, and this file must fail (the
// negative control meson registers with should_fail).
import { test } from "node:test";
import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import { connect, ConnectionError, WhizbangError, TimeoutError, ErrorCode, FrameTooLargeError, pb } from "../dist/index.js";
import { fakeServer } from "./helpers.mjs";

const T = { timeout: 10000 };

async function withFake(handler, fn, opts = {}) {
  const fake = await fakeServer(handler);
  const c = await connect(fake.url, { timeoutMs: 5000, ...opts });
  try {
    await fn(c);
  } finally {
    await c.close();
    await fake.close();
  }
}

const pong = (req) => ({ id: req.id, body: { case: "pong", value: { nonce: req.body.value.nonce } } });

test("a plain answer (the control: fails when the fake server corrupts it)", T, async () => {
  await withFake((req, reply) => reply(pong(req)), async (c) => {
    assert.equal(typeof (await c.ping()), "number");
  });
});

test("unknown fields in an answer are skipped", T, async () => {
  // Field 99 (varint 1) and field 100 (4 bytes), neither in the .proto.
  const tail = Buffer.from([0x98, 0x06, 0x01, 0xa2, 0x06, 0x04, 1, 2, 3, 4]);
  await withFake((req, reply) => reply(pong(req), tail), async (c) => {
    await c.ping();
  });
});

test("a keepalive (id 0, pong) before an answer is skipped", T, async () => {
  await withFake(
    (req, reply, raw) => {
      raw.replyRaw(raw.frame(raw.encode({ id: 0n, body: { case: "pong", value: {} } })));
      reply(pong(req));
    },
    async (c) => {
      await c.ping();
      assert.equal(c.broken, null);
    },
  );
});

test("answers out of order reach their own calls", T, async () => {
  let held = null;
  await withFake(
    (req, reply) => {
      if (held === null) {
        held = req;
        return;
      }
      reply({ id: req.id, body: { case: "streamInfo", value: { stream: req.body.value.stream, lastVersion: 2n } } });
      reply({ id: held.id, body: { case: "streamInfo", value: { stream: held.body.value.stream, lastVersion: 1n } } });
    },
    async (c) => {
      const [a, b] = await Promise.all([c.streamInfo("a"), c.streamInfo("b")]);
      assert.equal(a.stream, "a");
      assert.equal(a.lastVersion, 1n);
      assert.equal(b.stream, "b");
      assert.equal(b.lastVersion, 2n);
    },
  );
});

test("a truncated frame followed by a close fails the call", T, async () => {
  await withFake(
    (req, reply, raw) => {
      raw.replyRaw(Buffer.from([0, 0, 0, 100, 8, 1, 2, 3]));
      raw.sock.end();
    },
    async (c) => {
      await assert.rejects(c.ping(), ConnectionError);
      await assert.rejects(c.ping(), ConnectionError);
    },
  );
});

test("a truncated frame that never finishes ends in the call's timeout", T, async () => {
  await withFake(
    (req, reply, raw) => raw.replyRaw(Buffer.from([0, 0, 0, 100, 8, 1])),
    async (c) => {
      await assert.rejects(c.ping({ timeoutMs: 200 }), (e) => e instanceof TimeoutError && e.code === undefined);
    },
  );
});

test("an oversized frame breaks the connection before its payload is read", T, async () => {
  await withFake(
    (req, reply, raw) => raw.replyRaw(Buffer.from([0x7f, 0xff, 0xff, 0xff, 8])),
    async (c) => {
      await assert.rejects(c.ping(), (e) => e instanceof ConnectionError && e.cause instanceof FrameTooLargeError);
      await assert.rejects(c.ping(), ConnectionError);
    },
  );
});

test("a frame above the client's maxResponse is refused", T, async () => {
  await withFake(
    (req, reply) => reply({ id: req.id, body: { case: "pong", value: { nonce: req.body.value.nonce } } }, Buffer.alloc(2000)),
    async (c) => {
      await assert.rejects(c.ping(), (e) => e instanceof ConnectionError && /more than this client's limit of 1024/.test(e.message));
    },
    { maxResponse: 1024 },
  );
});

test("an id-0 error fails every pending call with it, then the connection", T, async () => {
  let n = 0;
  await withFake(
    (req, reply) => {
      if (++n === 2)
        reply({ id: 0n, error: { code: ErrorCode.BAD_REQUEST, message: "the frame did not decode" } });
    },
    async (c) => {
      const calls = [c.ping(), c.ping()];
      for (const p of calls)
        await assert.rejects(p, (e) => e instanceof WhizbangError && e.code === ErrorCode.BAD_REQUEST && e.requestId === 0n);
      await assert.rejects(c.ping(), (e) => e instanceof ConnectionError && e.cause instanceof WhizbangError);
    },
  );
});

test("a response that does not decode breaks the connection", T, async () => {
  await withFake(
    (req, reply, raw) => raw.replyRaw(raw.frame(Buffer.from([0xff, 0xff, 0xff]))),
    async (c) => {
      await assert.rejects(c.ping(), (e) => e instanceof ConnectionError && /does not decode/.test(e.message));
    },
  );
});

test("an answer with another request's body is INTERNAL", T, async () => {
  await withFake(
    (req, reply) => reply({ id: req.id, body: { case: "stats", value: {} } }),
    async (c) => {
      await assert.rejects(c.ping(), (e) => e instanceof WhizbangError && e.code === ErrorCode.INTERNAL);
      assert.equal(c.broken, null);
    },
  );
});

test("errors carry their code, message and actual version; unknown codes have a name", T, async () => {
  let n = 0;
  await withFake(
    (req, reply) => {
      n++;
      if (n === 1)
        reply({ id: req.id, error: { code: ErrorCode.WRONG_EXPECTED_VERSION, message: "no stream", actualVersion: -1n } });
      else reply({ id: req.id, error: { code: 99, message: "from a newer server" } });
    },
    async (c) => {
      await assert.rejects(c.append("s", { type: "t" }, { expected: 3n }), (e) => {
        assert.ok(e instanceof WhizbangError);
        assert.equal(e.code, ErrorCode.WRONG_EXPECTED_VERSION);
        assert.equal(e.codeName, "WRONG_EXPECTED_VERSION");
        assert.equal(e.serverMessage, "no stream");
        assert.equal(e.actualVersion, -1n);
        return true;
      });
      await assert.rejects(c.ping(), (e) => e instanceof WhizbangError && e.code === 99 && e.codeName === "UNKNOWN_99");
    },
  );
});

test("an answer to a call that timed out is dropped", T, async () => {
  let first = null;
  await withFake(
    (req, reply) => {
      if (first === null) {
        first = req;
        return;
      }
      reply(pong(first));
      reply(pong(req));
    },
    async (c) => {
      await assert.rejects(c.ping({ timeoutMs: 50 }), (e) => e.name === "TimeoutError");
      await c.ping();
    },
  );
});

test("an aborted call rejects with the signal's reason; the connection stays", T, async () => {
  let held = [];
  await withFake(
    (req, reply) => {
      held.push(req);
      if (held.length === 2) for (const r of held) reply(pong(r));
    },
    async (c) => {
      const ac = new AbortController();
      const p = c.ping({ signal: ac.signal });
      ac.abort(new Error("changed my mind"));
      await assert.rejects(p, /changed my mind/);
      await c.ping();
    },
  );
});

test("a filtered page of $all with no event is not the end", T, async () => {
  const froms = [];
  const ev = { id: new Uint8Array(16), stream: "orders-1", version: 0n, position: 15000n, type: "Placed" };
  await withFake(
    (req, reply) => {
      froms.push(req.body.value.fromPosition);
      const value =
        froms.length === 1
          ? { events: [], nextPosition: 10001n, endOfLog: false, lastPosition: 20000n }
          : { events: [ev], nextPosition: 20001n, endOfLog: true, lastPosition: 20000n };
      reply({ id: req.id, body: { case: "readAll", value } });
    },
    async (c) => {
      const got = [];
      for await (const e of c.readAll({ streamPrefix: "orders-" })) got.push(e.position);
      assert.deepEqual(got, [15000n]);
      assert.deepEqual(froms, [0n, 10001n]);
    },
  );
});

test("a connection that hears nothing is taken for dead", T, async () => {
  await withFake(
    () => {},
    async (c) => {
      await assert.rejects(c.ping({ timeoutMs: 0 }), (e) => e instanceof ConnectionError && /taken for dead/.test(e.message));
    },
    { deadAfterMs: 300 },
  );
});

test("the server closing mid-pipeline fails every call, and none hangs", T, async () => {
  let n = 0;
  await withFake(
    (req, reply, raw) => {
      if (++n === 3) raw.sock.destroy();
    },
    async (c) => {
      const results = await Promise.allSettled([c.ping(), c.ping(), c.ping()]);
      for (const r of results) assert.ok(r.status === "rejected" && r.reason instanceof ConnectionError);
    },
  );
});


test("a server whose SCRAM signature does not verify is not trusted", T, async () => {
  let clientFirst = "";
  const handler = (req, reply) => {
    if (req.body.case === "hello") {
      clientFirst = Buffer.from(req.body.value.authData).toString();
      const nonce = /r=([^,]+)/.exec(clientFirst)[1];
      const serverFirst = `r=${nonce}srv,s=${Buffer.from("salt-of-16-bytes").toString("base64")},i=4096`;
      reply({ id: req.id, body: { case: "hello", value: { protocolVersion: 1, maxFrame: 4194304, authData: Buffer.from(serverFirst) } } });
    } else if (req.body.case === "authenticate") {
      const v = Buffer.alloc(32, 1).toString("base64");
      reply({ id: req.id, body: { case: "authenticate", value: { authData: Buffer.from(`v=${v}`), user: "alice", roles: ["admin"] } } });
    }
  };
  handler.hello = "scripted";
  const fake = await fakeServer(handler);
  try {
    await assert.rejects(
      connect(fake.url.replace("://", "://alice@"), { password: "pw", timeoutMs: 5000 }),
      (e) => e instanceof ConnectionError && /signature does not verify/.test(e.message),
    );
    assert.match(clientFirst, /^n,,n=alice,r=[A-Za-z0-9+/=]+$/);
  } finally {
    await fake.close();
  }
});

test("a server asking for too few SCRAM iterations is refused", T, async () => {
  const handler = (req, reply) => {
    const nonce = /r=([^,]+)/.exec(Buffer.from(req.body.value.authData).toString())[1];
    const serverFirst = `r=${nonce}srv,s=${Buffer.from("salt").toString("base64")},i=1`;
    reply({ id: req.id, body: { case: "hello", value: { protocolVersion: 1, maxFrame: 4194304, authData: Buffer.from(serverFirst) } } });
  };
  handler.hello = "scripted";
  const fake = await fakeServer(handler);
  try {
    await assert.rejects(
      connect(fake.url.replace("://", "://alice@"), { password: "pw", timeoutMs: 5000 }),
      (e) => e instanceof ConnectionError && /iteration count/.test(e.message),
    );
  } finally {
    await fake.close();
  }
});

// A subscription fed by the fake server: the Subscribe is answered, then
// push(sub, reply, raw) sends what the test scripts.
async function withSubscription(push, fn, opts = {}) {
  await withFake(
    (req, reply, raw) => {
      if (req.body.case === "subscribe") {
        reply({ id: req.id, body: { case: "subscribe", value: { subscription: 7n, start: 0n } } });
        push(req, reply, raw);
      } else if (req.body.case === "unsubscribe") {
        reply({ id: req.id, body: { case: "unsubscribe", value: {} } });
      }
    },
    async (c) => fn(await c.subscribe({ window: 16 }), c),
    opts,
  );
}

// An event pushed to subscription 7; with unknown, the event carries those
// unknown fields (set on the message: create() drops $unknown from an init).
const eventItem = (req, version, unknown = undefined) => {
  const event = create(pb.RecordedEventSchema, { id: new Uint8Array(16), stream: "s", version, position: version + 1n, type: "T" });
  if (unknown !== undefined) event.$unknown = unknown;
  return { id: req.id, body: { case: "subscriptionItem", value: { subscription: 7n, item: { case: "event", value: event } } } };
};

async function drain(sub) {
  const got = [];
  for await (const item of sub) got.push(item.kind === "event" ? item.event.version : item.kind);
  return got;
}

test("a subscription: unknown fields in a push, at the top and inside the event, are skipped", T, async () => {
  const unknown = [{ no: 99, wireType: 0, data: Uint8Array.of(1) }];
  await withSubscription(
    (req, reply) => {
      reply(eventItem(req, 0n), Buffer.from([0x98, 0x06, 0x01]));
      reply(eventItem(req, 1n, unknown));
      reply({ id: req.id, body: { case: "subscriptionItem", value: { subscription: 7n, item: { case: "caughtUp", value: true } } } });
    },
    async (sub) => {
      // The bytes the fake server sends do hold field 99 inside the event.
      const bytes = Buffer.from(toBinary(pb.ResponseSchema, create(pb.ResponseSchema, eventItem({ id: 1n }, 1n, unknown))));
      assert.ok(bytes.includes(Buffer.from([0x98, 0x06, 0x01])));
      const got = [];
      for await (const item of sub) {
        if (item.kind === "caughtUp") break;
        got.push(item.event.version);
      }
      assert.deepEqual(got, [0n, 1n]);
    },
  );
});

test("a subscription: a truncated frame and a close end the iteration with a ConnectionError", T, async () => {
  await withSubscription(
    (req, reply, raw) => {
      reply(eventItem(req, 0n));
      raw.replyRaw(Buffer.from([0, 0, 0, 50, 8, 1, 2]));
      raw.sock.end();
    },
    async (sub) => {
      const got = [];
      await assert.rejects(
        (async () => {
          for await (const item of sub) got.push(item.event.version);
        })(),
        ConnectionError,
      );
      assert.deepEqual(got, [0n]);
    },
  );
});

test("a subscription: an oversized frame ends the iteration with a ConnectionError", T, async () => {
  await withSubscription(
    (req, reply, raw) => {
      reply(eventItem(req, 0n));
      raw.replyRaw(Buffer.from([0xff, 0xff, 0xff, 0xff]));
    },
    async (sub) => {
      await assert.rejects(drain(sub), (e) => e instanceof ConnectionError && e.cause instanceof FrameTooLargeError);
    },
  );
});

test("a subscription: an error pushed with its id ends it with that error's code", T, async () => {
  await withSubscription(
    (req, reply) => {
      reply(eventItem(req, 0n));
      reply({ id: req.id, error: { code: ErrorCode.STREAM_DELETED, message: "gone" } });
    },
    async (sub) => {
      await assert.rejects(drain(sub), (e) => e instanceof WhizbangError && e.code === ErrorCode.STREAM_DELETED && e.serverMessage === "gone");
    },
  );
});

test("an answer whose body this client does not know (a newer server's) is INTERNAL; the connection stays", T, async () => {
  // Response field 900, length-delimited: in no version of the .proto.
  await withFake(
    (req, reply, raw) => {
      if (req.body.case === "getStreamInfo") raw.replyRaw(raw.frame(Buffer.concat([raw.encode({ id: req.id }), Buffer.from([0xa2, 0x38, 0x02, 0x08, 0x01])])));
      else reply(pong(req));
    },
    async (c) => {
      await assert.rejects(c.streamInfo("s"), (e) => e instanceof WhizbangError && e.code === ErrorCode.INTERNAL && /holds nothing/.test(e.message));
      await c.ping();
    },
  );
});

test("a page that does not move on ends the read with INTERNAL instead of looping", T, async () => {
  let pages = 0;
  await withFake(
    (req, reply) => {
      pages++;
      const k = req.body.case;
      const value =
        k === "readAll"
          ? { events: [], nextPosition: req.body.value.fromPosition, endOfLog: false }
          : k === "readStream"
            ? { events: [], nextVersion: req.body.value.fromVersion, endOfStream: false }
            : k === "queryEntities"
              ? { entities: [], nextAfter: req.body.value.after, end: false }
              : { entries: [], nextSequence: req.body.value.fromSequence, end: false };
      reply({ id: req.id, body: { case: k === "queryEntities" ? "query" : k, value } });
    },
    async (c) => {
      for (const it of [c.readAll(), c.readStream("s"), c.query("T"), c.readLedger()])
        await assert.rejects(drain(it), (e) => e instanceof WhizbangError && e.code === ErrorCode.INTERNAL && e.requestId === -1n);
      assert.equal(pages, 4);
    },
  );
});

test("an empty stream page that moved on is not the end", T, async () => {
  const froms = [];
  await withFake(
    (req, reply) => {
      froms.push(req.body.value.fromVersion);
      const value =
        froms.length === 1
          ? { events: [], nextVersion: 5n, endOfStream: false, lastVersion: 5n }
          : { events: [{ id: new Uint8Array(16), stream: "s", version: 5n, position: 9n, type: "T" }], nextVersion: 6n, endOfStream: true, lastVersion: 5n };
      reply({ id: req.id, body: { case: "readStream", value } });
    },
    async (c) => {
      const got = [];
      for await (const e of c.readStream("s")) got.push(e.version);
      assert.deepEqual(got, [5n]);
      assert.deepEqual(froms, [0n, 5n]);
    },
  );
});

test("with reconnect, a server that keeps sending oversized frames fails the call after its retries", T, async () => {
  let hellos = 0;
  const handler = (req, reply, raw) => {
    if (req.body.case === "hello") {
      hellos++;
      reply({ id: req.id, body: { case: "hello", value: { protocolVersion: 1, maxFrame: 4194304 } } });
    } else {
      raw.replyRaw(Buffer.from([0xff, 0xff, 0xff, 0xff]));
    }
  };
  handler.hello = "scripted";
  const fake = await fakeServer(handler);
  const c = await connect(fake.url, { timeoutMs: 5000, reconnect: { initialDelayMs: 5, maxDelayMs: 20, retries: 3 } });
  try {
    await assert.rejects(c.ping(), (e) => e instanceof ConnectionError && e.cause instanceof FrameTooLargeError);
    // The first connection and one per retry.
    assert.equal(hellos, 4);
  } finally {
    await c.close();
    await fake.close();
  }
});

test("a server that never answers the Hello: connect() rejects with a TimeoutError", T, async () => {
  const handler = () => {};
  handler.hello = "scripted";
  const fake = await fakeServer(handler);
  try {
    await assert.rejects(
      connect(fake.url, { timeoutMs: 200 }),
      (e) => e instanceof TimeoutError && e.code === undefined && /took more than 200 ms/.test(e.message),
    );
  } finally {
    await fake.close();
  }
});
