// A subscription as an async iterator (docs/SUBSCRIPTIONS.md).
//
// The server pushes at most the credits granted; this side grants the
// window at Subscribe and then, each time the code iterating has taken half
// of it, grants what was taken. So items are counted when the loop takes
// them, not when they arrive: a slow loop slows the server down instead of
// filling memory here, and at most `window` items are ever queued.
//
// Failure modes: an error pushed with the Subscribe's id (a hard-deleted
// stream, a consumer group deleted) or a broken connection ends the
// iteration by throwing it, after the items that came before it. A Credit
// the server refuses does the same.
import type { LedgerEntry, RecordedEvent, Response } from "./gen/whizbang_pb.js";
import { ErrorCode } from "./gen/whizbang_pb.js";
import type { PushSink } from "./connection.js";
import { serverError } from "./connection.js";
import { ConnectionError } from "./errors.js";

/** What a subscription yields, in the server's order. */
export type SubscriptionItem =
  | { kind: "event"; event: RecordedEvent; delivery: number }
  | { kind: "entry"; entry: LedgerEntry }
  /** Once: everything before it was catch-up, everything after is live. */
  | { kind: "caughtUp" };

/** What a Subscription needs of the client that made it. */
export interface SubscriptionHost {
  credit(subscription: bigint, n: number): Promise<unknown>;
  unsubscribe(subscription: bigint): Promise<unknown>;
  dropSink(requestId: bigint): void;
}

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
  private readonly queue: SubscriptionItem[] = [];
  private waiter: { resolve(r: IteratorResult<SubscriptionItem>): void; reject(e: unknown): void } | null = null;
  private failure: unknown = null;
  private done = false;
  private taken = 0;

  constructor(private readonly host: SubscriptionHost, private readonly window: number) {
    this.caughtUp = new Promise((resolve) => (this.resolveCaughtUp = resolve));
  }

  /** Called by the client once the Subscribe is answered. */
  started(requestId: bigint, subscription: bigint, start: bigint): void {
    this.requestId = requestId;
    this.subscription = subscription;
    this.start = start;
  }

  push(r: Response): void {
    if (this.done) return;
    if (r.error !== undefined && r.error.code !== ErrorCode.OK) {
      // The server ended the subscription: nothing more comes for its id.
      this.host.dropSink(this.requestId);
      this.fail(serverError(r));
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
        item = { kind: "caughtUp" };
        break;
      default:
        return;
    }
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
    this.failure = err;
    if (this.waiter !== null && this.queue.length === 0) {
      const w = this.waiter;
      this.waiter = null;
      this.done = true;
      w.reject(err);
    }
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
    if (this.failure === null) {
      try {
        await this.host.unsubscribe(this.subscription);
      } catch (err) {
        // A closed connection has ended the subscription already.
        if (!(err instanceof ConnectionError)) throw err;
      } finally {
        this.host.dropSink(this.requestId);
      }
    }
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  /** Counts an item the loop takes, and grants credits back. */
  private take(item: SubscriptionItem): SubscriptionItem {
    if (item.kind === "caughtUp") {
      this.isCaughtUp = true;
      this.resolveCaughtUp();
      return item;
    }
    this.taken++;
    if (this.taken >= Math.max(1, Math.floor(this.window / 2))) {
      const n = this.taken;
      this.taken = 0;
      this.host.credit(this.subscription, n).catch((err: Error) => this.fail(err));
    }
    return item;
  }
}
