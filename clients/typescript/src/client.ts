// The client: connect() and the calls of docs/PROTOCOL.md §4, each a thin
// typed layer over Connection.call(); reads and queries page by themselves,
// subscriptions are async iterators, and withLease() is the projection
// worker's loop body.
import * as net from "node:net";
import * as tls from "node:tls";
import { readFile } from "node:fs/promises";
import { create } from "@bufbuild/protobuf";
import {
  Ack,
  Direction,
  ErrorCode,
  ExpectedVersion,
  NackAction,
  OnDisconnect,
  OnExpired,
  StartFrom,
  SubscriptionTarget,
  StreamMetadataSchema,
  type AppendResult,
  type ConsumerInfo,
  type SubscribeResult,
  type BackupResult,
  type ScavengeResult,
  type VerifyResult,
  type CommitResult,
  type CreateTokenResult,
  type Entity,
  type ExtendResult,
  type HelloResult,
  type LeaseGrant,
  type LedgerEntry,
  type PlanResult,
  type RecordedEvent,
  type ServerStats,
  type StreamInfo,
  type StreamMetadata,
  type WatermarkResult,
  type IndexInfo,
  type IndexResult,
  type ParkedEvent,
  type UserInfo,
  type RoleInfo,
  type TokenInfo,
  type ClientInfo,
  type ReloadResult,
} from "./gen/whizbang_pb.js";
import { Connection, type AnswerOf, type CallOptions, type PushSink, type RequestValue } from "./connection.js";
import type { RequestCase } from "./answers.js";
import {
  ApplyError,
  ConnectionError,
  TimeoutError,
  WatermarkTimeoutError,
  WhizbangError,
  connectionLost,
} from "./errors.js";
import { parseUrl, type WhizbangUrl } from "./url.js";
import { ScramClient, scramCredential } from "./scram.js";
import { uuidv7 } from "./uuid.js";
import { toOp, toWhere, type OpInput, type WhereInput } from "./ops.js";
import { Subscription, type SubscriptionItem } from "./subscription.js";
import { encodeAppendRequest } from "./appendcodec.js";

export const PROTOCOL_VERSION = 1;
export const ALPN = "whizbang/1";
const U64_MAX = (1n << 64n) - 1n;

/** How a client connects again when its connection breaks. */
export interface ReconnectOptions {
  /** The first wait between attempts, in ms (default 100); it doubles per
   * failed attempt, up to maxDelayMs (default 5000); each wait is between
   * half of it and all of it, at random. */
  initialDelayMs?: number;
  maxDelayMs?: number;
  /** Attempts fail for this long before waiting calls and subscriptions
   * are failed with a ConnectionError (default 60 000 ms). The next call
   * tries again. */
  giveUpAfterMs?: number;
  /** How many times one call is sent again after connections broke under
   * it (default 5). */
  retries?: number;
}

export interface ConnectOptions {
  /** Shown in the server's log lines for this connection. */
  clientName?: string;
  /** An API token (`wbt_...`): the connection acts as its role. */
  token?: string;
  /** The password of the URL's USER@ (SCRAM-SHA-256); by default
   * $WHIZBANG_PASSWORD. It never crosses the wire. */
  password?: string;
  /** The time limit of connect() (TCP, TLS and Hello together) and the
   * default of every call, in ms; 0: none. Default 30 000. */
  timeoutMs?: number;
  /** PEM of the CAs the server's certificate must chain to, instead of
   * the URL's tlsCaFile. */
  tlsCa?: string | Buffer;
  /** The largest response frame accepted (default 64 MiB). */
  maxResponse?: number;
  /** Take the server for dead after this long without a byte (ms; 0:
   * never). Default 60 000: twice the server's keepalive interval. */
  deadAfterMs?: number;
  /** Connect again when the connection breaks (off by default): calls
   * wait for the new connection within their time limit, calls that are
   * safe to repeat (reads, appends with their ids, commits with their
   * token and ops, acks...) are sent again, subscriptions resume after the
   * last item they received and members join again. Other calls fail with
   * the ConnectionError: whether they were carried out is unknown. */
  reconnect?: boolean | ReconnectOptions;
}

/** A new event. data and metadata as bytes, or a string sent as UTF-8. */
export interface EventInput {
  type: string;
  data?: Uint8Array | string;
  metadata?: Uint8Array | string;
  /** 16 bytes; by default a new UUIDv7. Give the ids of the first attempt
   * when retrying an append whose answer was lost. */
  id?: Uint8Array;
}

/** What the stream must be for an append to go through: any state, no
 * stream yet, an existing stream, or exactly this last version. */
export type Expected = "any" | "noStream" | "streamExists" | bigint | number;

export interface AppendOptions extends CallOptions {
  expected?: Expected;
}

export type AppendOutcome = AppendResult & {
  /** The ids the events were sent with (retry with these). */
  eventIds: Uint8Array[];
};

export interface ReadOptions {
  /** FORWARD (default) or BACKWARD. */
  direction?: "forward" | "backward";
  /** Events per request (0: the server's max_read_count). */
  pageSize?: number;
  /** Stop after this many events. */
  limit?: number;
  signal?: AbortSignal;
  timeoutMs?: number;
}

export interface ReadStreamOptions extends ReadOptions {
  /** The first version read (default: the first forward, the last
   * backward). */
  fromVersion?: bigint;
}

export interface ReadAllOptions extends ReadOptions {
  fromPosition?: bigint;
  streamPrefix?: string;
  eventTypes?: string[];
}

export interface SubscribeOptions extends CallOptions {
  /** "all" (default), "stream" (needs stream) or "ledger". */
  target?: "all" | "stream" | "ledger";
  stream?: string;
  /** "start" (default), "end" (only what commits from now on), or a
   * position (version, sequence) to start at, inclusive. */
  from?: "start" | "end" | bigint;
  streamPrefix?: string;
  eventTypes?: string[];
  /** Items queued at most; credits are granted back half a window at a
   * time. Default 256. */
  window?: number;
}

