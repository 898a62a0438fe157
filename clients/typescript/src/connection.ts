// One connection to whizbangd: requests out, answers and pushes in.
//
// The happy path: call() gives each request a fresh id, encodes it, checks
// it against the server's max_frame, queues it (the frames of one tick of
// the event loop go out in one write) and waits in the pending map. The socket's
// data goes through one FrameDecoder; each Response is dispatched by id: to
// its pending call (the answer), to a push sink (a subscription's items, or
// a call's progress), or, for an id nobody waits on any more (a call that
// timed out), nowhere. `Response{id 0, pong}` is a keepalive and is skipped.
//
// Failure modes: an error with id 0 (FRAME_TOO_LARGE, RESOURCE_EXHAUSTED,
// a frame the server could not decode) fails every pending call with that
// error and closes the connection, as libwhizbang does: which request it was
// about cannot be known. A frame above this client's limit, one that does
// not decode, a socket error, the server closing, or no byte from the
// server for deadAfterMs: every pending call and every sink fails, and so
// does every later call (ConnectionError). A call that times out or is
// aborted, or whose answer holds neither an error nor the body the request
// → answer table names (INTERNAL), rejects alone; the connection stays.
import type { Socket } from "node:net";
import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { RequestSchema, ResponseSchema, ErrorCode, type Response, type Request } from "./gen/whizbang_pb.js";
import { ANSWER, PROGRESS, type RequestCase, type ResponseCase } from "./answers.js";
import { FrameDecoder, FrameTooLargeError, DEFAULT_MAX_RESPONSE } from "./frame.js";
import { ConnectionError, TimeoutError, WhizbangError } from "./errors.js";

type RequestInit = MessageInitShape<typeof RequestSchema>;
type BodyInit = NonNullable<RequestInit["body"]>;
/** What a request of case C carries: its message or an init object. */
export type RequestValue<C extends RequestCase> = Extract<BodyInit, { case: C }>["value"];
type ResponseBody = Response["body"];
/** The message that answers a request of case C. */
export type AnswerOf<C extends RequestCase> = Extract<ResponseBody, { case: (typeof ANSWER)[C] }>["value"];

/** Options every call takes. */
export interface CallOptions {
  /** Rejects the call when it fires (with the signal's reason). */
  signal?: AbortSignal;
  /** The call's time limit in ms; by default the connection's timeoutMs.
   * 0: none. */
  timeoutMs?: number;
}

/** Where the Responses of a request go after (or besides) its answer. */
export interface PushSink {
  /** A Response carrying the request's id that is not its answer. */
  push(r: Response): void;
  /** The connection failed: nothing more will come. */
  fail(err: Error): void;
}

interface Pending {
  answer: ResponseCase;
  resolve(value: unknown): void;
  reject(err: unknown): void;
  /** Scavenge and Backup: where their progress pushes (done false) go;
   * the answer is the Response with done true. */
  progress?: (value: unknown) => void;
  cleanup(): void;
}

export interface ConnectionOptions {
  /** The default time limit of a call, in ms (0: none). */
  timeoutMs: number;
  /** The largest response frame accepted. */
  maxResponse?: number;
  /** Take the server for dead after this long without a byte from it (ms;
   * 0: never). The server sends a keepalive after 30 s of silence by
   * default, so twice that is the protocol's advice. */
  deadAfterMs?: number;
}

export class Connection {
  private readonly decoder: FrameDecoder;
  // Keyed by the id as a number (ids are counted from 1 and stay far below
  // 2^53): Map lookups by bigint cost several times more.
  private readonly pending = new Map<number, Pending>();
  private readonly sinks = new Map<number, PushSink>();
  private nextId = 1;
  private outQueue: Uint8Array[] = [];
  private outBytes = 0;
  private failure: Error | null = null;
  private lastByteAt = Date.now();
  private readonly deadTimer: NodeJS.Timeout | null = null;
  private readonly closed: Promise<void>;
  /** The server's max_frame once Hello is answered (requests above it are
   * refused here, so the connection survives them). */
  maxFrame = 4 * 1024 * 1024;
  readonly timeoutMs: number;

