// Framing (docs/PROTOCOL.md §1): a 4-byte big-endian length, then that many
// bytes of protobuf. The decoder is pure (no socket in it), so a test can
// feed it a stream split at every byte offset.

/** The largest response frame a connection accepts by default (the bound
 * libwhizbang uses): the server keeps its answers within about its
 * max_frame, 4 MiB by default and at most 64 MiB. */
export const DEFAULT_MAX_RESPONSE = 64 * 1024 * 1024;

/** A frame whose header announces more than the decoder's limit. */
export class FrameTooLargeError extends Error {
  constructor(readonly length: number, readonly limit: number) {
    super(`the server sent a frame of ${length} bytes, more than this client's limit of ${limit}`);
    this.name = "FrameTooLargeError";
  }
}

/** Cuts a byte stream into frame payloads. */
export class FrameDecoder {
  // The bytes received and not yet returned, kept as the chunks they came
  // in until the next frame is complete (so that a large frame arriving in
  // many chunks is copied once, not once per chunk).
  private chunks: Buffer[] = [];
  private total = 0;
  // The bytes needed before anything more can be decoded: a header, or a
  // header and its payload.
  private need = 4;

  /** limit: the largest payload accepted, checked on the header before
   * anything is buffered for the payload. */
  constructor(private readonly limit: number = DEFAULT_MAX_RESPONSE) {}

  /** Bytes received and not yet part of a returned payload. */
  get buffered(): number {
    return this.total;
  }

  /** Takes the next bytes of the stream and returns the payloads it
   * completes, in order (none when a frame is still incomplete). Throws a
   * FrameTooLargeError as soon as a header above the limit is complete;
   * the decoder is then unusable, like the connection it reads. A payload
   * returned is a view of the chunks given. */
  push(chunk: Buffer): Buffer[] {
    this.chunks.push(chunk);
    this.total += chunk.length;
    if (this.total < this.need) return [];
    const data = this.chunks.length === 1 ? chunk : Buffer.concat(this.chunks, this.total);
    const out: Buffer[] = [];
    let pos = 0;
    this.need = 4;
    while (data.length - pos >= 4) {
      const len = data.readUInt32BE(pos);
      if (len > this.limit) throw new FrameTooLargeError(len, this.limit);
      if (data.length - pos - 4 < len) {
        this.need = 4 + len;
        break;
      }
      out.push(data.subarray(pos + 4, pos + 4 + len));
      pos += 4 + len;
    }
    const rest = data.subarray(pos);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.total = rest.length;
    return out;
  }
}

/** One frame: the header and the payload in one buffer. Throws a
 * RangeError for a payload longer than 2^32 - 1 bytes. */
export function encodeFrame(payload: Uint8Array): Buffer {
  if (payload.length > 0xffffffff) throw new RangeError("a frame's payload is longer than 2^32 - 1 bytes");
  const frame = Buffer.allocUnsafe(4 + payload.length);
  frame.writeUInt32BE(payload.length, 0);
  frame.set(payload, 4);
  return frame;
}
