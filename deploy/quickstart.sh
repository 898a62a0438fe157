#!/bin/sh
# README command 1: install the build dependencies, build, and run whizbangd
# in the foreground on 127.0.0.1:7411 with its data in ./whizbang-data.
# Extra arguments go to whizbangd (see whizbangd --help).
set -eu
cd "$(dirname "$0")/.."
sh deploy/install-deps.sh
[ -f build/build.ninja ] || meson setup build --buildtype=release >/dev/null
ninja -C build >/dev/null
exec build/server/whizbangd --listen 127.0.0.1:7411 --data-dir ./whizbang-data "$@"