  constructor(private readonly socket: Socket, opts: ConnectionOptions) {
    this.timeoutMs = opts.timeoutMs;
    this.decoder = new FrameDecoder(opts.maxResponse ?? DEFAULT_MAX_RESPONSE);
    this.closed = new Promise((resolve) => socket.once("close", () => resolve()));
    socket.setNoDelay(true);
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("error", (err) => this.fail(new ConnectionError(`the connection failed: ${err.message}`, { cause: err })));
    socket.on("close", () => this.fail(new ConnectionError("the server closed the connection")));
    const dead = opts.deadAfterMs ?? 60_000;
    if (dead > 0) {
      this.deadTimer = setInterval(() => {
        if (Date.now() - this.lastByteAt > dead)
          this.fail(new ConnectionError(`no byte from the server for ${dead} ms: taken for dead`));
      }, Math.max(10, Math.floor(dead / 4)));
      this.deadTimer.unref();
    }
  }

  /** Why the connection cannot be used, or null while it can. */
  get broken(): Error | null {
    return this.failure;
  }

  /** Sends a request of case kase and resolves with its answer's body;
   * rejects with the server's WhizbangError, a ConnectionError, or the
   * abort reason. sink, when given, receives the request's later Responses
   * (a subscription's pushes), from before the answer arrives. */
  call<C extends RequestCase>(
    kase: C,
    value: RequestValue<C>,
    opts: CallOptions = {},
    extra: { sink?: PushSink; progress?: (value: AnswerOf<C>) => void; onId?: (id: bigint) => void } = {},
  ): Promise<AnswerOf<C>> {
    const encode = (id: bigint) =>
      toBinary(RequestSchema, create(RequestSchema, { id, body: { case: kase, value } as BodyInit }));
    return this.send(kase, encode, opts, extra);
  }

  /** call() with the request's bytes made by encode(id) (the append path's
   * own encoder); encode must give a Request of case kase. map, when
   * given, makes what the promise resolves with from the answer. */
  send<C extends RequestCase, T = AnswerOf<C>>(
    kase: C,
    encode: (id: bigint) => Uint8Array,
    opts: CallOptions = {},
    extra: {
      sink?: PushSink;
      progress?: (value: AnswerOf<C>) => void;
      onId?: (id: bigint) => void;
      map?: (value: AnswerOf<C>) => T;
    } = {},
  ): Promise<T> {
    if (this.failure !== null) return Promise.reject(this.unusable());
    const signal = opts.signal;
    if (signal?.aborted) return Promise.reject(signal.reason);
    const key = this.nextId++;
    const id = BigInt(key);
    let bytes: Uint8Array;
    try {
      bytes = encode(id);
    } catch (err) {
      return Promise.reject(err);
    }
    if (bytes.length > this.maxFrame)
      return Promise.reject(
        new RangeError(
          `this ${kase} request takes ${bytes.length} bytes, more than the server's max_frame of ` +
            `${this.maxFrame}: send less in one request`,
        ),
      );
    return new Promise<T>((resolve, reject) => {
      const timeoutMs = opts.timeoutMs ?? this.timeoutMs;
      let timer: NodeJS.Timeout | undefined;
      const onAbort = (): void => {
        this.forget(key);
        reject(signal!.reason);
      };
      const p: Pending = {
        answer: ANSWER[kase],
        resolve: (extra.map ? (v: unknown) => resolve(extra.map!(v as AnswerOf<C>)) : resolve) as (v: unknown) => void,
        reject,
        cleanup: () => {
          if (timer !== undefined) clearTimeout(timer);
          signal?.removeEventListener("abort", onAbort);
        },
      };
      if (PROGRESS.has(kase)) p.progress = (extra.progress as ((v: unknown) => void) | undefined) ?? (() => {});
      if (timeoutMs > 0) {
        timer = setTimeout(() => {
          this.forget(key);
          reject(new TimeoutError(`the ${kase} request got no answer within ${timeoutMs} ms`));
        }, timeoutMs);
      }
      signal?.addEventListener("abort", onAbort, { once: true });
      this.pending.set(key, p);
      if (extra.sink !== undefined) this.sinks.set(key, extra.sink);
      extra.onId?.(id);
      this.write(bytes);
    });
  }

  /** Stops the pushes of request id from reaching their sink. */
  dropSink(id: bigint): void {
    this.sinks.delete(Number(id));
  }

  /** Closes the connection: pending calls and sinks fail with a
   * ConnectionError. Resolves once the socket is closed. */
  close(): Promise<void> {
    this.fail(new ConnectionError("the connection was closed by this client"));
    return this.closed;
  }

