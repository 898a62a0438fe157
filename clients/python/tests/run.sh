#!/bin/sh
# meson's entry to the Python client's tests (clients/python/meson.build):
# pytest with Debian's /usr/bin/python3, from the source tree's root.
#
# Skips (exit 77) only when /usr/bin/python3 lacks google.protobuf or pytest
# and deploy/install-deps.sh --test has not been run (it installs them; its
# sslscan is the sign that it ran). With WB_PY_FAKE_CORRUPT=1 (the negative
# control, should_fail in meson) it fails only when the selected tests ran
# and failed: a control that collects nothing must not pass for a failure.
set -u
py=/usr/bin/python3
if ! "$py" -c 'import google.protobuf, pytest' 2>/dev/null; then
	if dpkg-query -W -f='${Status}' sslscan 2>/dev/null | grep -q "ok installed"; then
		echo "deploy/install-deps.sh --test has run, yet $py cannot import google.protobuf" \
			"and pytest (python3-protobuf, python3-pytest)" >&2
		exit 1
	fi
	echo "SKIP: $py lacks google.protobuf or pytest: run deploy/install-deps.sh --test" >&2
	exit 77
fi
cd "$(dirname "$0")/../../.." || exit 1
PYTHONDONTWRITEBYTECODE=1 "$py" -m pytest -q -p no:cacheprovider clients/python/tests "$@"
rc=$?
if [ "${WB_PY_FAKE_CORRUPT:-}" = 1 ] && [ $rc -ne 1 ]; then
	echo "negative control: pytest exited $rc, not 1 (tests ran and failed)" >&2
	exit 0
fi
exit $rc
