// @ts-check
// An order projection: workers follow $all, do slow work in parallel, and
// the read model still comes out as if one worker had done it all in order.
//
// The events (data as JSON; the amount an int, in cents):
//
//   OrderPlaced   {"order": "o-17", "customer": "c-3", "amount": 12000}
//   OrderShipped  {"order": "o-17", "customer": "c-3"}
//
// The read model, two entity types:
//
//   Order     {order, customer, amount, status: "placed" | "shipped"}
//   Customer  {customer, total (sum of amounts), orders (count),
//              last_order, gold_since, shipped, last_shipped}
//
// last_order is overwritten by every later order and gold_since names the
// order that first took the customer's total to 100000 or more (an
// `update ... where` whose clause reads the total the earlier orders left),
// so the result depends on the order the updates are applied in: applied
// out of order, they give another read model.
//
// How the order is kept while the work runs in parallel (docs/LEASES.md):
//
// 1. every worker follows $all (only these two event types) from the start;
//    the k-th event goes to worker k % N;
// 2. the worker takes the event's turn (Turns): it leases the next sequence
//    of the projection only after the worker of event k-1 leased its own, so
//    sequences follow the events' order. Leasing is quick (the server writes
//    nothing per lease), and the turn passes on as soon as the lease is
//    granted;
// 3. then the slow work (simulated: a random sleep of 1-6 ms, seeded per
//    event), in parallel with the other workers, while withLease() extends
//    the lease;
// 4. the commit of the work's operations, in whatever order the work ends.
//    The server applies commits strictly in sequence order once they are
//    contiguous (the watermark), so the read model sees event k's updates
//    after event k-1's.
//
// The turn is kept in this process (the workers are loops, each with its
// own connection and subscription, as separate processes would have).
// Workers on several machines would pass the turn through something they
// share, or let one follower lease in the events' order and hand the leases
// out.
//
// Run it by hand against a running server (the one of the README's
// five-minute start), from clients/typescript after `npm ci && npm run build`:
//
//   node examples/order-projection.mjs --url whizbang://127.0.0.1:7411 \
//       --generate 200 --workers 4 --until-caught-up
//   ../../build/client/whizbang query Customer     # or client.query("Customer")
//
// --generate N first appends N events (a seeded mix of both types); without
// --until-caught-up the workers keep following $all (append more
// OrderPlaced events and watch the read model follow; Ctrl-C stops). The
// projection starts at the beginning of $all each time it is run: run it
// once per server (or give new --order-type/--customer-type names), since
// running it twice would count every order twice.
//
// --lease-late shows the mistake this example avoids: each worker leases
// only once its work is done, so the sequences follow the order in which
// the work ended, not the events' order, and the read model differs from a
// sequential run's. tests/examples/check_example.py runs this example with
// 4 workers and with 1, compares the two read models byte for byte, and
// expects --lease-late to be caught.
//
// At the end (--until-caught-up) it waits until the watermark passes its
// last commit and prints one JSON line of figures.
import { parseArgs } from "node:util";
import { connect } from "@whizbang/client";

/** @typedef {import("@whizbang/client").Client} Client */
/** @typedef {import("@whizbang/client").pb.RecordedEvent} RecordedEvent */

const EVENT_TYPES = ["OrderPlaced", "OrderShipped"];
const GOLD_TOTAL = 100000;

/** A string literal of the text form (docs/QUERIES.md): quotes and
 * backslashes escaped; control characters are refused by the grammar, so
 * they are refused here first.
 * @param {unknown} s */
