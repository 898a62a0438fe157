#!/bin/sh
# Installs the Debian 12 packages Whizbang builds, runs and tests with.
# Usage: deploy/install-deps.sh [--test]   (--test adds valgrind, clang,
# openssl and sslscan, which tests/test_tls_probe.c points at the server,
# what the Python client's tests run with: python3-protobuf, protobuf-compiler
# and python3-pytest, and nodejs and npm for the TypeScript client's)
set -eu
pkgs="build-essential meson ninja-build pkg-config libuv1-dev liblmdb-dev libisal-dev \
libprotobuf-c-dev protobuf-c-compiler libcriterion-dev libxxhash-dev libinih-dev libmicrohttpd-dev libsystemd-dev \
libssl-dev"
if [ "${1:-}" = "--test" ]; then
	pkgs="$pkgs valgrind clang libclang-rt-14-dev python3 openssl sslscan python3-protobuf \
protobuf-compiler python3-pytest nodejs npm"
fi
# A package counts as installed when it is, or when an installed package
# provides it: a newer nodejs (NodeSource's) provides npm and conflicts with
# Debian's, which must then not be asked for.
installed() {
	dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed" && return 0
	dpkg-query -W -f='${Status}|${Provides}\n' 2>/dev/null | sed -n 's/^install ok installed|//p' |
		tr ',' '\n' | sed 's/^ *//; s/ .*//' | grep -qx "$1"
}
missing=""
for p in $pkgs; do
	installed "$p" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "installing:$missing" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