export interface ConsumerOptions extends CallOptions {
  /** "all" (default) or "stream" (needs stream). */
  target?: "all" | "stream";
  stream?: string;
  streamPrefix?: string;
  eventTypes?: string[];
  /** Where the group starts: "start" (default), "end", or a position. */
  from?: "start" | "end" | bigint;
  /** Unsettled this long after delivery, an event is delivered again
   * (0: the server's 30 s). */
  ackTimeoutMs?: number;
  /** Parked after this many deliveries (0: the server's 10). */
  maxDeliveries?: number;
}

export interface LeaseOptions extends CallOptions {
  /** 0 (default): the server's adaptive duration. */
  durationMs?: number | bigint;
  count?: number;
  operationId?: string;
  sourcePosition?: bigint;
  /** "keep" (default): the lease outlives the connection until it
   * expires; "release": the server releases it when the connection ends. */
  onDisconnect?: "keep" | "release";
}

/** A lease: the sequence and the fencing token every call on it carries. */
export interface LeaseRef {
  sequence: bigint;
  token: bigint;
}

export interface CommitOptions extends CallOptions {
  /** "durable" (default): answered once on disk; "applied": once the
   * watermark passed it, with the outcome of applying the ops. */
  ack?: "durable" | "applied";
  /** "fail" (default) or "resequence": commit at a new sequence when the
   * lease expired. */
  onExpired?: "fail" | "resequence";
}

export interface WorkContext extends LeaseRef {
  grant: LeaseGrant;
  /** Aborted when the lease is lost (an Extend failed): stop the work. */
  signal: AbortSignal;
  /** Stores ops durably as the lease's staged work. */
  stage(ops: OpInput[]): Promise<void>;
}

export interface WithLeaseOptions extends LeaseOptions {
  ack?: "durable" | "applied";
  /** After the commit, wait until the watermark passes it (read your
   * writes), for at most this many ms. */
  waitForWatermarkMs?: number;
  /** Extend every this many ms (default a third of the granted duration). */
  extendEveryMs?: number;
}

export interface QueryOptions extends CallOptions {
  /** Entities per request (0: the server's limit). */
  pageSize?: number;
  /** Only ids after this one. */
  after?: string;
}

const EMPTY = new Uint8Array(0);

function bytesOf(v: Uint8Array | string | undefined): Uint8Array {
  if (v === undefined) return EMPTY;
  return typeof v === "string" ? Buffer.from(v, "utf8") : v;
}

/** The max_count of the next page: the page size asked for (0: the
 * server's max_read_count), no more than the events still wanted. */
function pageCount(pageSize: number | undefined, left: number): number {
  const size = pageSize ?? 0;
  if (left === Infinity) return size;
  return size > 0 ? Math.min(size, left) : Math.min(left, 0xffffffff);
}

/** How a subscription's request reaches its Subscription, and which
 * connection carried it. */
interface StartExtra {
  sink: PushSink;
  onId: (id: bigint) => void;
  conn: Connection | null;
}

/** Resolves after ms, or rejects with signal's reason when it fires. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/** Subscribe's and ConsumerConfig's from and position. */
function startFrom(from: "start" | "end" | bigint | undefined): [StartFrom, bigint] {
  if (from === undefined || from === "start") return [StartFrom.FROM_START, 0n];
  if (from === "end") return [StartFrom.FROM_END, 0n];
  return [StartFrom.FROM_POSITION, from];
}

function u64(v: bigint | number, what: string): bigint {
  const b = typeof v === "bigint" ? v : BigInt(v);
  if (b < 0n || b > U64_MAX) throw new RangeError(`${what} must be from 0 to 2^64-1`);
  return b;
}

/** How long a reconnecting client waits after its attempt-th failed
 * attempt (from 0): initialDelayMs doubled per attempt, at most
 * maxDelayMs, of which a random part (random() in [0, 1)) is left out, so
 * the wait is between half of it and all of it: clients that lost the same
 * server do not all come back at the same moment. */
export function backoffDelay(
  attempt: number,
  r: { initialDelayMs: number; maxDelayMs: number },
  random: () => number = Math.random,
): number {
  const full = Math.min(r.maxDelayMs, r.initialDelayMs * 2 ** Math.min(attempt, 52));
  return full * (0.5 + random() / 2);
}

/** Whether a failure to connect is final: an argument or credentials the
 * server refuses (the same at every host and on every attempt), not a
 * server that is away, stopping or busy (SHUTTING_DOWN,
 * RESOURCE_EXHAUSTED: try the next host, or again later). */
function refusal(err: unknown): boolean {
  if (err instanceof TypeError) return true;
  if (!(err instanceof WhizbangError)) return false;
  return err.code !== ErrorCode.SHUTTING_DOWN && err.code !== ErrorCode.RESOURCE_EXHAUSTED;
}

/** A connection that has said Hello, and who it says the client is. */
interface Link {
  conn: Connection;
  hello: HelloResult;
  user: string;
  roles: string[];
}

/** Requests that may be sent again after the connection broke before
 * their answer came: doing them twice is doing them once (an append's ids
 * make its retry a replay, a commit's token and ops make its retry answered
 * as the first; settling a settled event does nothing), or they only read. */
const RETRYABLE: ReadonlySet<RequestCase> = new Set<RequestCase>([
  "ping",
  "appendEvents",
  "readStream",
  "readAll",
  "getStreamInfo",
  "getStats",
  "extend",
  "stage",
  "commit",
  "readLedger",
  "getWatermark",
  "waitForWatermark",
  "getEntity",
  "queryEntities",
  "listIndexes",
  "explain",
  "verify",
  "subscribe",
  "listConsumers",
  "joinConsumer",
  "ack",
  "nack",
  "listParked",
  "replayParked",
  "setStreamMetadata",
  "getStreamMetadata",
  "putUser",
  "putRole",
  "reload",
  "listUsers",
  "listRoles",
  "listTokens",
  "listClients",
]);

function retryable<C extends RequestCase>(kase: C, value: RequestValue<C>): boolean {
  // A resequenced commit is not recognised when retried (§4.8).
  if (kase === "commit" && (value as { onExpired?: OnExpired }).onExpired === OnExpired.RESEQUENCE) return false;
  return RETRYABLE.has(kase);
}

/** A connection to whizbangd that has said Hello; with the reconnect
 * option, a connection that is made again when it breaks. */
