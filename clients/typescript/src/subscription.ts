// A subscription, or a consumer group's member, as an async iterator
// (docs/SUBSCRIPTIONS.md).
//
// The server pushes at most the credits granted; this side grants the
// window at Subscribe and then, each time the code iterating has taken half
// of it, grants what was taken. So items are counted when the loop takes
// them, not when they arrive: a slow loop slows the server down instead of
// filling memory here, and at most `window` items are ever queued. The
// invariant: the server's credits + items queued + items taken and not yet
// granted back = window.
//
// Failure modes: an error pushed with the Subscribe's id (a hard-deleted
// stream, a consumer group deleted) or a broken connection ends the
// iteration by throwing it, after the items that came before it. A Credit
// the server refuses does the same. With a client that reconnects, a broken
// connection instead subscribes again on the new one, from just after the
// last item received or, before any, where it first started (a member
// joins again), with the credits the invariant
// leaves; the caught-up signal is not repeated. Only when that fails does
// the iteration throw.
import type { LedgerEntry, RecordedEvent, Response } from "./gen/whizbang_pb.js";
import { ErrorCode } from "./gen/whizbang_pb.js";
import type { Connection, PushSink } from "./connection.js";
import { serverError } from "./connection.js";
import { ConnectionError, connectionLost } from "./errors.js";

/** What a subscription yields, in the server's order. */
export type SubscriptionItem =
  | { kind: "event"; event: RecordedEvent; delivery: number }
  | { kind: "entry"; entry: LedgerEntry }
  /** Once: everything before it was catch-up, everything after is live. */
  | { kind: "caughtUp" };

/** Subscribes again after a reconnection: credits to grant, and the key
 * (position, version or sequence) to start at: just after the last item
 * received, or, when none was, where the first subscription started (a
 * subscription from the end must not skip what was committed while the
 * connection was down); null before any subscription was answered. */
export type Resume = (credits: number, next: bigint | null) => Promise<void>;

export class Subscription implements AsyncIterableIterator<SubscriptionItem>, PushSink {
  /** The server's name for it (in Credit and Unsubscribe). */
  subscription = 0n;
  /** The first position (version, sequence) it delivers. */
  start = 0n;
  /** The Subscribe request's id, which its pushes carry. */
  requestId = 0n;
  /** Whether the caught-up signal has been taken from the iterator. */
  isCaughtUp = false;
  /** Resolves when the iterator yields the caught-up signal. */
  readonly caughtUp: Promise<void>;

  private resolveCaughtUp!: () => void;
  private conn: Connection | null = null;
  private readonly queue: SubscriptionItem[] = [];
  private waiter: { resolve(r: IteratorResult<SubscriptionItem>): void; reject(e: unknown): void } | null = null;
  private failure: unknown = null;
  private done = false;
  private taken = 0;
  private last: bigint | null = null;
  private firstStart: bigint | null = null;
  private caughtUpPushed = false;
  private resuming = false;

  /** key gives an item's position (version, sequence) to resume after;
   * resume, when given, is how to subscribe again. */
  constructor(
    private readonly window: number,
    private readonly key: (item: SubscriptionItem) => bigint | null,
    private readonly resume?: Resume,
  ) {
    this.caughtUp = new Promise((resolve) => (this.resolveCaughtUp = resolve));
  }

  /** Called by the client once the Subscribe (JoinConsumer) is answered on
   * conn. */
  started(requestId: bigint, subscription: bigint, start: bigint, conn: Connection): void {
    this.requestId = requestId;
    this.subscription = subscription;
    this.firstStart ??= start;
    this.start = start;
    this.conn = conn;
  }

