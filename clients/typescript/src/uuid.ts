// Event ids: UUIDv7 (RFC 9562), made by the client so that an append retried
// after a lost answer carries the same ids and is answered as a replay
// (docs/PROTOCOL.md §4.3, Idempotency).
import { randomFillSync } from "node:crypto";

// Random bytes are drawn in blocks: one system call per 409 ids.
const pool = Buffer.allocUnsafe(4096);
let poolPos = pool.length;

/** A new UUIDv7 as its 16 bytes: 48 bits of Unix milliseconds, the version,
 * 74 random bits and the variant. */
export function uuidv7(): Uint8Array {
  if (poolPos + 10 > pool.length) {
    randomFillSync(pool);
    poolPos = 0;
  }
  const id = new Uint8Array(16);
  let ms = Date.now();
  for (let i = 5; i >= 0; i--) {
    id[i] = ms % 256;
    ms = Math.floor(ms / 256);
  }
  id.set(pool.subarray(poolPos, poolPos + 10), 6);
  poolPos += 10;
  id[6] = 0x70 | (id[6]! & 0x0f);
  id[8] = 0x80 | (id[8]! & 0x3f);
  return id;
}

/** The 8-4-4-4-12 text form of a 16-byte id. */
export function uuidText(id: Uint8Array): string {
  const h = Buffer.from(id).toString("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
