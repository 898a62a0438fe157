// Ledger operations and where clauses (docs/QUERIES.md, docs/PROTOCOL.md
// §4.9), in their text form or built from JavaScript values. The server
// parses the text forms itself (INVALID_EXPRESSION naming the column on a
// mistake), so `Op.text()` and a where given as a string are sent as they
// are; the builders make the same trees the text maps onto.
import { create } from "@bufbuild/protobuf";
import {
  CompareOp,
  ExprSchema,
  OpSchema,
  ValueSchema,
  WhereSchema,
  type Entity,
  type Expr as ExprMessage,
  type Op as OpMessage,
  type Value as ValueMessage,
  type Where as WhereMessage,
} from "./gen/whizbang_pb.js";

/** A field's value as JavaScript holds it: a string, a bigint (an int), a
 * number (an int when it is an integer, else a double: wrap it in
 * Value.double() to send an integral double), a boolean, bytes, or null. */
export type JsValue = string | number | bigint | boolean | Uint8Array | null | ValueMessage;

export const Value = {
  /** The Value message for v. */
  of(v: JsValue): ValueMessage {
    if (v === null) return create(ValueSchema, { kind: { case: "nullValue", value: true } });
    switch (typeof v) {
      case "string":
        return create(ValueSchema, { kind: { case: "stringValue", value: v } });
      case "bigint":
        return create(ValueSchema, { kind: { case: "intValue", value: v } });
      case "number":
        return Number.isSafeInteger(v)
          ? create(ValueSchema, { kind: { case: "intValue", value: BigInt(v) } })
          : create(ValueSchema, { kind: { case: "doubleValue", value: v } });
      case "boolean":
        return create(ValueSchema, { kind: { case: "boolValue", value: v } });
    }
    if (v instanceof Uint8Array) return create(ValueSchema, { kind: { case: "bytesValue", value: v } });
    if (typeof v === "object" && v.$typeName === "whizbang.v1.Value") return v;
    throw new TypeError(`a field's value cannot be ${typeof v}`);
  },
  /** A double, even when x is integral. */
  double(x: number): ValueMessage {
    return create(ValueSchema, { kind: { case: "doubleValue", value: x } });
  },
  /** The JavaScript value a Value holds (ints as bigint). */
  toJs(v: ValueMessage | undefined): string | bigint | number | boolean | Uint8Array | null {
    switch (v?.kind.case) {
      case "stringValue":
      case "intValue":
      case "doubleValue":
      case "boolValue":
      case "bytesValue":
        return v.kind.value;
      default:
        return null;
    }
  },
};

/** An entity's fields as an object of JavaScript values. */
export function fieldsOf(entity: Entity): Record<string, string | bigint | number | boolean | Uint8Array | null> {
  const out: Record<string, string | bigint | number | boolean | Uint8Array | null> = {};
  for (const f of entity.fields) out[f.name] = Value.toJs(f.value);
  return out;
}

function compare(field: string, op: CompareOp, v: JsValue): ExprMessage {
  return create(ExprSchema, { node: { case: "compare", value: { field, op, value: Value.of(v) } } });
}

/** Where-clause trees, the same the text form maps onto. */
export const Expr = {
  eq: (field: string, v: JsValue) => compare(field, CompareOp.EQ, v),
  ne: (field: string, v: JsValue) => compare(field, CompareOp.NE, v),
  lt: (field: string, v: JsValue) => compare(field, CompareOp.LT, v),
  le: (field: string, v: JsValue) => compare(field, CompareOp.LE, v),
  gt: (field: string, v: JsValue) => compare(field, CompareOp.GT, v),
  ge: (field: string, v: JsValue) => compare(field, CompareOp.GE, v),
  in: (field: string, values: JsValue[]) =>
    create(ExprSchema, { node: { case: "inList", value: { field, values: values.map(Value.of) } } }),
  notIn: (field: string, values: JsValue[]) =>
    create(ExprSchema, { node: { case: "inList", value: { field, values: values.map(Value.of), negated: true } } }),
  exists: (field: string) => create(ExprSchema, { node: { case: "exists", value: { field } } }),
  startsWith: (field: string, prefix: string) =>
    create(ExprSchema, { node: { case: "startsWith", value: { field, prefix } } }),
  and: (...terms: ExprMessage[]) => create(ExprSchema, { node: { case: "allOf", value: { terms } } }),
  or: (...terms: ExprMessage[]) => create(ExprSchema, { node: { case: "anyOf", value: { terms } } }),
  not: (term: ExprMessage) => create(ExprSchema, { node: { case: "negate", value: term } }),
};