export class Client {
  private link: Link;
  private dialing: Promise<Link> | null = null;
  private closing = false;
  private readonly stop = new AbortController();

  /** @internal use connect(). */
  constructor(
    link: Link,
    private readonly dial: (signal: AbortSignal) => Promise<Link>,
    private readonly reconnect: Required<ReconnectOptions> | null,
  ) {
    this.link = link;
  }

  /** The server's HelloResult: its limits (max_frame, max_read_count...). */
  get hello(): HelloResult {
    return this.link.hello;
  }

  /** Who the connection acts as ("" when it did not authenticate). */
  get user(): string {
    return this.link.user;
  }

  get roles(): string[] {
    return this.link.roles;
  }

  /** Any request of the protocol by its body's name, answered with the
   * body the request → answer table names (docs/PROTOCOL.md §2). It is not
   * sent again after a reconnection. */
  call<C extends RequestCase>(kase: C, value: RequestValue<C>, opts?: CallOptions): Promise<AnswerOf<C>> {
    return this.use(opts ?? {}, false, (conn, o) => conn.call(kase, value, o));
  }

  /** Closes the connection; calls still waiting fail with a ConnectionError. */
  close(): Promise<void> {
    this.closing = true;
    this.stop.abort(new ConnectionError("the connection was closed by this client"));
    return this.link.conn.close();
  }

  /** Why the connection cannot be used any more, or null. With reconnect,
   * a broken connection is made again by the next call. */
  get broken(): Error | null {
    return this.link.conn.broken;
  }

  /** Connections made again since connect(). */
  reconnections = 0;

  /** Runs fn on a usable connection. With reconnect, a connection that
   * broke is made again first, and fn is run again on the new one when the
   * connection broke before its answer and retry says that is safe; the
   * call's time limit covers all of it. */
  private async use<T>(
    opts: CallOptions,
    retry: boolean,
    fn: (conn: Connection, opts: CallOptions) => Promise<T>,
  ): Promise<T> {
    if (this.reconnect === null) return fn(this.link.conn, opts);
    const limit = opts.timeoutMs ?? this.link.conn.timeoutMs;
    const deadline = limit > 0 ? Date.now() + limit : Infinity;
    for (let attempt = 0; ; attempt++) {
      const conn = await this.connection(deadline, opts.signal);
      const left = deadline === Infinity ? 0 : Math.max(1, deadline - Date.now());
      try {
        return await fn(conn, { ...opts, timeoutMs: left });
      } catch (err) {
        if (!retry || this.closing || !connectionLost(err) || attempt >= this.reconnect.retries) throw err;
      }
    }
  }

  /** A usable connection: the current one, or a new one once made, within
   * the deadline. */
  private async connection(deadline: number, signal: AbortSignal | undefined): Promise<Connection> {
    if (this.link.conn.broken === null) return this.link.conn;
    if (this.closing) throw new ConnectionError("the connection was closed by this client");
    const dialing = (this.dialing ??= this.redial().finally(() => (this.dialing = null)));
    if (deadline === Infinity && signal === undefined) return (await dialing).conn;
    return new Promise<Connection>((resolve, reject) => {
      const timer =
        deadline === Infinity
          ? undefined
          : setTimeout(
              () => reject(new TimeoutError("no connection to the server within the call's time limit")),
              Math.max(0, deadline - Date.now()),
            );
      const onAbort = (): void => reject(signal!.reason);
      signal?.addEventListener("abort", onAbort, { once: true });
      dialing.then(
        (link) => resolve(link.conn),
        (err) => reject(err),
      ).finally(() => {
        if (timer !== undefined) clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
      });
    });
  }

  /** Connects again, with exponential backoff and jitter between attempts,
   * until it succeeds, the client is closed, the server refuses the
   * credentials, or the reconnect option's giveUpAfterMs has passed. */
  private async redial(): Promise<Link> {
    const r = this.reconnect!;
    const started = Date.now();
    for (let attempt = 0; ; attempt++) {
      try {
        const link = await this.dial(this.stop.signal);
        if (this.closing) {
          await link.conn.close();
          throw new ConnectionError("the connection was closed by this client");
        }
        this.link = link;
        this.reconnections++;
        return link;
      } catch (err) {
        if (this.closing || refusal(err)) throw err;
        if (Date.now() - started >= r.giveUpAfterMs)
          throw new ConnectionError(`no connection to the server for ${r.giveUpAfterMs} ms`, { cause: err });
        await sleep(backoffDelay(attempt, r), this.stop.signal);
      }
    }
  }

  /** One request through use(), sent again after a reconnection when that
   * is safe for it (RETRYABLE). */
  private rpc<C extends RequestCase>(
    kase: C,
    value: RequestValue<C>,
    opts: CallOptions = {},
    extra: { sink?: PushSink; progress?: (value: AnswerOf<C>) => void; onId?: (id: bigint) => void } = {},
  ): Promise<AnswerOf<C>> {
    return this.use(opts, retryable(kase, value), (conn, o) => conn.call(kase, value, o, extra));
  }

  /** Round-trip time of a Ping, in ms. */
  async ping(opts?: CallOptions): Promise<number> {
    const nonce = BigInt(Math.floor(Math.random() * 2 ** 52));
    const t0 = performance.now();
    const pong = await this.rpc("ping", { nonce }, opts);
    if (pong.nonce !== nonce)
      throw new WhizbangError(ErrorCode.INTERNAL, "the Pong's nonce is not the Ping's", undefined, -1n);
    return performance.now() - t0;
  }

