#!/bin/sh
# The TypeScript client's tests, as meson runs them (suite 'clients'):
# install the pinned dependencies when node_modules is missing or older than
# package-lock.json (npm ci: from npm's cache when it can, else from the
# npm registry), build with tsc, then run node's test runner against
# $WHIZBANGD. Arguments: test files (default: all of test/*.test.mjs).
# Exits 77 (skipped) only when node or npm is missing.
set -eu
cd "$(dirname "$0")"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	echo "node or npm is missing: the TypeScript client's tests are skipped" >&2
	exit 77
fi
if [ ! -f node_modules/.package-lock.json ] ||
	[ package-lock.json -nt node_modules/.package-lock.json ]; then
	npm ci --offline --no-audit --no-fund >&2 || npm ci --no-audit --no-fund >&2
fi
npm run --silent build >&2
if [ $# -eq 0 ]; then
	set -- test/*.test.mjs
fi
exec node --test "$@"
