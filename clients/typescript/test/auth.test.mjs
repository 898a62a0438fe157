// Authentication against a real whizbangd: an API token, a password
// (SCRAM-SHA-256, the server's signature checked), the Unix socket, and a
// host list that skips a host that does not answer.
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import * as net from "node:net";
import { join } from "node:path";
import { connect, WhizbangError, ErrorCode, ConnectionError } from "../dist/index.js";
import { startServer } from "./helpers.mjs";

// Node 18 runs top-level hooks only around suites: everything is in one.
describe("authentication against whizbangd", () => {
  let server;
  let admin;

  before(async () => {
    server = await startServer(["--scram-iterations", "4096"]);
    admin = await connect(server.url);
  });

  after(async () => {
    await admin?.close();
    await server?.stop();
  });

  it("an API token: the connection acts as token:ID with the token's role", async () => {
    const t = await admin.createToken("reader", { description: "ts client test" });
    assert.match(t.token, /^wbt_/);
    const c = await connect(server.url, { token: t.token });
    try {
      assert.equal(c.user, `token:${t.id}`);
      assert.deepEqual(c.roles, ["reader"]);
      await assert.rejects(c.append("s", { type: "T" }), (e) => e instanceof WhizbangError && e.code === ErrorCode.PERMISSION_DENIED);
    } finally {
      await c.close();
    }
    await assert.rejects(
      connect(server.url, { token: "wbt_AAAAAAAAAAAAAAAA_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB" }),
      (e) => e instanceof WhizbangError && e.code === ErrorCode.UNAUTHENTICATED && e.serverMessage === "authentication failed",
    );
  });

  it("a password: SCRAM-SHA-256 logs in, a wrong one is refused", async () => {
    await admin.putUser("alice", ["writer"], { password: "correct horse", iterations: 4096 });
    const url = `whizbang://alice@127.0.0.1:${server.port}`;
    const c = await connect(url, { password: "correct horse" });
    try {
      assert.equal(c.user, "alice");
      assert.deepEqual(c.roles, ["writer"]);
      await c.append("alice-stream", { type: "T", data: "x" });
    } finally {
      await c.close();
    }
    await assert.rejects(
      connect(url, { password: "wrong" }),
      (e) => e instanceof WhizbangError && e.code === ErrorCode.UNAUTHENTICATED,
    );
    // A user without a password is refused before connecting, and leaves no
    // timer behind (one would keep the process alive for the connect timeout).
    const timers = () => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
    const before = timers();
    await assert.rejects(connect(url), TypeError);
    assert.equal(timers(), before);
  });

  it("a user name with ',' and '=' is escaped as SCRAM says", async () => {
    await admin.putUser("a,b=c", ["reader"], { password: "pw", iterations: 4096 });
    const c = await connect(`whizbang://a%2Cb%3Dc@127.0.0.1:${server.port}`, { password: "pw" });
    assert.equal(c.user, "a,b=c");
    await c.close();
  });

  it("the Unix socket: root and the server's user are the local administrator", async () => {
    const c = await connect(`whizbang+unix://${join(server.dataDir, "whizbangd.sock")}`);
    try {
      assert.match(c.user, /^uid:\d+$/);
      assert.ok(c.roles.includes("admin"));
      await c.ping();
    } finally {
      await c.close();
    }
  });

  it("a host list: the first host that connects is used", async () => {
    // A port nobody listens on: bound, then closed.
    const dead = net.createServer();
    await new Promise((r) => dead.listen(0, "127.0.0.1", r));
    const deadPort = dead.address().port;
    await new Promise((r) => dead.close(r));
    const c = await connect([`whizbang://127.0.0.1:${deadPort}`, server.url]);
    await c.ping();
    await c.close();
    await assert.rejects(connect([`whizbang://127.0.0.1:${deadPort}`]), ConnectionError);
  });
});
