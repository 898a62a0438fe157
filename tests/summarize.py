"""Sums meson test logs into one line 'N passed, N failed'.

A criterion executable counts as its test cases (from its 'Synthesis'
line); any other test, or one that failed without such a line (a crash, a
valgrind or sanitizer report), counts as one. A negative control (meson's
should_fail: a test run with a fault injected, EXPECTEDFAIL when it failed
as it must) counts as one passed test, whatever its cases say. Exits 1 when
anything failed.
"""
import json
import re
import sys

# A sanitizer report in a criterion child does not fail the child's test
# (leaks are reported at exit, after the result), so the output is read.
SANITIZER = re.compile(r"ERROR: (Address|Leak)Sanitizer|runtime error:|valgrind reported errors")
SYN = re.compile(r"Synthesis: Tested: (\d+) \| Passing: (\d+) \| Failing: (\d+) \| Crashing: (\d+)")
passed = failed = 0
for path in sys.argv[1:]:
    try:
        lines = open(path, encoding="utf-8", errors="replace").read().splitlines()
    except OSError as e:
        print(f"missing test log {path}: {e}", file=sys.stderr)
        failed += 1
        continue
    for line in lines:
        t = json.loads(line)
        if t.get("result") == "EXPECTEDFAIL":
            passed += 1
            continue
        ok = t.get("result") in ("OK", "SKIP")
        out = (t.get("stdout") or "") + (t.get("stderr") or "")
        if ok and SANITIZER.search(out):
            print(f"sanitizer report in {t.get('name')}:", file=sys.stderr)
            print(out[-4000:], file=sys.stderr)
            ok = False
        m = SYN.findall(out)
        if m:
            _, p, f, c = map(int, m[-1])
            passed += p
            failed += f + c
            if not ok and f + c == 0:
                failed += 1
        elif ok:
            passed += 1
        else:
            failed += 1
        if not ok:
            print(f"FAILED: {t.get('name')} in {path}", file=sys.stderr)
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
