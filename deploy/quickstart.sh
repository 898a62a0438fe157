#!/bin/sh
# README command 1: install the build dependencies, build, and run whizbangd
# in the foreground on 127.0.0.1:7411 with its data in ./whizbang-data.
# Extra arguments go to whizbangd (see whizbangd --help).
set -eu
cd "$(dirname "$0")/.."
sh deploy/install-deps.sh
# The same build directory and build type (-O2 -g) the tests and the
# benchmarks use; only the server and the CLI are built here.
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build server/whizbangd client/whizbang
exec build/server/whizbangd --listen 127.0.0.1:7411 --data-dir ./whizbang-data "$@"
