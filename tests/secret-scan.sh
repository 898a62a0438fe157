#!/bin/sh
# Scans the logs the test suite's servers wrote (kept in DIR by the e2e
# harness when WB_KEEP_SERVER_LOGS names DIR) for secrets: a whole API
# token (wbt_ + id + secret), a private key, a SCRAM proof (a
# client-final-message: "c=biws,r=...,p="), and the passwords the tests
# use (tests/secrets.txt, one per line). Prints what it found and exits 1
# when anything is found, 2 when DIR holds no log at all (a scan of
# nothing proves nothing), 0 otherwise.
# Usage: tests/secret-scan.sh DIR
set -u
dir=$1
list="$(dirname "$0")/secrets.txt"
n=$(find "$dir" -type f -name '*.log' | wc -l)
if [ "$n" -eq 0 ]; then
	echo "secret-scan: no server log in $dir" >&2
	exit 2
fi
found=0
scan() { # scan WHAT GREP-ARGS...: reports the files and lines that match
	what=$1
	shift
	if find "$dir" -type f -name '*.log' -exec grep -H -n "$@" {} + >/tmp/secret-scan.$$ 2>/dev/null; then
		echo "secret-scan: $what in:" >&2
		head -5 /tmp/secret-scan.$$ | cut -c1-200 >&2
		found=1
	fi
	rm -f /tmp/secret-scan.$$
}
scan "an API token" -E 'wbt_[A-Za-z0-9_-]{16}_[A-Za-z0-9_-]{43}'
scan "a private key" -F 'PRIVATE KEY'
scan "a SCRAM client proof" -E 'c=biws,r=[^ ,]+,p='
grep -v '^#' "$list" | grep -v '^$' >/tmp/secret-scan-list.$$
scan "a test password" -F -f /tmp/secret-scan-list.$$
rm -f /tmp/secret-scan-list.$$
echo "secret-scan: $n server logs scanned" >&2
exit $found
