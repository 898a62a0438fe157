// Event ids: UUIDv7 (RFC 9562), made by the client so that an append retried
// after a lost answer carries the same ids and is answered as a replay
// (docs/PROTOCOL.md §4.3, Idempotency). The ids of one process increase
// strictly (RFC 9562 §6.2, method 1: a 42-bit counter after the
// milliseconds, seeded at random each millisecond), as the C bench's do, so
// that the server's index of ids takes them in order.
import { randomFillSync } from "node:crypto";

// Random bytes are drawn in blocks: one system call per 512 ids.
const pool = Buffer.allocUnsafe(4096);
let poolPos = pool.length;
// Ids are views of slabs of 256 (one buffer allocation per 256 ids rather
// than one per id); a slab lives as long as one of its ids is held.
let slab = new Uint8Array(0);
let slabPos = 0;
let lastMs = 0;
let counter = 0;
const COUNTER_LIMIT = 2 ** 42;

function random(n: number): Buffer {
  if (poolPos + n > pool.length) {
    randomFillSync(pool);
    poolPos = 0;
  }
  poolPos += n;
  return pool.subarray(poolPos - n, poolPos);
}

/** A new UUIDv7 as its 16 bytes: 48 bits of Unix milliseconds, the
 * version, a 42-bit counter, the variant and 32 random bits. A clock that
 * goes back does not make ids go back: the last millisecond is kept. */
export function uuidv7(): Uint8Array {
  let ms = Date.now();
  if (ms <= lastMs) {
    ms = lastMs;
    if (++counter >= COUNTER_LIMIT) {
      ms = lastMs + 1;
      counter = -1;
    }
  } else {
    counter = -1;
  }
  if (counter < 0) {
    // A random start below 2^41 leaves 2^41 ids of room in the millisecond.
    const r = random(6);
    counter = (r.readUInt32BE(0) % 2 ** 25) * 2 ** 16 + r.readUInt16BE(4);
  }
  lastMs = ms;
  if (slabPos === slab.length) {
    slab = new Uint8Array(16 * 256);
    slabPos = 0;
  }
  const id = slab.subarray(slabPos, slabPos + 16);
  slabPos += 16;
  let t = ms;
  for (let i = 5; i >= 0; i--) {
    id[i] = t % 256;
    t = Math.floor(t / 256);
  }
  const hi = Math.floor(counter / 2 ** 30);
  const lo = counter % 2 ** 30;
  id[6] = 0x70 | (hi >>> 8);
  id[7] = hi & 0xff;
  id[8] = 0x80 | (lo >>> 24);
  id[9] = (lo >>> 16) & 0xff;
  id[10] = (lo >>> 8) & 0xff;
  id[11] = lo & 0xff;
  id.set(random(4), 12);
  return id;
}

/** The 8-4-4-4-12 text form of a 16-byte id. */
export function uuidText(id: Uint8Array): string {
  const h = Buffer.from(id).toString("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
