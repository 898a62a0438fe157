// Connection URLs (docs/PROTOCOL.md, "Connection URLs"): a strict parser of
// the two schemes, giving the answers of the document's case table, which
// test/url.test.mjs reads and runs row by row.
//
// The text is cut from the outside in, in the order client/wb_url.c cuts it,
// so that a URL with two faults is refused for the same one in every client:
// the scheme, a fragment (refused), the query (its parameters read one by one
// by name), then the rest by scheme. A refusal is a UrlError whose message
// names the part at fault; it never quotes the user part (it could be
// "user:password") nor a parameter's value.
import { isIPv6 as nodeIsIPv6 } from "node:net";

/** An IPv6 address as inet_pton() takes it (and a certificate carries it):
 * without a zone index ("%eth0"), which node:net's isIPv6() accepts. */
function isIPv6(s: string): boolean {
  return !s.includes("%") && nodeIsIPv6(s);
}

const SCHEME = "whizbang://";
const UNIX_SCHEME = "whizbang+unix://";
export const DEFAULT_PORT = 7411;
const USER_MAX = 255;
const HOST_MAX = 253;
const PATH_MAX = 107;
const FILE_MAX = 1024;

/** What a connection URL says. Strings that the URL does not give are "". */
export interface WhizbangUrl {
  /** The user a password is asked for (SCRAM-SHA-256), decoded. */
  user: string;
  /** The address as `HOST:PORT`, `[V6]:PORT` or `unix:PATH`. */
  address: string;
  /** TCP: the host (an IPv6 address without brackets) and the port. */
  host: string;
  port: number;
  /** whizbang+unix: the socket's path, decoded. */
  unixSocket: boolean;
  path: string;
  tls: boolean;
  tlsCaFile: string;
  tlsCertFile: string;
  tlsKeyFile: string;
  tlsServerName: string;
  /** authMechanism=EXTERNAL: log in as the client certificate's user. */
  external: boolean;
}

/** A URL refused by parseUrl(); the message says which part and why. */
export class UrlError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UrlError";
  }
}

const PARAMS = ["tls", "tlsCaFile", "tlsCertFile", "tlsKeyFile", "tlsServerName", "authMechanism"] as const;
type Param = (typeof PARAMS)[number];
/** Names other clients use, and what this one calls them. */
const OTHER_NAMES: Record<string, Param> = {
  ca: "tlsCaFile",
  cert: "tlsCertFile",
  key: "tlsKeyFile",
  ssl: "tls",
  sni: "tlsServerName",
  tlsCAFile: "tlsCaFile",
  servername: "tlsServerName",
};

const utf8 = new TextDecoder("utf-8", { fatal: true });

function hexDigit(ch: string | undefined): number {
  if (ch === undefined) return -1;
  const v = "0123456789abcdef".indexOf(ch.toLowerCase());
  return v;
}

/** RFC 3986's unreserved and sub-delims: what a user or a path may hold
 * without percent-encoding (a path also ':', '@' and '/'). */
function plainChar(ch: string, inPath: boolean): boolean {
  if (/^[A-Za-z0-9]$/.test(ch)) return true;
  if ("-._~!$&'()*+,;=".includes(ch)) return true;
  return inPath && (ch === ":" || ch === "@" || ch === "/");
}

/** Percent-decodes s: the bytes must be valid UTF-8 without control
 * characters, at most max bytes. what names the part in messages. */
function decode(s: string, inPath: boolean, max: number, what: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const ch = s[i]!;
    let b: number;
    if (ch === "%") {
      const hi = i + 2 < s.length ? hexDigit(s[i + 1]) : -1;
      const lo = i + 2 < s.length ? hexDigit(s[i + 2]) : -1;
      if (hi < 0 || lo < 0) throw new UrlError(`a % in the ${what} starts no escape of two hex digits`);
      b = hi * 16 + lo;
      i += 2;
    } else if (!plainChar(ch, inPath)) {
      const code = ch.charCodeAt(0);
      throw new UrlError(
        `a character in the ${what} must be percent-encoded (%XX): ` +
          `${code < 0x80 ? "byte 0x" + code.toString(16).padStart(2, "0") : "'" + ch + "'"} at offset ${i}`,
      );
    } else {
      b = ch.charCodeAt(0);
    }
    if (bytes.length + 1 > max) throw new UrlError(`the ${what} is longer than ${max} bytes`);
    bytes.push(b);
  }
  let text: string;
  try {
    text = utf8.decode(Uint8Array.from(bytes));
  } catch {
    throw new UrlError(`the ${what} is not valid UTF-8`);
  }
  for (const c of text) {
    const cp = c.codePointAt(0)!;
    if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0)) throw new UrlError(`the ${what} holds a control character`);
  }
  return text;
}

/** A parameter's name as a refusal shows it: at most 32 characters, each
 * printable ASCII or '?'. */
function shownName(s: string): string {
  let out = "";
  for (const ch of s.slice(0, 32)) out += ch > " " && ch < "\x7f" ? ch : "?";
  return out;
}

