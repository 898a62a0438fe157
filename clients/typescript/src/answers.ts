// Which Response body answers which Request body: docs/PROTOCOL.md §2's
// table, once, as data. test/answers.test.mjs reads the document's table and
// fails when the two differ or when a request of the .proto is missing.
import type { Request, Response } from "./gen/whizbang_pb.js";

export type RequestCase = NonNullable<Request["body"]["case"]>;
export type ResponseCase = NonNullable<Response["body"]["case"]>;

export const ANSWER = {
  hello: "hello",
  ping: "pong",
  appendEvents: "appendEvents",
  readStream: "readStream",
  readAll: "readAll",
  getStreamInfo: "streamInfo",
  getStats: "stats",
  lease: "lease",
  extend: "extend",
  release: "release",
  stage: "stage",
  commit: "commit",
  readLedger: "readLedger",
  getWatermark: "watermark",
  waitForWatermark: "watermark",
  getEntity: "getEntity",
  queryEntities: "query",
  createIndex: "index",
  dropIndex: "index",
  listIndexes: "indexes",
  explain: "plan",
  verify: "verify",
  subscribe: "subscribe",
  credit: "credit",
  unsubscribe: "unsubscribe",
  createConsumer: "consumer",
  deleteConsumer: "deleteConsumer",
  listConsumers: "consumers",
  joinConsumer: "subscribe",
  ack: "ack",
  nack: "nack",
  listParked: "parked",
  replayParked: "replayParked",
  setStreamMetadata: "streamMetadata",
  getStreamMetadata: "streamMetadata",
  deleteStream: "deleteStream",
  scavenge: "scavenge",
  backup: "backup",
  authenticate: "authenticate",
  putUser: "putUser",
  deleteUser: "deleteUser",
  listUsers: "users",
  putRole: "putRole",
  deleteRole: "deleteRole",
  listRoles: "roles",
  createToken: "createToken",
  revokeToken: "revokeToken",
  listTokens: "tokens",
  reload: "reload",
  listClients: "clients",
  disconnect: "disconnect",
} as const satisfies Record<RequestCase, ResponseCase>;

/** Requests whose answers come as several Responses with the request's id,
 * the last with `done` true (progress pushes, §2). */
export const PROGRESS: ReadonlySet<RequestCase> = new Set<RequestCase>(["scavenge", "backup"]);