  /** Appends events to stream atomically, once they are durable. Appends
   * may be pipelined: call again before this one is answered. */
  append(stream: string, events: EventInput | EventInput[], opts: AppendOptions = {}): Promise<AppendOutcome> {
    const list = Array.isArray(events) ? events : [events];
    let expected = ExpectedVersion.ANY;
    let expectedVersion = 0n;
    const want = opts.expected ?? "any";
    switch (want) {
      case "any":
        break;
      case "noStream":
        expected = ExpectedVersion.NO_STREAM;
        break;
      case "streamExists":
        expected = ExpectedVersion.STREAM_EXISTS;
        break;
      default:
        if (typeof want !== "bigint" && !Number.isSafeInteger(want))
          return Promise.reject(new TypeError(`expected is "any", "noStream", "streamExists" or a version`));
        expected = ExpectedVersion.EXACT;
        try {
          expectedVersion = u64(want, "the expected version");
        } catch (err) {
          return Promise.reject(err);
        }
    }
    const eventIds: Uint8Array[] = [];
    const wire = list.map((e) => {
      const id = e.id ?? uuidv7();
      eventIds.push(id);
      return { id, type: e.type, data: bytesOf(e.data), metadata: bytesOf(e.metadata) };
    });
    return this.use(opts, true, (conn, o) =>
      conn.send("appendEvents", (id) => encodeAppendRequest(id, stream, expected, expectedVersion, wire), o, {
        map: (r) => Object.assign(r, { eventIds }),
      }),
    );
  }

  /** The events of stream, page after page, as one iteration. Throws
   * NOT_FOUND for a stream that does not exist or is soft-deleted. */
  async *readStream(stream: string, opts: ReadStreamOptions = {}): AsyncGenerator<RecordedEvent, void, undefined> {
    const backward = opts.direction === "backward";
    let from = opts.fromVersion ?? (backward ? U64_MAX : 0n);
    let left = opts.limit ?? Infinity;
    while (left > 0) {
      const maxCount = pageCount(opts.pageSize, left);
      const page = await this.rpc(
        "readStream",
        { stream, fromVersion: from, direction: backward ? Direction.BACKWARD : Direction.FORWARD, maxCount },
        opts,
      );
      for (const e of page.events) {
        yield e;
        if (--left === 0) return;
      }
      if (page.endOfStream) return;
      // A page may hold no event (all hidden by age) without being the end.
      if (page.nextVersion === from && page.events.length === 0)
        throw new WhizbangError(ErrorCode.INTERNAL, "a stream page did not move past its start", undefined, -1n);
      from = page.nextVersion;
    }
  }

  /** The events of the global log ($all), optionally filtered, page after
   * page. A filtered page may hold no event without being the end: reading
   * goes on until the server says end_of_log. */
  async *readAll(opts: ReadAllOptions = {}): AsyncGenerator<RecordedEvent, void, undefined> {
    const backward = opts.direction === "backward";
    let from = opts.fromPosition ?? (backward ? U64_MAX : 0n);
    let left = opts.limit ?? Infinity;
    while (left > 0) {
      const maxCount = pageCount(opts.pageSize, left);
      const page = await this.rpc(
        "readAll",
        {
          fromPosition: from,
          direction: backward ? Direction.BACKWARD : Direction.FORWARD,
          maxCount,
          streamPrefix: opts.streamPrefix ?? "",
          eventTypes: opts.eventTypes ?? [],
        },
        opts,
      );
      for (const e of page.events) {
        yield e;
        if (--left === 0) return;
      }
      if (page.endOfLog) return;
      if (page.nextPosition === from)
        throw new WhizbangError(ErrorCode.INTERNAL, "a page of $all did not move past its start", undefined, -1n);
      from = page.nextPosition;
    }
  }

  streamInfo(stream: string, opts?: CallOptions): Promise<StreamInfo> {
    return this.rpc("getStreamInfo", { stream }, opts);
  }

  setStreamMetadata(stream: string, metadata: Partial<Omit<StreamMetadata, "$typeName">>, opts?: CallOptions): Promise<StreamMetadata> {
    return this.rpc("setStreamMetadata", { stream, metadata: create(StreamMetadataSchema, metadata) }, opts).then(
      (r) => r.metadata ?? create(StreamMetadataSchema),
    );
  }

  getStreamMetadata(stream: string, opts?: CallOptions): Promise<StreamMetadata> {
    return this.rpc("getStreamMetadata", { stream }, opts).then((r) => r.metadata ?? create(StreamMetadataSchema));
  }

  /** Deletes stream, softly (it may be written again) or for good (hard);
   * resolves with its last version. */
  deleteStream(stream: string, opts: CallOptions & { hard?: boolean } = {}): Promise<bigint> {
    return this.rpc("deleteStream", { stream, hard: opts.hard ?? false }, opts).then((r) => r.lastVersion);
  }

  stats(opts?: CallOptions): Promise<ServerStats> {
    return this.rpc("getStats", {}, opts);
  }

  /** The ledger's watermark and the next sequence a lease would get. */
  watermark(opts?: CallOptions): Promise<WatermarkResult> {
    return this.rpc("getWatermark", {}, opts);
  }

  /** Waits until the watermark reaches sequence, for at most waitMs;
   * `reached` says whether it did. The call's own time limit is extended by
   * waitMs. */
  waitForWatermark(sequence: bigint, waitMs: number, opts: CallOptions = {}): Promise<WatermarkResult> {
    const limit = opts.timeoutMs ?? this.link.conn.timeoutMs;
    return this.rpc(
      "waitForWatermark",
      { sequence, timeoutMs: BigInt(waitMs) },
      { ...opts, timeoutMs: limit > 0 ? limit + waitMs : 0 },
    );
  }

  /** The ledger's entries from fromSequence (default the first) up to the
   * watermark, page after page (projections:ledger): each is final, and
   * applied when its kind is a commit. Ends at the watermark as it is when
   * the last page is read; subscribe({ target: "ledger" }) follows it. */
  async *readLedger(
    opts: { fromSequence?: bigint; pageSize?: number; limit?: number } & CallOptions = {},
  ): AsyncGenerator<LedgerEntry, void, undefined> {
    let from = opts.fromSequence ?? 1n;
    let left = opts.limit ?? Infinity;
    while (left > 0) {
      const page = await this.rpc("readLedger", { fromSequence: from, maxCount: pageCount(opts.pageSize, left) }, opts);
      for (const e of page.entries) {
        yield e;
        if (--left === 0) return;
      }
      if (page.end) return;
      if (page.nextSequence === from && page.entries.length === 0)
        throw new WhizbangError(ErrorCode.INTERNAL, "a ledger page did not move past its start", undefined, -1n);
      from = page.nextSequence;
    }
  }