function hostChars(h: string): number | null {
  for (let i = 0; i < h.length; i++) {
    if (!/^[A-Za-z0-9._-]$/.test(h[i]!)) return h.charCodeAt(i);
  }
  return null;
}

function unknownParam(name: string): UrlError {
  const shown = shownName(name);
  for (const p of PARAMS)
    if (p.toLowerCase() === name.toLowerCase())
      return new UrlError(`unknown parameter '${shown}' (names are case-sensitive: ${p})`);
  const other = Object.prototype.hasOwnProperty.call(OTHER_NAMES, name) ? OTHER_NAMES[name] : undefined;
  if (other !== undefined) return new UrlError(`unknown parameter '${shown}' (did you mean ${other}?)`);
  return new UrlError(
    `unknown parameter '${shown}' (this client takes tls, tlsCaFile, tlsCertFile, ` +
      `tlsKeyFile, tlsServerName and authMechanism)`,
  );
}

interface Query {
  given: Set<Param>;
  tlsValue: boolean;
  external: boolean;
  scram: boolean;
}

function serverName(v: string): string {
  let out = decode(v, true, HOST_MAX, "value of parameter 'tlsServerName'");
  if (out.length >= 2 && out.startsWith("[") && out.endsWith("]")) out = out.slice(1, -1);
  if (isIPv6(out) || (out.length > 0 && hostChars(out) === null)) return out;
  throw new UrlError("parameter 'tlsServerName' is not a DNS name or an IP address");
}

function param(u: WhizbangUrl, q: Query, k: Param, v: string): void {
  const what = `value of parameter '${k}'`;
  switch (k) {
    case "tls":
      if (v === "true") q.tlsValue = true;
      else if (v !== "false") throw new UrlError("parameter 'tls' takes true or false");
      return;
    case "tlsCaFile":
      u.tlsCaFile = decode(v, true, FILE_MAX, what);
      return;
    case "tlsCertFile":
      u.tlsCertFile = decode(v, true, FILE_MAX, what);
      return;
    case "tlsKeyFile":
      u.tlsKeyFile = decode(v, true, FILE_MAX, what);
      return;
    case "tlsServerName":
      u.tlsServerName = serverName(v);
      return;
    case "authMechanism":
      if (v === "EXTERNAL") q.external = true;
      else if (v === "SCRAM-SHA-256") q.scram = true;
      else throw new UrlError("parameter 'authMechanism' takes EXTERNAL or SCRAM-SHA-256");
      return;
  }
}

/** The query (after '?'): NAME=VALUE pairs between '&', each name at most
 * once. An empty query ("?" alone) holds none. */
function params(u: WhizbangUrl, qs: Query, q: string): void {
  let i = 0;
  while (i < q.length) {
    let end = q.indexOf("&", i);
    if (end < 0) end = q.length;
    const pair = q.slice(i, end);
    const eq = pair.indexOf("=");
    const name = eq < 0 ? pair : pair.slice(0, eq);
    if (name.length === 0) throw new UrlError("a parameter of the URL has no name");
    const k = PARAMS.find((p) => p === name);
    if (k === undefined) throw unknownParam(name);
    if (qs.given.has(k)) throw new UrlError(`parameter '${k}' is given twice`);
    if (eq < 0 || eq === pair.length - 1) throw new UrlError(`parameter '${k}' has no value`);
    param(u, qs, k, pair.slice(eq + 1));
    qs.given.add(k);
    if (end + 1 === q.length) throw new UrlError("a parameter of the URL has no name");
    i = end < q.length ? end + 1 : end;
  }
}

/** What the parameters say together, and with the rest of the URL. */
function checkQuery(u: WhizbangUrl, q: Query): void {
  let tlsParams = false;
  for (const k of ["tlsCaFile", "tlsCertFile", "tlsKeyFile", "tlsServerName"] as const) {
    if (!q.given.has(k)) continue;
    tlsParams = true;
    if (q.given.has("tls") && !q.tlsValue) throw new UrlError(`tls=false contradicts parameter '${k}'`);
  }
  u.tls = q.tlsValue || tlsParams;
  if (u.tls && u.unixSocket) {
    const k = PARAMS.find((p) => q.given.has(p))!;
    throw new UrlError(`parameter '${k}': TLS does not apply to a Unix socket (it never leaves the machine)`);
  }
  if (q.given.has("tlsCertFile") !== q.given.has("tlsKeyFile"))
    throw new UrlError("tlsCertFile and tlsKeyFile go together: a client certificate and its key");
  if (q.external && !u.tls)
    throw new UrlError("authMechanism=EXTERNAL needs TLS with a client certificate (tlsCertFile and tlsKeyFile)");
  if (q.external && u.user !== "")
    throw new UrlError("authMechanism=EXTERNAL takes its user from the client certificate: leave USER@ out");
  if (q.scram && u.user === "")
    throw new UrlError("authMechanism=SCRAM-SHA-256 needs a user: whizbang://USER@HOST");
  u.external = q.external;
}