  push(r: Response): void {
    if (this.done) return;
    if (r.error !== undefined && r.error.code !== ErrorCode.OK) {
      // The server ended the subscription: nothing more comes for its id.
      this.conn?.dropSink(this.requestId);
      this.failNow(serverError(r));
      return;
    }
    if (r.body.case !== "subscriptionItem") return;
    const it = r.body.value;
    let item: SubscriptionItem;
    switch (it.item.case) {
      case "event":
        item = { kind: "event", event: it.item.value, delivery: it.delivery };
        break;
      case "entry":
        item = { kind: "entry", entry: it.item.value };
        break;
      case "caughtUp":
        if (this.caughtUpPushed) return;
        this.caughtUpPushed = true;
        item = { kind: "caughtUp" };
        break;
      default:
        return;
    }
    const k = this.key(item);
    if (k !== null) this.last = k;
    if (this.waiter !== null) {
      const w = this.waiter;
      this.waiter = null;
      w.resolve({ value: this.take(item), done: false });
    } else {
      this.queue.push(item);
    }
  }

  fail(err: Error): void {
    if (this.done || this.failure !== null) return;
    // The connection's failure and a Credit's that it failed both come here.
    if (this.resuming && connectionLost(err)) return;
    if (this.resume !== undefined && connectionLost(err) && !this.resuming) {
      this.resuming = true;
      this.conn = null;
      const credits = Math.max(0, this.window - this.queue.length - this.taken);
      this.resume(credits, this.last !== null ? this.last + 1n : this.firstStart).then(
        () => {
          this.resuming = false;
          if (this.done) void this.unsubscribe();
          else this.grant();
        },
        (e: Error) => {
          this.resuming = false;
          this.failNow(e);
        },
      );
      return;
    }
    this.failNow(err);
  }

  next(): Promise<IteratorResult<SubscriptionItem>> {
    const item = this.queue.shift();
    if (item !== undefined) return Promise.resolve({ value: this.take(item), done: false });
    if (this.failure !== null && !this.done) {
      this.done = true;
      return Promise.reject(this.failure);
    }
    if (this.done) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => (this.waiter = { resolve, reject }));
  }

  /** Ends the subscription (Unsubscribe); `break` in a for-await calls it. */
  async return(): Promise<IteratorResult<SubscriptionItem>> {
    await this.close();
    return { value: undefined, done: true };
  }

  /** Ends the subscription: nothing is pushed after the server's answer. */
  async close(): Promise<void> {
    if (this.done) return;
    this.done = true;
    this.queue.length = 0;
    if (this.waiter !== null) {
      this.waiter.resolve({ value: undefined, done: true });
      this.waiter = null;
    }
    // While resuming, the subscription being made is ended once made.
    if (this.failure === null && !this.resuming) await this.unsubscribe();
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  private async unsubscribe(): Promise<void> {
    const conn = this.conn;
    if (conn === null) return;
    try {
      await conn.call("unsubscribe", { subscription: this.subscription });
    } catch (err) {
      // A closed connection has ended the subscription already.
      if (!(err instanceof ConnectionError)) throw err;
    } finally {
      conn.dropSink(this.requestId);
    }
  }

  private failNow(err: unknown): void {
    if (this.done || this.failure !== null) return;
    this.failure = err;
    if (this.waiter !== null && this.queue.length === 0) {
      const w = this.waiter;
      this.waiter = null;
      this.done = true;
      w.reject(err);
    }
  }

  /** Counts an item the loop takes, and grants credits back. */
  private take(item: SubscriptionItem): SubscriptionItem {
    if (item.kind === "caughtUp") {
      this.isCaughtUp = true;
      this.resolveCaughtUp();
      return item;
    }
    this.taken++;
    this.grant();
    return item;
  }

  /** Grants what was taken once it is half the window (not while the
   * subscription is being made again: the new one is granted what is
   * due when it is made). */
  private grant(): void {
    if (this.resuming || this.conn === null || this.taken < Math.max(1, Math.floor(this.window / 2))) return;
    const n = this.taken;
    this.taken = 0;
    this.conn.call("credit", { subscription: this.subscription, n }).catch((err: Error) => this.fail(err));
  }
}
