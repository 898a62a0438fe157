// Connection URLs against the case table of docs/PROTOCOL.md ("Connection
// URLs"), read from the document as tests/test_url.c reads it: the table
// the document shows is the table that runs.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseUrl, UrlError } from "../dist/index.js";
import { repoRoot } from "./helpers.mjs";

function cell(s) {
  s = s.trim();
  return s.length >= 2 && s.startsWith("`") && s.endsWith("`") ? s.slice(1, -1) : s;
}

function readTable() {
  const doc = readFileSync(join(repoRoot, "docs", "PROTOCOL.md"), "utf8");
  const start = doc.indexOf("\n### Connection URLs\n");
  assert.ok(start >= 0, 'docs/PROTOCOL.md has no section "Connection URLs"');
  const end = doc.indexOf("\n#", start + 1);
  const rows = [];
  for (const line of doc.slice(start, end).split("\n")) {
    if (!line.startsWith("| `")) continue;
    const bars = line.split("|");
    assert.ok(bars.length >= 6, `a row without five '|': ${line}`);
    const last = cell(bars[4]);
    const refused = last.startsWith("refused: ");
    rows.push({ url: cell(bars[1]), user: cell(bars[2]), tls: cell(bars[3]), refused, want: refused ? last.slice(9) : last });
  }
  return rows;
}

/** The TLS column as the table writes it. */
function tlsText(u) {
  const parts = [];
  if (u.tls) parts.push("tls");
  for (const [k, v] of [["ca", u.tlsCaFile], ["cert", u.tlsCertFile], ["key", u.tlsKeyFile], ["name", u.tlsServerName]])
    if (v !== "") parts.push(`${k}=${v}`);
  if (u.external) parts.push("external");
  return parts.join(" ");
}

/** Why parseUrl() does not give what row r says, or null when it does. */
function mismatch(r) {
  let u;
  try {
    u = parseUrl(r.url);
  } catch (err) {
    if (!(err instanceof UrlError)) return `${r.url}: threw ${err}`;
    if (!r.refused) return `${r.url}: refused with "${err.message}"`;
    if (!err.message.includes(r.want)) return `${r.url}: refused with "${err.message}", which lacks "${r.want}"`;
    return null;
  }
  if (r.refused) return `${r.url}: accepted as ${u.address}, not refused`;
  if (u.user !== r.user) return `${r.url}: user "${u.user}", not "${r.user}"`;
  if (tlsText(u) !== r.tls) return `${r.url}: TLS "${tlsText(u)}", not "${r.tls}"`;
  if (u.address !== r.want) return `${r.url}: address "${u.address}", not "${r.want}"`;
  return null;
}

const rows = readTable();

test("the table has rows that connect and rows that are refused", () => {
  // The bounds tests/test_url.c holds the table to.
  const refused = rows.filter((r) => r.refused).length;
  assert.ok(rows.length - refused >= 16, `only ${rows.length - refused} URLs that connect`);
  assert.ok(refused >= 30, `only ${refused} refused URLs`);
});

for (const r of rows) {
  test(`url ${r.url}`, () => {
    assert.equal(mismatch(r), null);
  });
}

test("a row whose expectation is changed in any column is caught", () => {
  for (const r of rows) {
    const changed = [];
    if (r.refused) {
      changed.push({ ...r, want: r.want + " (changed)" });
      changed.push({ ...r, refused: false, want: "db1:7411" });
    } else {
      changed.push({ ...r, want: r.want + "0" });
      changed.push({ ...r, user: r.user + "x" });
      changed.push({ ...r, tls: r.tls === "" ? "tls" : r.tls + " external" });
      changed.push({ ...r, refused: true, want: "anything" });
    }
    for (const c of changed) assert.notEqual(mismatch(c), null, `a changed row of ${r.url} passed`);
  }
});

test("refusals never repeat a password or a parameter's value", () => {
  for (const url of [
    "whizbang://alice:s3cret@db1",
    "whizbang://db1?tls=s3cret",
    "whizbang://db1?authMechanism=s3cret",
    "whizbang://db1?tlsServerName=s3cret%20x",
    "whizbang://db1?tls=false&tlsCaFile=s3cret",
  ]) {
    assert.throws(() => parseUrl(url), (err) => err instanceof UrlError && !err.message.includes("s3cret"));
  }
});

test("host, port and path come apart for connecting", () => {
  const u = parseUrl("whizbang://[::1]:7412");
  assert.equal(u.host, "::1");
  assert.equal(u.port, 7412);
  const s = parseUrl("whizbang+unix:///tmp/my%20dir/w.sock");
  assert.equal(s.unixSocket, true);
  assert.equal(s.path, "/tmp/my dir/w.sock");
});