  /** The entity type/id, or null when there is none. */
  async getEntity(type: string, id: string, opts?: CallOptions): Promise<Entity | null> {
    try {
      const r = await this.rpc("getEntity", { type, id }, opts);
      return r.entity ?? null;
    } catch (err) {
      if (err instanceof WhizbangError && err.code === ErrorCode.NOT_FOUND) return null;
      throw err;
    }
  }

  /** The entities of type that where matches (all without one), in id
   * order, page after page. */
  async *query(type: string, where?: WhereInput, opts: QueryOptions = {}): AsyncGenerator<Entity, void, undefined> {
    let after = opts.after ?? "";
    const w = where === undefined ? undefined : toWhere(where);
    for (;;) {
      const page = await this.rpc(
        "queryEntities",
        { type, ...(w ? { where: w } : {}), limit: opts.pageSize ?? 0, after },
        opts,
      );
      yield* page.entities;
      if (page.end) return;
      if (page.nextAfter === after)
        throw new WhizbangError(ErrorCode.INTERNAL, "a query page did not move past its cursor", undefined, -1n);
      after = page.nextAfter;
    }
  }

  /** How the server would run a query of type with where. */
  explain(type: string, where: WhereInput, opts?: CallOptions): Promise<PlanResult> {
    return this.rpc("explain", { type, where: toWhere(where) }, opts);
  }

  /** Indexes field of the entities of type (indexes:manage): the change
   * goes through the ledger (projection "$index") and is answered once
   * applied, with the index and the ledger sequence that made it. Not
   * sent again after a reconnection (a second one is refused as existing).
   * No time limit unless opts gives one: building it reads every entity of
   * type. */
  createIndex(type: string, field: string, opts: CallOptions = {}): Promise<IndexResult> {
    return this.rpc("createIndex", { type, field }, { timeoutMs: 0, ...opts });
  }

  /** Drops the index of field of type (NOT_FOUND when there is none). */
  dropIndex(type: string, field: string, opts: CallOptions = {}): Promise<IndexResult> {
    return this.rpc("dropIndex", { type, field }, { timeoutMs: 0, ...opts });
  }

  /** The indexes of type, or of every type without one. */
  async listIndexes(type = "", opts?: CallOptions): Promise<IndexInfo[]> {
    return (await this.rpc("listIndexes", { type }, opts)).indexes;
  }

  /** Leases count (default 1) consecutive sequences of projection. */
  async lease(projection: string, opts: LeaseOptions = {}): Promise<LeaseGrant[]> {
    const r = await this.rpc(
      "lease",
      {
        projection,
        durationMs: u64(opts.durationMs ?? 0, "durationMs"),
        count: opts.count ?? 1,
        operationId: opts.operationId ?? "",
        sourcePosition: opts.sourcePosition ?? 0n,
        onDisconnect: opts.onDisconnect === "release" ? OnDisconnect.RELEASE : OnDisconnect.KEEP,
      },
      opts,
    );
    return r.leases;
  }

  extend(lease: LeaseRef, opts: CallOptions & { durationMs?: number | bigint } = {}): Promise<ExtendResult> {
    return this.rpc(
      "extend",
      { sequence: lease.sequence, token: lease.token, durationMs: u64(opts.durationMs ?? 0, "durationMs") },
      opts,
    );
  }

  /** Gives the sequence up: it becomes a gap. */
  async release(lease: LeaseRef, reason = "", opts?: CallOptions): Promise<void> {
    await this.rpc("release", { sequence: lease.sequence, token: lease.token, reason }, opts);
  }

  /** Stores ops durably as the lease's staged work (replacing earlier). */
  async stage(lease: LeaseRef, ops: OpInput[], opts?: CallOptions): Promise<void> {
    await this.rpc("stage", { sequence: lease.sequence, token: lease.token, ops: ops.map(toOp) }, opts);
  }

  /** Commits ops at the lease's sequence. A retry with the same token and
   * ops after a lost answer is answered as the first commit was. */
  commit(lease: LeaseRef, ops: OpInput[], opts: CommitOptions = {}): Promise<CommitResult> {
    return this.rpc(
      "commit",
      {
        sequence: lease.sequence,
        token: lease.token,
        ops: ops.map(toOp),
        ack: opts.ack === "applied" ? Ack.APPLIED : Ack.DURABLE,
        onExpired: opts.onExpired === "resequence" ? OnExpired.RESEQUENCE : OnExpired.FAIL,
      },
      opts,
    );
  }

  /** The projection worker's step: leases a sequence of projection, runs
   * work while Extends keep the lease alive, and commits the ops work
   * returns; releases the sequence (a gap) when work throws, and rethrows.
   * When an Extend fails (the lease is lost), ctx.signal is aborted and
   * withLease rejects with that Extend's error once work returns. With ack
   * "applied", an apply that failed rejects with an ApplyError (the commit
   * is durable, its ops a no-op). With waitForWatermarkMs, resolves once the
   * commit is applied, or rejects with a WatermarkTimeoutError. */
  async withLease(
    projection: string,
    work: (ctx: WorkContext) => Promise<OpInput[]>,
    opts: WithLeaseOptions = {},
  ): Promise<CommitResult> {
    const [grant] = await this.lease(projection, { ...opts, count: 1 });
    if (grant === undefined) throw new WhizbangError(ErrorCode.INTERNAL, "the Lease was answered with no grant", undefined, -1n);
    const lease: LeaseRef = { sequence: grant.sequence, token: grant.token };
    const lost = new AbortController();
    const every = opts.extendEveryMs ?? Math.max(10, Number(grant.durationMs) / 3);
    let extending: Promise<unknown> = Promise.resolve();
    const timer = setInterval(() => {
      extending = this.extend(lease, { durationMs: opts.durationMs ?? 0 }).catch((err) => {
        if (!lost.signal.aborted) lost.abort(err);
      });
    }, every);
    let ops: OpInput[];
    try {
      ops = await work({
        ...lease,
        grant,
        signal: lost.signal,
        stage: (staged) => this.stage(lease, staged),
      });
      if (lost.signal.aborted) throw lost.signal.reason;
    } catch (err) {
      clearInterval(timer);
      await extending;
      const reason = err instanceof Error ? err.message : String(err);
      await this.release(lease, `the worker failed: ${reason}`.slice(0, 255)).catch(() => undefined);
      throw err;
    }
    clearInterval(timer);
    await extending;
    const result = await this.commit(lease, ops, { ack: opts.ack ?? "durable" });
    if (opts.ack === "applied" && result.applyError !== ErrorCode.OK) throw new ApplyError(result);
    if (opts.waitForWatermarkMs !== undefined) {
      const w = await this.waitForWatermark(result.sequence, opts.waitForWatermarkMs);
      if (!w.reached) throw new WatermarkTimeoutError(result, opts.waitForWatermarkMs);
    }
    return result;
  }

