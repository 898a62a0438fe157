// Client-made event ids: UUIDv7 with the version and variant bits, the time
// of making, and strictly increasing within the process.
import { test } from "node:test";
import assert from "node:assert/strict";
import { uuidv7, uuidText } from "../dist/index.js";

test("ids are UUIDv7 of now and increase strictly", () => {
  const t0 = Date.now();
  let prev = Buffer.alloc(16);
  for (let i = 0; i < 20000; i++) {
    const id = Buffer.from(uuidv7());
    assert.equal(id.length, 16);
    assert.equal(id[6] >> 4, 7, "version 7");
    assert.equal(id[8] >> 6, 2, "variant 10");
    assert.ok(Buffer.compare(prev, id) < 0, `id ${i} does not follow the one before`);
    prev = id;
  }
  const ms = prev.readUIntBE(0, 6);
  assert.ok(ms >= t0 && ms <= Date.now() + 1, `timestamp ${ms} is not now`);
  assert.match(uuidText(prev), /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
});
