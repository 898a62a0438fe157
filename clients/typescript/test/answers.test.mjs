// The request → answer table (src/answers.ts) against docs/PROTOCOL.md §2's
// table and the .proto's Request body: one fact, checked both ways.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ANSWER, pb } from "../dist/index.js";
import { repoRoot } from "./helpers.mjs";

const snake = (s) => s.replace(/[A-Z]/g, (c) => "_" + c.toLowerCase());

/** The document's table as {request: answer}, snake_case as it writes them. */
function documented() {
  const doc = readFileSync(join(repoRoot, "docs", "PROTOCOL.md"), "utf8");
  const start = doc.indexOf("| `Request` body | `Response` body |");
  assert.ok(start >= 0, "docs/PROTOCOL.md §2 has no request → answer table");
  const out = {};
  for (const line of doc.slice(start).split("\n").slice(2)) {
    if (!line.startsWith("|")) break;
    const [, reqs, answers] = line.split("|");
    const names = (s) => [...s.matchAll(/`([a-z_]+)`/g)].map((m) => m[1]);
    const req = names(reqs);
    let ans = answers.trim().startsWith("the same name") ? req : names(answers).filter((n) => n !== "done");
    if (ans.length === 1) ans = req.map(() => ans[0]);
    assert.equal(ans.length, req.length, `a row the test cannot read: ${line}`);
    req.forEach((r, i) => (out[r] = ans[i]));
  }
  return out;
}

test("every request of the .proto has an answer in the client's table", () => {
  const body = pb.RequestSchema.oneofs.find((o) => o.name === "body");
  const cases = body.fields.map((f) => f.localName).sort();
  assert.deepEqual(Object.keys(ANSWER).sort(), cases);
});

test("the client's table is docs/PROTOCOL.md's", () => {
  const mine = Object.fromEntries(Object.entries(ANSWER).map(([k, v]) => [snake(k), snake(v)]));
  assert.deepEqual(mine, documented());
});

test("every answer the table names is a Response body", () => {
  const body = pb.ResponseSchema.oneofs.find((o) => o.name === "body");
  const cases = new Set(body.fields.map((f) => f.localName));
  for (const v of Object.values(ANSWER)) assert.ok(cases.has(v), `${v} is no Response body`);
});