  /** Subscribes to $all, a stream or the ledger: an async iterator of
   * events (entries for the ledger) and, once, the caught-up signal. */
  async subscribe(opts: SubscribeOptions = {}): Promise<Subscription> {
    const target =
      opts.target === "stream"
        ? SubscriptionTarget.TARGET_STREAM
        : opts.target === "ledger"
          ? SubscriptionTarget.TARGET_LEDGER
          : SubscriptionTarget.TARGET_ALL;
    const [from, position] = startFrom(opts.from);
    // What a subscription resumes after: the position in $all, the version
    // in a stream, the sequence in the ledger.
    const key = (item: SubscriptionItem): bigint | null =>
      item.kind === "event"
        ? target === SubscriptionTarget.TARGET_STREAM
          ? item.event.version
          : item.event.position
        : item.kind === "entry"
          ? item.entry.sequence
          : null;
    return this.pushed(opts.window ?? 256, opts, key, (credits, next, o, extra) =>
      this.use(o, true, (conn, co) => {
        extra.conn = conn;
        return conn.call(
          "subscribe",
          {
            target,
            stream: opts.stream ?? "",
            ...(next === null ? { from, position } : { from: StartFrom.FROM_POSITION, position: next }),
            streamPrefix: opts.streamPrefix ?? "",
            eventTypes: opts.eventTypes ?? [],
            credits,
          },
          co,
          extra,
        );
      }),
    );
  }

  /** A Subscription fed by the pushes of the request start sends, and
   * sent again after a reconnection, with the key to start at (null:
   * the first time). */
  private async pushed(
    window: number,
    opts: CallOptions,
    key: (item: SubscriptionItem) => bigint | null,
    start: (credits: number, next: bigint | null, opts: CallOptions, extra: StartExtra) => Promise<SubscribeResult>,
  ): Promise<Subscription> {
    if (!Number.isInteger(window) || window < 1 || window > 0xffffffff)
      throw new RangeError("window must be an integer from 1 to 2^32-1");
    const begin = async (credits: number, next: bigint | null, o: CallOptions): Promise<void> => {
      let requestId = 0n;
      const extra: StartExtra = { sink: sub, onId: (id) => (requestId = id), conn: null };
      const r = await start(credits, next, o, extra);
      sub.started(requestId, r.subscription, r.start, extra.conn!);
    };
    // A resumed subscription waits for the connection as long as the
    // reconnect option lets it, not for a call's time limit.
    const sub: Subscription = new Subscription(
      window,
      key,
      this.reconnect === null ? undefined : (credits, next) => begin(credits, next, { timeoutMs: 0 }),
    );
    await begin(window, null, opts);
    return sub;
  }

  /** Creates a durable consumer group (docs/SUBSCRIPTIONS.md §2) reading
   * $all (default) or a stream, from its start (default), its end or a
   * position. */
  createConsumer(name: string, opts: ConsumerOptions = {}): Promise<ConsumerInfo> {
    const [from, position] = startFrom(opts.from);
    return this.rpc(
      "createConsumer",
      {
        config: {
          name,
          target: opts.target === "stream" ? SubscriptionTarget.TARGET_STREAM : SubscriptionTarget.TARGET_ALL,
          stream: opts.stream ?? "",
          streamPrefix: opts.streamPrefix ?? "",
          eventTypes: opts.eventTypes ?? [],
          from,
          position,
          ackTimeoutMs: BigInt(opts.ackTimeoutMs ?? 0),
          maxDeliveries: opts.maxDeliveries ?? 0,
        },
      },
      opts,
    );
  }

  async deleteConsumer(name: string, opts?: CallOptions): Promise<void> {
    await this.rpc("deleteConsumer", { name }, opts);
  }

  async listConsumers(opts?: CallOptions): Promise<ConsumerInfo[]> {
    return (await this.rpc("listConsumers", {}, opts)).consumers;
  }

  /** Joins the group as a competing member: an iterator of the events it
   * is handed (with their delivery count), credits managed as for
   * subscribe(); settle each with ack() or nack(). Leaving (break, close())
   * hands its unsettled events to the other members. */
  joinConsumer(name: string, opts: CallOptions & { window?: number } = {}): Promise<Subscription> {
    return this.pushed(opts.window ?? 256, opts, () => null, (credits, _next, o, extra) =>
      this.use(o, true, (conn, co) => {
        extra.conn = conn;
        return conn.call("joinConsumer", { name, credits }, co, extra);
      }),
    );
  }

  /** Settles events of the group as done; resolves with its checkpoint. */
  async ack(name: string, ids: Uint8Array[], opts?: CallOptions): Promise<bigint> {
    return (await this.rpc("ack", { name, ids }, opts)).checkpoint;
  }

  /** Hands events back ("retry"), parks them ("park") or skips them
   * ("skip"); resolves with the group's checkpoint. */
  async nack(
    name: string,
    ids: Uint8Array[],
    action: "retry" | "park" | "skip",
    opts: CallOptions & { reason?: string } = {},
  ): Promise<bigint> {
    const a = action === "park" ? NackAction.NACK_PARK : action === "skip" ? NackAction.NACK_SKIP : NackAction.NACK_RETRY;
    return (await this.rpc("nack", { name, ids, action: a, reason: opts.reason ?? "" }, opts)).checkpoint;
  }

  /** Hands every parked event of the group back for delivery; resolves
   * with how many. */
  async replayParked(name: string, opts?: CallOptions): Promise<bigint> {
    return (await this.rpc("replayParked", { name }, opts)).replayed;
  }

