// TLS against a real whizbangd with certificates the CLI makes (whizbang
// certs): the server verified against the URL's CA and name, ALPN
// whizbang/1, a certificate that does not verify refused with the reason,
// and EXTERNAL (the client certificate's user).
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, ConnectionError, WhizbangError, ErrorCode } from "../dist/index.js";
import { startServer, repoRoot } from "./helpers.mjs";

// Node 18 runs top-level hooks only around suites: everything is in one.
describe("TLS against whizbangd", () => {
  const cli = process.env.WHIZBANG_CLI ?? join(repoRoot, "build", "client", "whizbang");
  const skip = existsSync(cli) ? false : `no whizbang CLI at ${cli} to make certificates`;

  let dir;
  let server;
  let admin;

  function certs(...args) {
    execFileSync(cli, ["certs", ...args], { stdio: ["ignore", "ignore", "inherit"] });
  }

  before(async () => {
    if (skip) return;
    dir = mkdtempSync(join(tmpdir(), "wb-ts-tls-"));
    for (const d of ["ca", "other-ca", "node", "client"]) mkdirSync(join(dir, d));
    certs("create-ca", "--out-dir", join(dir, "ca"));
    certs("create-ca", "--out-dir", join(dir, "other-ca"));
    certs("create-node", "--ca-dir", join(dir, "ca"), "--out-dir", join(dir, "node"), "--dns", "localhost", "--ip", "127.0.0.1");
    certs("create-client", "--ca-dir", join(dir, "ca"), "--out-dir", join(dir, "client"), "--user", "carol");
    certs("create-client", "--ca-dir", join(dir, "ca"), "--out-dir", join(dir, "client"), "--user", "dave");
    server = await startServer([
      "--tls-cert-file", join(dir, "node", "node.crt"),
      "--tls-key-file", join(dir, "node", "node.key"),
      "--tls-ca-file", join(dir, "ca", "ca.crt"),
      "--tls-client-cert", "optional",
    ]);
    admin = await connect(server.url);
    await admin.putUser("carol", ["reader"]);
  });

  after(async () => {
    await admin?.close();
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const ca = () => join(dir, "ca", "ca.crt");

  it("TLS to an address the certificate carries", { skip }, async () => {
    const c = await connect(`whizbang://127.0.0.1:${server.port}?tlsCaFile=${ca()}`);
    await c.ping();
    const clients = await c.call("listClients", {});
    assert.ok(clients.clients.some((x) => x.self && x.tls), "the server does not see this connection as TLS");
    await c.close();
  });

  it("TLS to a DNS name the certificate carries (and the name given apart)", { skip }, async () => {
    const c = await connect(`whizbang://localhost:${server.port}?tlsCaFile=${ca()}`);
    await c.ping();
    await c.close();
    const d = await connect(`whizbang://127.0.0.1:${server.port}?tlsCaFile=${ca()}&tlsServerName=localhost`);
    await d.close();
  });

  it("a name the certificate does not carry is refused, naming why", { skip }, async () => {
    await assert.rejects(
      connect(`whizbang://127.0.0.1:${server.port}?tlsCaFile=${ca()}&tlsServerName=db9.example.com`),
      (e) => e instanceof ConnectionError && /certificate does not verify/.test(e.message) && /db9\.example\.com/.test(e.message),
    );
  });

  it("a CA that did not sign the server's certificate is refused", { skip }, async () => {
    await assert.rejects(
      connect(`whizbang://127.0.0.1:${server.port}?tlsCaFile=${join(dir, "other-ca", "ca.crt")}`),
      (e) => e instanceof ConnectionError && /certificate does not verify/.test(e.message),
    );
  });

  it("TLS without a CA to verify with is refused before connecting", { skip }, async () => {
    await assert.rejects(connect(`whizbang://127.0.0.1:${server.port}?tls=true`), TypeError);
  });

  it("EXTERNAL: the client certificate's user", { skip }, async () => {
    const cl = join(dir, "client");
    const c = await connect(
      `whizbang://127.0.0.1:${server.port}?tlsCaFile=${ca()}&tlsCertFile=${join(cl, "client-carol.crt")}` +
        `&tlsKeyFile=${join(cl, "client-carol.key")}&authMechanism=EXTERNAL`,
    );
    assert.equal(c.user, "carol");
    assert.deepEqual(c.roles, ["reader"]);
    await c.close();
    // A user the server does not have fails like any login.
    await assert.rejects(
      connect(
        `whizbang://127.0.0.1:${server.port}?tlsCaFile=${ca()}&tlsCertFile=${join(cl, "client-dave.crt")}` +
          `&tlsKeyFile=${join(cl, "client-dave.key")}&authMechanism=EXTERNAL`,
      ),
      (e) => e instanceof WhizbangError && e.code === ErrorCode.UNAUTHENTICATED,
    );
  });
});