/** A where clause: its text (`status == "Pending" and total >= 100`), a
 * tree built with Expr, or a Where message. */
export type WhereInput = string | ExprMessage | WhereMessage;

export function toWhere(w: WhereInput): WhereMessage {
  if (typeof w === "string") return create(WhereSchema, { text: w });
  if (w.$typeName === "whizbang.v1.Where") return w;
  return create(WhereSchema, { expr: w });
}

function fieldList(fields: Record<string, JsValue>) {
  return Object.entries(fields).map(([name, v]) => ({ name, value: Value.of(v) }));
}

/** What an update does to each entity it matches. */
export interface UpdateActions {
  set?: Record<string, JsValue>;
  unset?: string[];
  /** Adds by (an int or a double) to the field. */
  inc?: Record<string, number | bigint>;
}

/** Ledger operations (what a Commit or a Stage carries). */
export const Op = {
  /** One operation in its text form, parsed by the server, e.g.
   * `update Order where status == "Pending" set status = "Paid"`. */
  text: (text: string): OpMessage => create(OpSchema, { kind: { case: "text", value: text } }),
  /** Creates or replaces (merge: merges into) the entity type/id. */
  upsert: (type: string, id: string, fields: Record<string, JsValue>, opts: { merge?: boolean } = {}): OpMessage =>
    create(OpSchema, {
      kind: { case: "upsert", value: { type, id, fields: fieldList(fields), merge: opts.merge ?? false } },
    }),
  /** Changes every entity of type that where matches; createIfNone makes
   * one when none does. */
  update: (
    type: string,
    where: WhereInput,
    actions: UpdateActions,
    createIfNone?: { id: string; fields: Record<string, JsValue> },
  ): OpMessage => {
    const list = [
      ...Object.entries(actions.set ?? {}).map(([field, v]) => ({
        kind: { case: "set" as const, value: { field, value: Value.of(v) } },
      })),
      ...(actions.unset ?? []).map((field) => ({ kind: { case: "unset" as const, value: field } })),
      ...Object.entries(actions.inc ?? {}).map(([field, by]) => ({
        kind: { case: "increment" as const, value: { field, by: Value.of(by) } },
      })),
    ];
    return create(OpSchema, {
      kind: {
        case: "update",
        value: {
          type,
          where: toWhere(where),
          actions: list,
          ...(createIfNone ? { createIfNone: { id: createIfNone.id, fields: fieldList(createIfNone.fields) } } : {}),
        },
      },
    });
  },
  /** Deletes the entity type/id, or every entity of type a where matches. */
  delete: (type: string, target: string | { where: WhereInput }): OpMessage =>
    create(OpSchema, {
      kind: {
        case: "delete",
        value: {
          type,
          target:
            typeof target === "string"
              ? { case: "id", value: target }
              : { case: "where", value: toWhere(target.where) },
        },
      },
    }),
  createIndex: (type: string, field: string): OpMessage =>
    create(OpSchema, { kind: { case: "createIndex", value: { type, field } } }),
  dropIndex: (type: string, field: string): OpMessage =>
    create(OpSchema, { kind: { case: "dropIndex", value: { type, field } } }),
};

/** An operation given to commit() or stage(): a built Op or its text. */
export type OpInput = OpMessage | string;

export function toOp(op: OpInput): OpMessage {
  return typeof op === "string" ? Op.text(op) : op;
}
