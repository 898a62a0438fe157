// SCRAM-SHA-256 (RFC 5802 with RFC 7677), as docs/PROTOCOL.md §4.1 has it:
// no channel binding (gs2 header "n,,"), no SASLprep (names and passwords are
// UTF-8 without control characters, used as bytes), iteration counts from
// 4096 to 10 000 000, and the server's signature checked before the
// connection is trusted.
import { createHash, createHmac, pbkdf2, randomBytes, timingSafeEqual } from "node:crypto";
import { promisify } from "node:util";

const pbkdf2Async = promisify(pbkdf2);
const MIN_ITERATIONS = 4096;
const MAX_ITERATIONS = 10_000_000;
/** The default of whizbangd's --scram-iterations, the least PutUser takes
 * from a server left at its defaults. */
const DEFAULT_ITERATIONS = 100_000;

/** A user name or password SCRAM cannot carry. */
function checkText(what: string, s: string): void {
  if (s.length === 0) throw new TypeError(`the ${what} is empty`);
  for (const c of s) {
    const cp = c.codePointAt(0)!;
    if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0)) throw new TypeError(`the ${what} holds a control character`);
  }
}

function hmac(key: Buffer, text: string): Buffer {
  return createHmac("sha256", key).update(text, "utf8").digest();
}

function sha256(b: Buffer): Buffer {
  return createHash("sha256").update(b).digest();
}

function xor(a: Buffer, b: Buffer): Buffer {
  const out = Buffer.allocUnsafe(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! ^ b[i]!;
  return out;
}

async function saltedPassword(password: string, salt: Buffer, iterations: number): Promise<Buffer> {
  return pbkdf2Async(Buffer.from(password, "utf8"), salt, iterations, 32, "sha256");
}

/** The client's side of one exchange. */
export class ScramClient {
  private readonly nonce = randomBytes(18).toString("base64");
  private readonly firstBare: string;
  private serverSignature: Buffer | null = null;

  constructor(user: string, private readonly password: string) {
    checkText("user name", user);
    checkText("password", password);
    this.firstBare = `n=${user.replace(/=/g, "=3D").replace(/,/g, "=2C")},r=${this.nonce}`;
  }

  /** The client-first-message (Hello.auth_data). */
  first(): string {
    return `n,,${this.firstBare}`;
  }

  /** The client-final-message for the server-first-message
   * (HelloResult.auth_data); throws an Error when the server's message is
   * not one this exchange can go on with. */
  async final(serverFirst: string): Promise<string> {
    const attrs = new Map<string, string>();
    for (const part of serverFirst.split(",")) {
      const eq = part.indexOf("=");
      if (eq !== 1) throw new Error("the server-first-message is malformed");
      attrs.set(part[0]!, part.slice(2));
    }
    const r = attrs.get("r");
    const s = attrs.get("s");
    const i = attrs.get("i");
    if (r === undefined || s === undefined || i === undefined)
      throw new Error("the server-first-message lacks r=, s= or i=");
    if (!r.startsWith(this.nonce) || r.length === this.nonce.length)
      throw new Error("the server's nonce does not extend this client's");
    if (!/^[0-9]{1,9}$/.test(i) || Number(i) < MIN_ITERATIONS || Number(i) > MAX_ITERATIONS)
      throw new Error(`the server asks for an iteration count outside ${MIN_ITERATIONS}-${MAX_ITERATIONS}`);
    const salt = Buffer.from(s, "base64");
    if (salt.length === 0) throw new Error("the server-first-message has no salt");
    const salted = await saltedPassword(this.password, salt, Number(i));
    const clientKey = hmac(salted, "Client Key");
    const withoutProof = `c=biws,r=${r}`;
    const authMessage = `${this.firstBare},${serverFirst},${withoutProof}`;
    const proof = xor(clientKey, hmac(sha256(clientKey), authMessage));
    this.serverSignature = hmac(hmac(salted, "Server Key"), authMessage);
    return `${withoutProof},p=${proof.toString("base64")}`;
  }

  /** Whether the server-final-message proves the server holds the
   * password's keys. */
  verify(serverFinal: string): boolean {
    if (this.serverSignature === null || !serverFinal.startsWith("v=")) return false;
    const v = Buffer.from(serverFinal.slice(2), "base64");
    return v.length === this.serverSignature.length && timingSafeEqual(v, this.serverSignature);
  }
}

/** The stored form of a password's SCRAM-SHA-256 verifier, as PutUser takes
 * it (`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`), made
 * with a random salt of 16 bytes: the password itself never leaves.
 * iterations: 100 000 by default (whizbangd's default --scram-iterations,
 * below which the server refuses it). */
export async function scramCredential(password: string, iterations = DEFAULT_ITERATIONS): Promise<string> {
  checkText("password", password);
  if (!Number.isInteger(iterations) || iterations < MIN_ITERATIONS || iterations > MAX_ITERATIONS)
    throw new RangeError(`iterations must be from ${MIN_ITERATIONS} to ${MAX_ITERATIONS}`);
  const salt = randomBytes(16);
  const salted = await saltedPassword(password, salt, iterations);
  const storedKey = sha256(hmac(salted, "Client Key"));
  const serverKey = hmac(salted, "Server Key");
  return `SCRAM-SHA-256$${iterations}:${salt.toString("base64")}$${storedKey.toString("base64")}:${serverKey.toString("base64")}`;
}
