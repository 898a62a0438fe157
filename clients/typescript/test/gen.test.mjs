// The checked-in generated code is what proto/whizbang.proto gives today:
// regenerated into a temporary directory with the pinned generator, it must
// be the same bytes.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const pkg = join(dirname(fileURLToPath(import.meta.url)), "..");

test("src/gen/whizbang_pb.ts is what scripts/gen.sh makes from proto/whizbang.proto", () => {
  const out = mkdtempSync(join(tmpdir(), "wb-ts-gen-"));
  try {
    execFileSync("sh", [join(pkg, "scripts", "gen.sh"), out], { stdio: ["ignore", "inherit", "inherit"] });
    const fresh = readFileSync(join(out, "whizbang_pb.ts"), "utf8");
    const kept = readFileSync(join(pkg, "src", "gen", "whizbang_pb.ts"), "utf8");
    assert.ok(fresh === kept, "src/gen/whizbang_pb.ts differs from the .proto's code: run `npm run gen` and commit it");
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
