// The frame decoder on its own: a stream of frames split at every byte
// offset gives the same payloads; the limit is checked on the header alone.
import { test } from "node:test";
import assert from "node:assert/strict";
import { FrameDecoder, FrameTooLargeError, encodeFrame } from "../dist/index.js";

const payloads = [Buffer.from("a"), Buffer.alloc(0), Buffer.from("hello, whizbang"), Buffer.alloc(300, 7)];
const stream = Buffer.concat(payloads.map(encodeFrame));

test("a stream split at every offset (into two and into three) decodes the same", () => {
  for (let i = 0; i <= stream.length; i++) {
    for (const j of [i, Math.min(stream.length, i + 1), Math.min(stream.length, i + 5)]) {
      const d = new FrameDecoder(1024);
      const got = [
        ...d.push(stream.subarray(0, i)),
        ...d.push(stream.subarray(i, j)),
        ...d.push(stream.subarray(j)),
      ];
      assert.deepEqual(got.map((b) => b.toString("hex")), payloads.map((b) => b.toString("hex")), `split at ${i}, ${j}`);
      assert.equal(d.buffered, 0);
    }
  }
});

test("byte by byte", () => {
  const d = new FrameDecoder(1024);
  const got = [];
  for (const b of stream) got.push(...d.push(Buffer.from([b])));
  assert.equal(got.length, payloads.length);
});

test("a header above the limit is refused before its payload arrives", () => {
  const d = new FrameDecoder(16);
  assert.deepEqual(d.push(Buffer.from([0, 0])), []);
  assert.throws(() => d.push(Buffer.from([0, 17])), (e) => e instanceof FrameTooLargeError && e.length === 17 && e.limit === 16);
  const ok = new FrameDecoder(16);
  assert.equal(ok.push(encodeFrame(Buffer.alloc(16))).length, 1);
});

test("an incomplete frame is held, not returned", () => {
  const d = new FrameDecoder(1024);
  assert.deepEqual(d.push(stream.subarray(0, stream.length - 1)).length, payloads.length - 1);
  assert.equal(d.buffered, 4 + 300 - 1);
});
