// Catch-up delivery through @whizbang/client: appends N events, then times
// a subscription from the start of $all (or of one stream) until its
// caught-up signal, for --rounds rounds on one server, and prints the
// median in events per second, with readAll() paging over the same events
// beside it. With the C bench (build/bench/whizbang-bench), its own
// catch-up figure for the same number of events and window follows (on a
// server it starts itself: whizbang-bench subscribe has no --server).
//
// Usage: node bench/catchup.mjs [--events N] [--size B] [--streams S]
//          [--window W] [--rounds R] [--target all|stream]
//          [--server HOST:PORT] [--c-bench PATH]
// Without --server it starts the tree's whizbangd (or $WHIZBANGD) on
// 127.0.0.1:0 with a fresh data directory, and stops it at the end. With
// --server the events are appended to that server (under the prefix
// ts-catchup-<pid>-) and the subscription and the read are filtered to
// them; otherwise they read $all unfiltered. Exits 1
// when a round does not deliver exactly the events appended.
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { connect } from "../dist/index.js";
import { startServer, repoRoot, whizbangdPath } from "../test/helpers.mjs";

const { values: a } = parseArgs({
  options: {
    events: { type: "string", default: "200000" },
    size: { type: "string", default: "100" },
    streams: { type: "string", default: "16" },
    window: { type: "string", default: "1024" },
    rounds: { type: "string", default: "3" },
    target: { type: "string", default: "all" },
    server: { type: "string" },
    "c-bench": { type: "string", default: join(repoRoot, "build", "bench", "whizbang-bench") },
  },
});
const events = Number(a.events);
const size = Number(a.size);
const streams = a.target === "stream" ? 1 : Number(a.streams);
const window = Number(a.window);
const rounds = Number(a.rounds);
if (a.target !== "all" && a.target !== "stream") throw new Error("--target is all or stream");

const server = a.server === undefined ? await startServer() : null;
const address = a.server ?? `127.0.0.1:${server.port}`;
const prefix = a.server === undefined ? "ts-catchup-" : `ts-catchup-${process.pid}-`;
// On a server of its own every event is the bench's: $all unfiltered.
const filter = a.server === undefined ? "" : prefix;

/** Appends the events, 100 to an append, 16 appends in flight (the load
 * is not what is measured). */
async function load(c) {
  const data = Buffer.alloc(size, 0x61);
  const batch = 100;
  let next = 0;
  const t0 = performance.now();
  const worker = async () => {
    while (next < events) {
      const n = Math.min(batch, events - next);
      const first = next;
      next += n;
      await c.append(
        `${prefix}${(first / batch) % streams}`,
        Array.from({ length: n }, () => ({ type: "BenchEvent", data })),
      );
    }
  };
  await Promise.all(Array.from({ length: 16 }, worker));
  return events / ((performance.now() - t0) / 1000);
}

/** Seconds from subscribe() to the caught-up signal, and events seen. */
async function catchUp(c) {
  const t0 = performance.now();
  const sub =
    a.target === "stream"
      ? await c.subscribe({ target: "stream", stream: `${prefix}0`, window })
      : await c.subscribe({ streamPrefix: filter, window });
  let n = 0;
  let bytes = 0;
  for await (const item of sub) {
    if (item.kind === "caughtUp") break;
    n++;
    bytes += item.event.data.length;
  }
  return { n, bytes, secs: (performance.now() - t0) / 1000 };
}

/** Seconds to page through the same events with readAll() / readStream(). */
async function readThrough(c) {
  const t0 = performance.now();
  let n = 0;
  const it = a.target === "stream" ? c.readStream(`${prefix}0`) : c.readAll({ streamPrefix: filter });
  for await (const _ of it) n++;
  return { n, secs: (performance.now() - t0) / 1000 };
}

function cRun() {
  const out = execFileSync(
    a["c-bench"],
    ["subscribe", "--events", String(events), "--size", String(size), "--subscribers", "1",
      "--window", String(window), "--rounds", "1", "--whizbangd", whizbangdPath()],
    { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] },
  );
  const line = out.split("\n").find((l) => /catch-up, 1 subscriber /.test(l)) ?? "";
  return Number(/([0-9.]+) events\/s/.exec(line)?.[1] ?? NaN);
}

const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];

let status = 0;
try {
  const c = await connect(`whizbang://${address}`, { clientName: "bench-catchup.mjs", timeoutMs: 0 });
  const what = a.target === "stream" ? "one stream" : filter === "" ? `$all (${streams} streams)` : `$all filtered to ${streams} streams`;
  console.log(
    `whizbang catch-up bench: ${events} events of ${size} B in ${what}, credit window ${window}, ` +
      `server ${address}, ${rounds} rounds, node ${process.version}`,
  );
  const loaded = await load(c);
  console.log(`  appended at ${loaded.toFixed(0)} events/s (100 a request, 16 in flight)`);
  const subs = [];
  const reads = [];
  for (let r = 1; r <= rounds; r++) {
    const s = await catchUp(c);
    const p = await readThrough(c);
    if (s.n !== events || p.n !== events) {
      console.error(`  round ${r}: subscribe delivered ${s.n} events and the read ${p.n}, not ${events}`);
      status = 1;
    }
    subs.push(s.n / s.secs);
    reads.push(p.n / p.secs);
    console.log(
      `  round ${r}: subscribe() ${(s.n / s.secs).toFixed(0)} events/s (${(s.bytes / s.secs / 1e6).toFixed(1)} MB/s of data), ` +
        `${a.target === "stream" ? "readStream" : "readAll"}() ${(p.n / p.secs).toFixed(0)} events/s`,
    );
  }
  await c.close();
  console.log(`  typescript subscribe() to caught-up: median ${median(subs).toFixed(0)} events/s`);
  console.log(`  typescript ${a.target === "stream" ? "readStream" : "readAll"}() paging: median ${median(reads).toFixed(0)} events/s`);
  if (existsSync(a["c-bench"])) {
    const x = cRun();
    console.log(
      `  c (whizbang-bench subscribe --subscribers 1 --window ${window}, $all, its own server): ${x.toFixed(0)} events/s`,
    );
  } else {
    console.log(`  c: no whizbang-bench at ${a["c-bench"]} (ninja -C build bench/whizbang-bench)`);
  }
} catch (err) {
  console.error(`bench failed: ${err.stack ?? err}`);
  status = 1;
} finally {
  await server?.stop();
}
process.exit(status);