function portOf(p: string): number {
  if (p.length === 0) throw new UrlError("the port after ':' is empty");
  if (!/^[0-9]{1,5}$/.test(p)) throw new UrlError("the port is not a number from 1 to 65535");
  const v = Number(p);
  if (v === 0 || v > 65535) throw new UrlError("the port is not a number from 1 to 65535");
  return v;
}

/** whizbang://: the authority a and what follows it (nothing, or "/"). */
function parseTcp(u: WhizbangUrl, a: string, rest: string): void {
  if (!(rest === "" || rest === "/"))
    throw new UrlError("a whizbang:// URL has no path: it ends after HOST[:PORT] (or one '/')");
  const at = a.indexOf("@");
  if (at >= 0) {
    const userPart = a.slice(0, at);
    if (userPart.includes(":"))
      throw new UrlError(
        "a password does not belong in a URL: give the user alone and the password " +
          "through the password option or WHIZBANG_PASSWORD",
      );
    if (userPart.length === 0) throw new UrlError("the user before '@' is empty");
    u.user = decode(userPart, false, USER_MAX, "user");
    a = a.slice(at + 1);
  }
  if (a.length === 0) throw new UrlError("the URL names no host: whizbang://HOST[:PORT]");
  let host: string;
  let after: string;
  const v6 = a.startsWith("[");
  if (v6) {
    const close = a.indexOf("]");
    if (close < 0) throw new UrlError("the IPv6 address has no closing ']'");
    host = a.slice(1, close);
    after = a.slice(close + 1);
    if (host.length === 0 || host.length > HOST_MAX || !isIPv6(host))
      throw new UrlError("the host in brackets is not an IPv6 address");
  } else {
    const colon = a.indexOf(":");
    if (colon >= 0 && a.indexOf(":", colon + 1) >= 0)
      throw new UrlError("write an IPv6 address in brackets: whizbang://[::1]:7411");
    host = colon >= 0 ? a.slice(0, colon) : a;
    after = a.slice(host.length);
    if (host.length === 0) throw new UrlError("the URL names no host: whizbang://HOST[:PORT]");
    if (host.length > HOST_MAX) throw new UrlError(`the host is longer than ${HOST_MAX} bytes`);
    const bad = hostChars(host);
    if (bad !== null)
      throw new UrlError(
        "the host holds a character other than letters, digits, '-', '.' and '_' " +
          `(byte 0x${bad.toString(16).padStart(2, "0")})`,
      );
  }
  let port = DEFAULT_PORT;
  if (after.length > 0) {
    if (!after.startsWith(":")) throw new UrlError("after the IPv6 address comes ':PORT' or nothing");
    port = portOf(after.slice(1));
  }
  u.host = host;
  u.port = port;
  u.address = v6 ? `[${host}]:${port}` : `${host}:${port}`;
}

/** whizbang+unix://: r is everything after the scheme, before '?'. */
function parseUnix(u: WhizbangUrl, r: string): void {
  if (!r.startsWith("/"))
    throw new UrlError(
      "a whizbang+unix URL names no host: its path follows the scheme, three slashes in all " +
        "(whizbang+unix:///PATH)",
    );
  if (r.length === 1) throw new UrlError("the URL names no socket path");
  u.path = decode(r, true, PATH_MAX, "socket path");
  u.unixSocket = true;
  u.address = `unix:${u.path}`;
}

/** Parses a connection URL; throws a UrlError naming what is wrong. */
export function parseUrl(text: string): WhizbangUrl {
  const lower = text.slice(0, UNIX_SCHEME.length).toLowerCase();
  const isUnix = lower.startsWith(UNIX_SCHEME);
  if (!isUnix && !lower.startsWith(SCHEME)) {
    const sep = text.indexOf("://");
    if (sep < 0) throw new UrlError("not a URL: whizbang://[USER@]HOST[:PORT] or whizbang+unix:///PATH");
    throw new UrlError(
      `unknown scheme '${shownName(text.slice(0, sep))}': whizbang:// (TCP) or whizbang+unix:// (a Unix socket)`,
    );
  }
  const r = text.slice((isUnix ? UNIX_SCHEME : SCHEME).length);
  if (r.includes("#")) throw new UrlError("a connection URL has no fragment (#...)");
  const u: WhizbangUrl = {
    user: "",
    address: "",
    host: "",
    port: 0,
    unixSocket: false,
    path: "",
    tls: false,
    tlsCaFile: "",
    tlsCertFile: "",
    tlsKeyFile: "",
    tlsServerName: "",
    external: false,
  };
  const q: Query = { given: new Set(), tlsValue: false, external: false, scram: false };
  const qmark = r.indexOf("?");
  const beforeQuery = qmark >= 0 ? r.slice(0, qmark) : r;
  if (qmark >= 0) params(u, q, r.slice(qmark + 1));
  if (isUnix) {
    parseUnix(u, beforeQuery);
  } else {
    const slash = beforeQuery.indexOf("/");
    const an = slash >= 0 ? slash : beforeQuery.length;
    parseTcp(u, beforeQuery.slice(0, an), beforeQuery.slice(an));
  }
  checkQuery(u, q);
  return u;
}