function lit(s) {
  if (typeof s !== "string" || s === "" || /[\u0000-\u001f]/.test(s)) throw new Error(`not a usable id: ${JSON.stringify(s)}`);
  return `"${s.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
}

/** The operations one event commits, in the text form.
 * @param {RecordedEvent} ev @param {string} orderT @param {string} customerT
 * @returns {string[]} */
function opsFor(ev, orderT, customerT) {
  const d = JSON.parse(new TextDecoder().decode(ev.data));
  const o = lit(d.order);
  const c = lit(d.customer);
  if (ev.type === "OrderPlaced") {
    const amount = d.amount;
    if (!Number.isSafeInteger(amount)) throw new Error(`amount ${JSON.stringify(amount)} is not an int`);
    return [
      `upsert ${orderT} ${o} {order: ${o}, customer: ${c}, amount: ${amount}, status: "placed"}`,
      `update ${customerT} where customer == ${c} ` +
        `set last_order = ${o}, inc total by ${amount}, inc orders by 1 ` +
        `create ${c} {customer: ${c}, total: ${amount}, orders: 1, last_order: ${o}}`,
      `update ${customerT} where customer == ${c} and total >= ${GOLD_TOTAL} ` +
        `and not exists(gold_since) set gold_since = ${o}`,
    ];
  }
  return [
    `update ${orderT} where order == ${o} set status = "shipped"`,
    `update ${customerT} where customer == ${c} inc shipped by 1, set last_shipped = ${o}`,
  ];
}

/** Whose turn it is to lease: event k leases only after event k-1's lease
 * was granted. */
class Turns {
  next = 0;
  /** @type {Map<number, () => void>} */
  waiting = new Map();
  /** @param {number} k @returns {Promise<void>} */
  wait(k) {
    if (this.next === k) return Promise.resolve();
    return new Promise((resolve) => this.waiting.set(k, resolve));
  }
  /** @param {number} k */
  passed(k) {
    if (this.next !== k) throw new Error(`turn ${k} passed while turn ${this.next} was due`);
    this.next = k + 1;
    const wake = this.waiting.get(this.next);
    this.waiting.delete(this.next);
    wake?.();
  }
}

/** A seeded generator of numbers in [0, 1) (mulberry32 over a string's hash).
 * @param {string} seed */
function seeded(seed) {
  let h = 2166136261;
  for (const ch of seed) h = Math.imul(h ^ ch.charCodeAt(0), 16777619);
  return () => {
    h = (h + 0x6d2b79f5) | 0;
    let t = Math.imul(h ^ (h >>> 15), 1 | h);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** @param {number} ms */
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const { values: a } = parseArgs({
  options: {
    url: { type: "string", default: "whizbang://127.0.0.1:7411" },
    workers: { type: "string", default: "4" },
    projection: { type: "string", default: "orders" },
    "order-type": { type: "string", default: "Order" },
    "customer-type": { type: "string", default: "Customer" },
    seed: { type: "string", default: "1" },
    generate: { type: "string", default: "0" },
    "until-caught-up": { type: "boolean", default: false },
    "lease-late": { type: "boolean", default: false },
  },
});
const url = a.url ?? "";
const workers = Number(a.workers);
const projection = a.projection ?? "orders";
const orderT = a["order-type"] ?? "Order";
const customerT = a["customer-type"] ?? "Customer";
const seed = a.seed ?? "1";
const untilCaughtUp = a["until-caught-up"] === true;
const leaseLate = a["lease-late"] === true;
if (!Number.isInteger(workers) || workers < 1) throw new Error("--workers must be at least 1");

const figures = {
  events: 0,
  inFlight: 0,
  maxInFlight: 0,
  highestCommitted: 0n,
  firstSequence: 0n,
  outOfOrderCommits: 0,
  perWorker: new Array(workers).fill(0),
};
const turns = new Turns();

/** Handles the k-th event: lease in turn, work, commit.
 * @param {Client} c @param {number} k @param {RecordedEvent} ev */
async function handle(c, k, ev) {
  const ops = opsFor(ev, orderT, customerT);
  // The slow part's length, the same whichever worker does it.
  const delay = 1 + 5 * seeded(`${seed}/${ev.position}`)();
  const slowWork = async () => {
    figures.inFlight++;
    figures.maxInFlight = Math.max(figures.maxInFlight, figures.inFlight);
    try {
      await sleep(delay);
    } finally {
      figures.inFlight--;
    }
  };
  if (leaseLate) {
    // The mistake: the work first, the lease after it. Sequences then follow
    // the order the work ended in, not the events' order.
    await slowWork();
  } else {
    await turns.wait(k);
  }
  await c.withLease(
    projection,
    async ({ sequence }) => {
      if (!leaseLate) {
        turns.passed(k); // our sequence is granted: the next event may lease
        await slowWork(); // in parallel with the other workers
      }
      if (figures.firstSequence === 0n || sequence < figures.firstSequence) figures.firstSequence = sequence;
      if (sequence < figures.highestCommitted) figures.outOfOrderCommits++; // the server holds it until it is due
      if (sequence > figures.highestCommitted) figures.highestCommitted = sequence;
      return ops; // withLease commits them under the lease
    },
    { operationId: `${ev.stream}@${ev.version}`, sourcePosition: ev.position, onDisconnect: "release" },
  );
  figures.events++;
}

/** One worker: its own connection and subscription to $all.
 * @param {number} index */
async function runWorker(index) {
  const c = await connect(url);
  try {
    const sub = await c.subscribe({ target: "all", from: "start", eventTypes: EVENT_TYPES });
    let k = -1;
    for await (const item of sub) {
      if (item.kind === "caughtUp") {
        if (untilCaughtUp) break; // break unsubscribes
        continue;
      }
      if (item.kind !== "event") continue;
      k++;
      if (k % workers !== index) continue; // another worker's event
      await handle(c, k, item.event);
      figures.perWorker[index]++;
    }
  } finally {
    await c.close();
  }
}

/** Appends n events to streams order-<id>: orders placed by a few customers,
 * some of them shipped later.
 * @param {number} n */
async function generate(n) {
  const rnd = seeded(seed);
  /** @type {[string, string][]} */
  const placed = [];
  const c = await connect(url);
  try {
    for (let i = 0; i < n; i++) {
      if (placed.length > 0 && rnd() < 0.3) {
        const [order, customer] = placed.splice(Math.floor(rnd() * placed.length), 1)[0] ?? ["", ""];
        await c.append(`order-${order}`, { type: "OrderShipped", data: JSON.stringify({ order, customer }) });
      } else {
        const order = `o-${i}`;
        const customer = `c-${Math.floor(rnd() * 12)}`;
        placed.push([order, customer]);
        const amount = 500 + Math.floor(rnd() * 24500);
        await c.append(`order-${order}`, { type: "OrderPlaced", data: JSON.stringify({ order, customer, amount }) });
      }
    }
  } finally {
    await c.close();
  }
}

/** The clauses above look customers and orders up by a field: index it
 * (CreateIndex takes a sequence of the ledger, before the workers start).
 * @param {[string, string][]} wanted */
async function ensureIndexes(wanted) {
  const c = await connect(url);
  try {
    for (const [type, field] of wanted) {
      const have = await c.call("listIndexes", { type });
      if (!have.indexes.some((ix) => ix.field === field)) await c.call("createIndex", { type, field });
    }
  } finally {
    await c.close();
  }
}

if (Number(a.generate) > 0) await generate(Number(a.generate));
await ensureIndexes([[orderT, "order"], [customerT, "customer"]]);
// One failing worker fails the run: the others may be waiting for its turn.
await Promise.all(Array.from({ length: workers }, (_, i) => runWorker(i))).catch((err) => {
  console.error(err);
  process.exit(1);
});
if (figures.events > 0) {
  const c = await connect(url);
  try {
    const w = await c.waitForWatermark(figures.highestCommitted, 30000);
    if (!w.reached) {
      console.error(`the watermark (${w.watermark}) did not reach sequence ${figures.highestCommitted} within 30 s`);
      process.exit(1);
    }
  } finally {
    await c.close();
  }
}
console.log(
  JSON.stringify({
    events: figures.events,
    workers,
    first_sequence: Number(figures.firstSequence),
    last_sequence: Number(figures.highestCommitted),
    max_in_flight: figures.maxInFlight,
    out_of_order_commits: figures.outOfOrderCommits,
    per_worker: figures.perWorker,
  }),
);
