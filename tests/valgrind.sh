#!/bin/sh
# Test wrapper for `meson test --setup valgrind`. Criterion runs each test
# in a child process and ignores how that child exits, so valgrind's exit
# code alone would miss a leak in a test body: write one log per process and
# fail when any of them reports an error or a definite/indirect leak.
set -u
logs=$(mktemp -d)
valgrind --trace-children=yes --leak-check=full \
	--errors-for-leak-kinds=definite,indirect --track-origins=yes \
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
