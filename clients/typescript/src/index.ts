// @whizbang/client: the Node.js client of whizbangd (docs/PROTOCOL.md).
export {
  connect,
  Client,
  PROTOCOL_VERSION,
  ALPN,
  type ConnectOptions,
  type ReconnectOptions,
  type EventInput,
  type Expected,
  type AppendOptions,
  type AppendOutcome,
  type ReadOptions,
  type ReadStreamOptions,
  type ReadAllOptions,
  type SubscribeOptions,
  type LeaseOptions,
  type LeaseRef,
  type CommitOptions,
  type WorkContext,
  type WithLeaseOptions,
  type QueryOptions,
  type ConsumerOptions,
} from "./client.js";
export { type CallOptions } from "./connection.js";
export {
  WhizbangError,
  ApplyError,
  ConnectionError,
  TimeoutError,
  WatermarkTimeoutError,
  ErrorCode,
  errorCodeName,
  type ClientError,
} from "./errors.js";
export { parseUrl, UrlError, DEFAULT_PORT, type WhizbangUrl } from "./url.js";
export { Subscription, type SubscriptionItem } from "./subscription.js";
export { Op, Expr, Value, fieldsOf, toWhere, toOp, type OpInput, type WhereInput, type JsValue, type UpdateActions } from "./ops.js";
export { uuidv7, uuidText } from "./uuid.js";
export { scramCredential } from "./scram.js";
export { FrameDecoder, FrameTooLargeError, encodeFrame, DEFAULT_MAX_RESPONSE } from "./frame.js";
export { ANSWER } from "./answers.js";
// The generated messages and enums, for the types of what the calls return
// and for Client.call().
export * as pb from "./gen/whizbang_pb.js";