  private forget(id: number): void {
    const p = this.pending.get(id);
    if (p === undefined) return;
    p.cleanup();
    this.pending.delete(id);
    this.sinks.delete(id);
  }

  private write(payload: Uint8Array): void {
    // Frames written in one tick of the loop leave together, in one buffer
    // and one write (pipelined appends): one system call, and one write
    // request for the stream to track instead of two per frame.
    if (this.outQueue.length === 0) process.nextTick(() => this.flush());
    this.outQueue.push(payload);
    this.outBytes += 4 + payload.length;
  }

  private flush(): void {
    const out = Buffer.allocUnsafe(this.outBytes);
    let pos = 0;
    for (const p of this.outQueue) {
      out.writeUInt32BE(p.length, pos);
      out.set(p, pos + 4);
      pos += 4 + p.length;
    }
    this.outQueue = [];
    this.outBytes = 0;
    if (this.failure === null) this.socket.write(out);
  }

  private onData(chunk: Buffer): void {
    this.lastByteAt = Date.now();
    let payloads: Buffer[];
    try {
      payloads = this.decoder.push(chunk);
    } catch (err) {
      const why = err instanceof FrameTooLargeError ? err.message : String(err);
      this.fail(new ConnectionError(why, { cause: err }));
      return;
    }
    for (const payload of payloads) {
      if (this.failure !== null) return;
      let r: Response;
      try {
        r = fromBinary(ResponseSchema, payload);
      } catch (err) {
        this.fail(new ConnectionError(`a response of ${payload.length} bytes does not decode`, { cause: err }));
        return;
      }
      this.dispatch(r);
    }
  }

  private dispatch(r: Response): void {
    const isError = r.error !== undefined && r.error.code !== ErrorCode.OK;
    if (r.id === 0n) {
      if (isError) {
        this.fail(serverError(r));
      } else if (r.body.case !== "pong") {
        this.fail(new ConnectionError(`the server sent a ${r.body.case ?? "Response"} with id 0, which answers nothing`));
      }
      return; // a keepalive
    }
    const key = Number(r.id);
    const p = this.pending.get(key);
    if (p !== undefined && r.body.case !== "subscriptionItem") {
      if (!isError && p.progress !== undefined && r.body.case === p.answer && !(r.body.value as { done?: boolean }).done) {
        try {
          p.progress(r.body.value);
        } catch (err) {
          // The caller's callback threw: the call fails with it, and the
          // rest of its answer goes nowhere.
          this.forget(key);
          p.reject(err);
        }
        return;
      }
      p.cleanup();
      this.pending.delete(key);
      if (isError) {
        this.sinks.delete(key);
        p.reject(serverError(r));
      } else if (r.body.case !== p.answer) {
        this.sinks.delete(key);
        p.reject(
          new WhizbangError(
            ErrorCode.INTERNAL,
            `the server's response holds neither an error nor a ${p.answer} (it holds ${r.body.case ?? "nothing"})`,
            undefined,
            r.id,
          ),
        );
      } else {
        p.resolve(r.body.value);
      }
      return;
    }
    // A push, or an answer to a call that timed out or was aborted.
    this.sinks.get(key)?.push(r);
  }

  private unusable(): Error {
    const f = this.failure!;
    if (f instanceof ConnectionError) return f;
    return new ConnectionError(`the connection is unusable: ${f.message}`, { cause: f });
  }

  /** Ends the connection for reason err: every pending call and sink gets
   * it; later calls get a ConnectionError. */
  private fail(err: Error): void {
    if (this.failure !== null) return;
    this.failure = err;
    if (this.deadTimer !== null) clearInterval(this.deadTimer);
    const pending = [...this.pending.values()];
    const sinks = [...this.sinks.values()];
    this.pending.clear();
    this.sinks.clear();
    this.socket.destroy();
    for (const p of pending) {
      p.cleanup();
      p.reject(err);
    }
    for (const s of sinks) s.fail(err);
  }
}

/** The WhizbangError a Response with an error carries. */
export function serverError(r: Response): WhizbangError {
  const e = r.error!;
  const actual = e.code === ErrorCode.WRONG_EXPECTED_VERSION ? e.actualVersion : undefined;
  return new WhizbangError(e.code, e.message, actual, r.id);
}

export type { Request, Response };