  /** The parked events of the group (groups:manage), from the $all
   * position fromPosition on, page after page: each with its deliveries,
   * the reason it was parked and when. */
  async *listParked(
    name: string,
    opts: { fromPosition?: bigint; pageSize?: number } & CallOptions = {},
  ): AsyncGenerator<ParkedEvent, void, undefined> {
    let from = opts.fromPosition ?? 0n;
    for (;;) {
      const page = await this.rpc("listParked", { name, fromPosition: from, maxCount: opts.pageSize ?? 0 }, opts);
      yield* page.events;
      if (page.end) return;
      if (page.nextPosition === from && page.events.length === 0)
        throw new WhizbangError(ErrorCode.INTERNAL, "a page of parked events did not move past its start", undefined, -1n);
      from = page.nextPosition;
    }
  }

  /** Removes every event that is no longer readable (admin:scavenge);
   * onProgress sees each chunk's figures before the final ones resolve.
   * The call's time limit is none unless opts gives one. */
  scavenge(onProgress?: (p: ScavengeResult) => void, opts: CallOptions = {}): Promise<ScavengeResult> {
    return this.rpc("scavenge", {}, { timeoutMs: 0, ...opts }, onProgress ? { progress: onProgress } : {});
  }

  /** An online copy of the store into the server's backup-dir, as
   * directory name (admin:backup); onProgress sees the bytes copied so far.
   * The call's time limit is none unless opts gives one. */
  backup(name: string, onProgress?: (p: BackupResult) => void, opts: CallOptions = {}): Promise<BackupResult> {
    return this.rpc("backup", { path: name }, { timeoutMs: 0, ...opts }, onProgress ? { progress: onProgress } : {});
  }

  /** Rebuilds the read models from the ledger aside and compares them
   * with the live ones (admin:verify). No time limit unless opts gives one. */
  verify(opts: CallOptions = {}): Promise<VerifyResult> {
    return this.rpc("verify", {}, { timeoutMs: 0, ...opts });
  }

  /** Makes an API token for role (admin:users). */
  createToken(role: string, opts: CallOptions & { ttlMs?: number; description?: string } = {}): Promise<CreateTokenResult> {
    return this.rpc(
      "createToken",
      { role, ttlMs: BigInt(opts.ttlMs ?? 0), description: opts.description ?? "" },
      opts,
    );
  }

  /** Creates or replaces a user (admin:users). With a password, its
   * SCRAM-SHA-256 verifier is made here and only that is sent, with
   * iterations PBKDF2 rounds (default 100 000: the server's default
   * --scram-iterations, the least it takes). */
  async putUser(
    name: string,
    roles: string[],
    opts: CallOptions & { password?: string; iterations?: number } = {},
  ): Promise<void> {
    const credential = opts.password === undefined ? "" : await scramCredential(opts.password, opts.iterations);
    await this.rpc("putUser", { name, roles, credential }, opts);
  }

  /** Deletes a user (admin:users); its open connections lose its roles. */
  async deleteUser(name: string, opts?: CallOptions): Promise<void> {
    await this.rpc("deleteUser", { name }, opts);
  }

  /** The users, with their roles and whether they have a password. */
  async listUsers(opts?: CallOptions): Promise<UserInfo[]> {
    return (await this.rpc("listUsers", {}, opts)).users;
  }

  /** Creates or replaces a role made of grants, each
   * `[deny ]KIND:PERM[,PERM...]:PREFIX` ("streams:read,append:orders-",
   * "deny streams:read:orders-secret"; admin:users). */
  async putRole(name: string, grants: string[], opts?: CallOptions): Promise<void> {
    await this.rpc("putRole", { name, grants }, opts);
  }

  /** Deletes a role (admin:users); a built-in one is refused. */
  async deleteRole(name: string, opts?: CallOptions): Promise<void> {
    await this.rpc("deleteRole", { name }, opts);
  }

  /** The roles, built-in and made, with their grants. */
  async listRoles(opts?: CallOptions): Promise<RoleInfo[]> {
    return (await this.rpc("listRoles", {}, opts)).roles;
  }

  /** Revokes the API token with this id (CreateTokenResult.id). */
  async revokeToken(id: string, opts?: CallOptions): Promise<void> {
    await this.rpc("revokeToken", { id }, opts);
  }

  /** The API tokens (never their secrets): role, description, times,
   * whether revoked. */
  async listTokens(opts?: CallOptions): Promise<TokenInfo[]> {
    return (await this.rpc("listTokens", {}, opts)).tokens;
  }

  /** Loads the server's TLS certificate, key and CA files again, as
   * SIGHUP does (admin:reload): new connections get them. */
  reload(opts?: CallOptions): Promise<ReloadResult> {
    return this.rpc("reload", {}, opts);
  }

  /** The server's open connections (admin:clients): peer, user, roles,
   * age, traffic, what each holds; `self` marks this one. */
  async listClients(opts?: CallOptions): Promise<ClientInfo[]> {
    return (await this.rpc("listClients", {}, opts)).clients;
  }

  /** Closes the server's connection id (admin:clients; ids from
   * listClients()): it is told RESOURCE_EXHAUSTED first, and what it held
   * goes as on any close. NOT_FOUND when no such connection is open. */
  async disconnect(id: bigint, opts?: CallOptions): Promise<void> {
    await this.rpc("disconnect", { id }, opts);
  }
}

/** Opens the socket the URL names and waits until it is ready (TLS: the
 * handshake done and verified). */
