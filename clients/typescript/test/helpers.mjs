// Test servers: a real whizbangd on port 0 (as tests/e2e_util.c starts
// them), and a fake server that answers with frames a test scripts.
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, openSync, closeSync, existsSync, copyFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import * as net from "node:net";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { pb } from "../dist/index.js";

const here = dirname(fileURLToPath(import.meta.url));
export const repoRoot = join(here, "..", "..", "..");

/** The whizbangd to test against: $WHIZBANGD, else the build tree's. */
export function whizbangdPath() {
  const p = process.env.WHIZBANGD ?? join(repoRoot, "build", "server", "whizbangd");
  if (!existsSync(p)) throw new Error(`no whizbangd at ${p}: build it (ninja -C build) or set WHIZBANGD`);
  return p;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Starts whizbangd on 127.0.0.1:0 with a fresh data directory and the
 * admin role for anonymous connections; resolves once its port file is
 * written. stop() sends SIGTERM, waits (killing it after 10 s), keeps the
 * server's log in $WB_KEEP_SERVER_LOGS when that is set (for
 * tests/secret-scan.sh, as tests/e2e_util.c does) and removes the
 * directory. kill(signal) only ends the process; restart() then starts a
 * new whizbangd on the same port and data directory (stop() that one). */
export async function startServer(extraArgs = [], reuse = null) {
  const dir = reuse?.dir ?? mkdtempSync(join(tmpdir(), "wb-ts-"));
  const portFile = join(dir, "port");
  rmSync(portFile, { force: true });
  const log = openSync(join(dir, "server.log"), "a");
  const child = spawn(
    whizbangdPath(),
    [
      "--listen", `127.0.0.1:${reuse?.port ?? 0}`,
      "--port-file", portFile,
      "--data-dir", join(dir, "data"),
      "--anonymous-role=admin",
      "--metrics-listen", "off",
      ...extraArgs,
    ],
    { stdio: ["ignore", log, log] },
  );
  closeSync(log);
  let exited = null;
  const exit = new Promise((resolve) => child.once("exit", (code, sig) => resolve((exited = { code, sig }))));
  const tail = () => {
    try {
      return readFileSync(join(dir, "server.log"), "utf8").split("\n").slice(-30).join("\n");
    } catch {
      return "";
    }
  };
  const deadline = Date.now() + 15000;
  let port = 0;
  while (port === 0) {
    if (exited !== null) throw new Error(`whizbangd exited (${exited.code ?? exited.sig}) before listening:\n${tail()}`);
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`whizbangd wrote no port file within 15 s:\n${tail()}`);
    }
    try {
      const text = readFileSync(portFile, "utf8").trim();
      if (text !== "") port = Number(text.split(":").pop());
    } catch {
      await sleep(20);
    }
  }
  return {
    port,
    dir,
    dataDir: join(dir, "data"),
    url: `whizbang://127.0.0.1:${port}`,
    log: tail,
    async kill(signal = "SIGKILL") {
      if (exited === null) child.kill(signal);
      return exit;
    },
    restart() {
      return startServer(extraArgs, { dir, port });
    },
    async stop() {
      if (exited === null) {
        child.kill("SIGTERM");
        const killer = setTimeout(() => child.kill("SIGKILL"), 10000);
        await exit;
        clearTimeout(killer);
      }
      const keep = process.env.WB_KEEP_SERVER_LOGS;
      if (keep) copyFileSync(join(dir, "server.log"), join(keep, `ts-${process.pid}-${port}.log`));
      rmSync(dir, { recursive: true, force: true });
      return exited;
    },
  };
}

/** A fake whizbangd: for each frame a client sends, decodes the Request and
 * calls onRequest(req, reply, raw); reply(responseInit, tail) sends a
 * Response (with tail's bytes after it: unknown fields), raw.replyRaw(bytes)
 * sends bytes as they are. Hello is answered by default.
 * With WB_TS_FAKE_CORRUPT=1 in the environment, every answer that is not
 * to a Hello has its payload's first byte replaced with 0xff: the negative
 * control, under which the tests that expect success must fail. */
export async function fakeServer(onRequest) {
  const corrupt = process.env.WB_TS_FAKE_CORRUPT === "1";
  const sockets = new Set();
  const server = net.createServer((sock) => {
    sockets.add(sock);
    sock.on("close", () => sockets.delete(sock));
    sock.on("error", () => {});
    let buf = Buffer.alloc(0);
    const encode = (init) => Buffer.from(toBinary(pb.ResponseSchema, create(pb.ResponseSchema, init)));
    const frame = (payload) => {
      const h = Buffer.alloc(4);
      h.writeUInt32BE(payload.length);
      return Buffer.concat([h, payload]);
    };
    sock.on("data", (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
        const len = buf.readUInt32BE(0);
        const req = fromBinary(pb.RequestSchema, buf.subarray(4, 4 + len));
        buf = buf.subarray(4 + len);
        const isHello = req.body.case === "hello";
        const replyRaw = (bytes) => sock.write(bytes);
        const reply = (init, unknownTail = Buffer.alloc(0)) => {
          const payload = Buffer.concat([encode(init), unknownTail]);
          if (corrupt && !isHello && payload.length > 0) payload[0] = 0xff;
          sock.write(frame(payload));
        };
        if (isHello && onRequest.hello === undefined) {
          reply({ id: req.id, body: { case: "hello", value: { protocolVersion: 1, maxFrame: 4194304, maxReadCount: 1000 } } });
          continue;
        }
        onRequest(req, reply, { replyRaw, frame, encode, sock });
      }
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  return {
    url: `whizbang://127.0.0.1:${port}`,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
