#!/bin/sh
# Test wrapper for `meson test --setup valgrind`. Criterion runs each test
# in a child process and ignores how that child exits, so valgrind's exit
# code alone would miss a leak in a test body: write one log per process and
# fail when any of them reports an error or a definite/indirect leak.
set -u
# Without --track-origins=yes: it finds no more errors, only says where an
# uninitialised value came from, and costs a quarter more time (22% on
# test_token). To see the origin of a reported error, rerun that test with
# VALGRIND_OPTS=--track-origins=yes (valgrind reads it).
logs=$(mktemp -d)
valgrind --trace-children=yes --leak-check=full \
	--errors-for-leak-kinds=definite,indirect \
	--log-file="$logs/vg.%p" "$@"
rc=$?
bad=0
for f in "$logs"/vg.*; do
	[ -s "$f" ] || continue
	# Leaks of the definite and indirect kinds count as errors here.
	if grep -Eq "ERROR SUMMARY: [1-9]" "$f"; then
		echo "valgrind reported errors ($f):" >&2
		cat "$f" >&2
		bad=1
	fi
done
rm -rf "$logs"
[ $bad -eq 0 ] || exit 1
exit $rc