async function openSocket(u: WhizbangUrl, opts: ConnectOptions, signal: AbortSignal): Promise<net.Socket> {
  let socket: net.Socket;
  let ready: string;
  if (u.unixSocket) {
    socket = net.connect({ path: u.path });
    ready = "connect";
  } else if (u.tls) {
    let ca = opts.tlsCa;
    if (ca === undefined) {
      if (u.tlsCaFile === "")
        throw new TypeError("TLS cannot verify the server without its CA: give tlsCaFile in the URL or the tlsCa option");
      ca = await readFile(u.tlsCaFile);
    }
    const name = u.tlsServerName !== "" ? u.tlsServerName : u.host;
    const options: tls.ConnectionOptions = {
      host: u.host,
      port: u.port,
      ca,
      ALPNProtocols: [ALPN],
      minVersion: "TLSv1.2",
      rejectUnauthorized: true,
      checkServerIdentity: (_host, cert) => tls.checkServerIdentity(name, cert),
    };
    // SNI carries a DNS name, never an address.
    if (net.isIP(name) === 0) options.servername = name;
    if (u.tlsCertFile !== "") {
      options.cert = await readFile(u.tlsCertFile);
      options.key = await readFile(u.tlsKeyFile);
    }
    socket = tls.connect(options);
    ready = "secureConnect";
  } else {
    socket = net.connect({ host: u.host, port: u.port });
    ready = "connect";
  }
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error): void => {
      cleanup();
      socket.destroy();
      const code = (err as { code?: string }).code ?? "";
      const why = /CERT|SELF_SIGNED|ALTNAME|UNABLE_TO_VERIFY|ISSUER/.test(code)
        ? `the server's certificate does not verify (${code}): ${err.message}`
        : `cannot connect to ${u.address}: ${err.message}`;
      reject(new ConnectionError(why, { cause: err }));
    };
    const onAbort = (): void => {
      cleanup();
      socket.destroy();
      reject(signal.reason);
    };
    const onReady = (): void => {
      cleanup();
      if (u.tls && (socket as tls.TLSSocket).alpnProtocol !== ALPN) {
        socket.destroy();
        reject(new ConnectionError(`the server did not select ALPN ${ALPN}`));
        return;
      }
      resolve();
    };
    const cleanup = (): void => {
      socket.off("error", onError);
      socket.off(ready, onReady);
      signal.removeEventListener("abort", onAbort);
    };
    socket.once("error", onError);
    socket.once(ready, onReady);
    signal.addEventListener("abort", onAbort, { once: true });
  });
  return socket;
}

async function connectOne(u: WhizbangUrl, opts: ConnectOptions, stop?: AbortSignal): Promise<Link> {
  const password = opts.password ?? process.env["WHIZBANG_PASSWORD"];
  if (opts.token !== undefined && (u.user !== "" || u.external))
    throw new TypeError("a token and a user (or EXTERNAL) together: give one way to authenticate");
  if (u.user !== "" && (password === undefined || password === ""))
    throw new TypeError(`the URL names the user ${u.user}: give its password (the password option or WHIZBANG_PASSWORD)`);
  if (opts.token !== undefined && !opts.token.startsWith("wbt_"))
    throw new TypeError("an API token starts with wbt_");
  const scram = u.user !== "" ? new ScramClient(u.user, password!) : null;
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const controller = new AbortController();
  const timer =
    timeoutMs > 0
      ? setTimeout(
          () => controller.abort(new TimeoutError(`connecting to ${u.address} took more than ${timeoutMs} ms`)),
          timeoutMs,
        )
      : undefined;
  try {
    const onStop = (): void => controller.abort(stop!.reason);
    stop?.addEventListener("abort", onStop, { once: true });
    let socket: net.Socket;
    try {
      socket = await openSocket(u, opts, controller.signal);
    } finally {
      stop?.removeEventListener("abort", onStop);
    }
    const conn = new Connection(socket, {
      timeoutMs,
      ...(opts.maxResponse !== undefined ? { maxResponse: opts.maxResponse } : {}),
      ...(opts.deadAfterMs !== undefined ? { deadAfterMs: opts.deadAfterMs } : {}),
    });
    const callOpts = { signal: controller.signal, timeoutMs: 0 };
    try {
      const hello = await conn.call(
        "hello",
        {
          protocolVersion: PROTOCOL_VERSION,
          clientName: opts.clientName ?? "whizbang-ts",
          ...(opts.token !== undefined ? { token: Buffer.from(opts.token, "utf8") } : {}),
          ...(u.external ? { mechanism: "EXTERNAL" } : {}),
          ...(scram !== null ? { mechanism: "SCRAM-SHA-256", authData: Buffer.from(scram.first(), "utf8") } : {}),
        },
        callOpts,
      );
      conn.maxFrame = hello.maxFrame;
      let user = hello.user;
      let roles = hello.roles;
      if (scram !== null) {
        let clientFinal: string;
        try {
          clientFinal = await scram.final(Buffer.from(hello.authData).toString("utf8"));
        } catch (err) {
          throw new ConnectionError(`SCRAM-SHA-256 with the server failed: ${(err as Error).message}`, { cause: err });
        }
        const auth = await conn.call("authenticate", { authData: Buffer.from(clientFinal, "utf8") }, callOpts);
        if (!scram.verify(Buffer.from(auth.authData).toString("utf8")))
          throw new ConnectionError("the server's SCRAM signature does not verify: it does not hold this user's keys");
        user = auth.user;
        roles = auth.roles;
      }
      return { conn, hello, user, roles };
    } catch (err) {
      await conn.close();
      throw err;
    }
  } finally {
    if (timer !== undefined) clearTimeout(timer);
  }
}

/** Connects to the server a `whizbang://` or `whizbang+unix://` URL names
 * (docs/PROTOCOL.md, "Connection URLs") and says Hello, authenticating as
 * the URL and options say. Given several URLs, tries each in turn and
 * resolves with the first that connects; rejects with the last failure. A
 * URL that does not parse is refused (UrlError) before any is tried. */
export async function connect(url: string | string[], opts: ConnectOptions = {}): Promise<Client> {
  const urls = (Array.isArray(url) ? url : [url]).map(parseUrl);
  if (urls.length === 0) throw new TypeError("connect() needs a URL");
  const dial = async (stop?: AbortSignal): Promise<Link> => {
    let last: unknown;
    for (const u of urls) {
      try {
        return await connectOne(u, opts, stop);
      } catch (err) {
        // A refusal (bad credentials...) holds for every host.
        if (refusal(err)) throw err;
        last = err;
      }
    }
    throw last;
  };
  const r = opts.reconnect === true ? {} : opts.reconnect === false || opts.reconnect === undefined ? null : opts.reconnect;
  const reconnect =
    r === null
      ? null
      : {
          initialDelayMs: r.initialDelayMs ?? 100,
          maxDelayMs: r.maxDelayMs ?? 5000,
          giveUpAfterMs: r.giveUpAfterMs ?? 60_000,
          retries: r.retries ?? 5,
        };
  return new Client(await dial(), dial, reconnect);
}

export type { LedgerEntry };
