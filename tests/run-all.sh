#!/bin/sh
# README command 2: install what the tests need, then build and run the
# whole suite three ways: a plain build (unit and end-to-end tests), the
# unit tests under valgrind, and everything again built with
# -Db_sanitize=address,undefined; then the fuzzer for a bounded time on its
# corpus (clang/libFuzzer); then the Docker image with podman
# (deploy/test-image.sh). Ends with the line "N passed, N failed".
set -u
cd "$(dirname "$0")/.."
sh deploy/install-deps.sh --test || exit 1

status=0
logs=""
run() { # run NAME BUILDDIR SETUP-ARGS...
	name=$1 dir=$2
	shift 2
	echo "== $name" >&2
	meson test -C "$dir" --print-errorlogs "$@" || status=1
	logs="$logs $dir/meson-logs/testlog${SETUP:+-$SETUP}.json"
}

[ -f build/build.ninja ] || meson setup build >/dev/null || exit 1
ninja -C build || exit 1
# The servers' logs of this run are kept for the secret scan below.
kept=$(mktemp -d /tmp/wb-suite-logs.XXXXXX) || exit 1
WB_KEEP_SERVER_LOGS=$kept SETUP="" run "unit and end-to-end tests" build
SETUP=valgrind run "unit tests under valgrind" build --setup valgrind --suite unit

[ -f build-asan/build.ninja ] ||
	meson setup build-asan -Db_sanitize=address,undefined -Db_lundef=false >/dev/null || exit 1
ninja -C build-asan || exit 1
SETUP="" run "everything under ASan+UBSan" build-asan

if [ -f tests/fuzz/meson.build ]; then
	[ -f build-fuzz/build.ninja ] ||
		CC=clang meson setup build-fuzz -Dfuzz=true -Db_sanitize=address,undefined \
			-Db_lundef=false >/dev/null || exit 1
	# meson test builds only what the fuzz suite needs (the harnesses), not
	# the whole tree a third time; a build that fails fails the suite.
	SETUP="" run "fuzzing (bounded)" build-fuzz --suite fuzz
fi

# The Docker image, built and run with podman (deploy/test-image.sh: a few
# minutes the first time, bounded by WB_IMAGE_TEST_BUDGET), counted as one
# test through a meson-style log line.
echo "== the Docker image (deploy/test-image.sh)" >&2
mkdir -p build/meson-logs
if sh deploy/test-image.sh >build/meson-logs/image-test.txt 2>&1; then res=OK; else res=FAIL; fi
cat build/meson-logs/image-test.txt >&2
python3 -c 'import json, sys
print(json.dumps({"name": "docker image (deploy/test-image.sh)", "result": sys.argv[1],
                  "stdout": open(sys.argv[2], errors="replace").read()[-4000:]}))' \
	"$res" build/meson-logs/image-test.txt >build/meson-logs/image-test.json || status=1
logs="$logs build/meson-logs/image-test.json"

# No secret in any log the servers of the plain run wrote; the scan must
# also catch a planted token, or it proves nothing. Counted as one test.
echo "== no secret in the servers' logs (tests/secret-scan.sh)" >&2
planted=$(mktemp -d /tmp/wb-planted.XXXXXX)
echo "x token=wbt_AAAAAAAAAAAAAAAA_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB" >"$planted/x.log"
if sh tests/secret-scan.sh "$kept" >build/meson-logs/secret-scan.txt 2>&1 &&
	! sh tests/secret-scan.sh "$planted" >>build/meson-logs/secret-scan.txt 2>&1; then
	res=OK
else
	res=FAIL
fi
cat build/meson-logs/secret-scan.txt >&2
rm -rf "$planted" "$kept"
python3 -c 'import json, sys
print(json.dumps({"name": "no secret in the logs (tests/secret-scan.sh)", "result": sys.argv[1],
                  "stdout": open(sys.argv[2], errors="replace").read()[-4000:]}))' \
	"$res" build/meson-logs/secret-scan.txt >build/meson-logs/secret-scan.json || status=1
logs="$logs build/meson-logs/secret-scan.json"

python3 tests/summarize.py $logs || status=1
exit $status
