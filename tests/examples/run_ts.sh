#!/bin/sh
# The TypeScript example (clients/typescript/examples/order-projection.mjs)
# through check_example.py, as meson runs it: install the client's pinned
# dependencies when node_modules is missing or older than the lockfile (as
# clients/typescript/run-tests.sh does), build the client into dist/,
# type-check the example against the built declarations
# (examples/tsconfig.json: checkJs, no output), then run the check.
# Arguments go to check_example.py. A failure to prepare exits 99 (an error
# for meson, never the expected failure of the negative control); a
# missing node or npm exits 77 (skipped). meson runs this alone
# (is_parallel: false): the client's own tests rebuild the same dist/.
set -u
here=$(cd "$(dirname "$0")" && pwd)
ts="$here/../../clients/typescript"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	echo "node or npm is missing: the TypeScript example is skipped" >&2
	exit 77
fi
cd "$ts" || exit 99
if [ ! -f node_modules/.package-lock.json ] ||
	[ package-lock.json -nt node_modules/.package-lock.json ]; then
	npm ci --offline --no-audit --no-fund >&2 || npm ci --no-audit --no-fund >&2 || exit 99
fi
npm run --silent build >&2 || exit 99
npx --no-install tsc -p examples/tsconfig.json >&2 || {
	echo "the example does not type-check against the client" >&2
	exit 99
}
exec /usr/bin/python3 "$here/check_example.py" "$@" -- node "$ts/examples/order-projection.mjs"
