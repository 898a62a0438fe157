// Appends per second through @whizbang/client over one connection with a
// fixed number of appends in flight (one 100-byte event each, UUIDv7 ids
// made here), and the C bench (whizbang-bench append) with the same load on
// the same server in the same run, alternating for --rounds rounds (the
// machine's other work moves both; the medians are compared; the C bench
// goes first in even rounds). Then the
// catch-up rate of a subscription through the client's iterator: every
// event of the run, from the start of $all to the caught-up signal.
//
// Usage: node bench/append.mjs [--events N] [--inflight P] [--size B]
//          [--streams S] [--rounds R] [--warmup W] [--server HOST:PORT] [--c-bench PATH]
// W appends (20000) go first, untimed, so that the rounds measure the client
// as a long-running process runs it (V8 compiles the hot path after its
// first thousands of calls); the C bench needs none.
// Without --server it starts the tree's whizbangd (or $WHIZBANGD) on
// 127.0.0.1:0 with a fresh data directory, and stops it at the end. Without
// a C bench (build/bench/whizbang-bench, or --c-bench) it prints only its
// own figures. Exits 1 when an append fails.
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { connect } from "../dist/index.js";
import { startServer, repoRoot } from "../test/helpers.mjs";

const { values: a } = parseArgs({
  options: {
    events: { type: "string", default: "200000" },
    inflight: { type: "string", default: "64" },
    size: { type: "string", default: "100" },
    streams: { type: "string", default: "16" },
    rounds: { type: "string", default: "3" },
    warmup: { type: "string", default: "20000" },
    server: { type: "string" },
    "c-bench": { type: "string", default: join(repoRoot, "build", "bench", "whizbang-bench") },
  },
});
const events = Number(a.events);
const inflight = Number(a.inflight);
const size = Number(a.size);
const streams = Number(a.streams);
const rounds = Number(a.rounds);

const server = a.server === undefined ? await startServer() : null;
const address = a.server ?? `127.0.0.1:${server.port}`;

async function tsRun(events) {
  const c = await connect(`whizbang://${address}`, { clientName: "bench-append.mjs" });
  const data = Buffer.alloc(size, 0x61);
  const lat = new Float64Array(events);
  let sent = 0;
  let done = 0;
  const t0 = performance.now();
  await new Promise((resolve, reject) => {
    const one = () => {
      if (sent >= events) return;
      const i = sent++;
      const start = performance.now();
      c.append(`ts-bench-${i % streams}`, { type: "BenchEvent", data }).then(() => {
        lat[i] = performance.now() - start;
        if (++done === events) resolve();
        else one();
      }, reject);
    };
    for (let k = 0; k < inflight; k++) one();
  });
  const secs = (performance.now() - t0) / 1000;
  await c.close();
  lat.sort();
  const q = (p) => lat[Math.min(events - 1, Math.floor(p * events))].toFixed(3);
  return { secs, eps: events / secs, p50: q(0.5), p99: q(0.99) };
}

function cRun() {
  const out = execFileSync(
    a["c-bench"],
    ["append", "--server", address, "--clients", "1", "--pipeline", String(inflight), "--events", String(events),
      "--size", String(size), "--streams", String(streams), "--no-baseline"],
    { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] },
  );
  const line = out.split("\n").find((l) => l.includes("throughput")) ?? "";
  const eps = Number(/([0-9.]+) events\/s/.exec(line)?.[1] ?? NaN);
  const lat = out.split("\n").find((l) => l.includes("latency")) ?? "";
  return { eps, p50: /p50 ([0-9.]+)/.exec(lat)?.[1] ?? "?", p99: /p99 ([0-9.]+)/.exec(lat)?.[1] ?? "?" };
}

/** Events per second from the start of $all to the caught-up signal. */
async function catchUp() {
  const c = await connect(`whizbang://${address}`, { clientName: "bench-append.mjs catch-up" });
  const t0 = performance.now();
  const sub = await c.subscribe({ from: "start", window: 1024 });
  let n = 0;
  for await (const item of sub) {
    if (item.kind === "caughtUp") break;
    n++;
  }
  const secs = (performance.now() - t0) / 1000;
  await c.close();
  return { n, eps: n / secs };
}

const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];

let status = 0;
try {
  const haveC = existsSync(a["c-bench"]);
  console.log(
    `whizbang append bench: ${events} events of ${size} B, 1 per append, ${streams} streams, ` +
      `one connection with ${inflight} in flight, server ${address}, ${rounds} rounds`,
  );
  if (Number(a.warmup) > 0) {
    const w = await tsRun(Number(a.warmup));
    console.log(`  warm-up, untimed: ${a.warmup} appends (${w.eps.toFixed(0)} events/s)`);
  }
  const ts = [];
  const c = [];
  for (let r = 1; r <= rounds; r++) {
    // The C bench goes first in even rounds: what the server does at a
    // moment (a checkpoint every 60 s or 256 MB of log) lands on both.
    const x = haveC && r % 2 === 0 ? cRun() : null;
    const t = await tsRun(events);
    ts.push(t.eps);
    let line = `  round ${r}: typescript ${t.eps.toFixed(0)} events/s (p50 ${t.p50} ms, p99 ${t.p99} ms)`;
    if (haveC) {
      const y = x ?? cRun();
      c.push(y.eps);
      line += `, c ${y.eps.toFixed(0)} events/s (p50 ${y.p50} ms, p99 ${y.p99} ms)`;
    }
    console.log(line);
  }
  console.log(`  typescript (@whizbang/client, node ${process.version}): median ${median(ts).toFixed(0)} events/s`);
  if (haveC) {
    console.log(`  c (whizbang-bench append --clients 1 --pipeline ${inflight}): median ${median(c).toFixed(0)} events/s`);
    console.log(`  typescript / c: ${(median(ts) / median(c)).toFixed(2)}`);
  } else {
    console.log(`  c: no whizbang-bench at ${a["c-bench"]} (ninja -C build bench/whizbang-bench)`);
  }
  const cu = await catchUp();
  console.log(`  catch-up through subscribe(): ${cu.n} events at ${cu.eps.toFixed(0)} events/s`);
} catch (err) {
  console.error(`bench failed: ${err.stack ?? err}`);
  status = 1;
} finally {
  await server?.stop();
}
process.exit(status);
