// The append path's own encoder against the generated one: the same bytes
// for requests of every shape (empty and non-empty fields, several events,
// large ids and versions, multi-byte and ill-formed strings, long payloads).
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { create, toBinary } from "@bufbuild/protobuf";
import { pb } from "../dist/index.js";
import { encodeAppendRequest } from "../dist/appendcodec.js";

const strings = ["", "s", "orders-42", "Grüße-😀", "a\uD800b", "x".repeat(200), "y".repeat(300)];
const numbers = [0n, 1n, 127n, 128n, 16383n, 16384n, 2n ** 32n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 63n, 2n ** 64n - 1n];
const payloads = [0, 1, 100, 127, 128, 300, 20000];
const pick = (a, i) => a[i % a.length];

test("encodeAppendRequest writes the generated encoder's bytes", () => {
  let cases = 0;
  for (let i = 0; i < 600; i++) {
    const events = Array.from({ length: 1 + (i % 4) }, (_, k) => ({
      id: i % 5 === 0 ? new Uint8Array(0) : randomBytes(16),
      type: pick(strings, i + k),
      data: randomBytes(pick(payloads, i * 3 + k)),
      metadata: randomBytes(pick(payloads, i + 2 * k) % 50),
    }));
    const id = pick(numbers, i) === 0n ? 1n : pick(numbers, i);
    const stream = pick(strings, i * 7);
    const expected = i % 4;
    const expectedVersion = pick(numbers, i * 5);
    const mine = Buffer.from(encodeAppendRequest(id, stream, expected, expectedVersion, events));
    const ref = Buffer.from(
      toBinary(
        pb.RequestSchema,
        create(pb.RequestSchema, { id, body: { case: "appendEvents", value: { stream, expected, expectedVersion, events } } }),
      ),
    );
    assert.equal(mine.toString("hex"), ref.toString("hex"), `case ${i}`);
    cases++;
  }
  assert.equal(cases, 600);
});
