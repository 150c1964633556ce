"""Run the RFC 7208 suite outside pytest: ``python tests/spf/run_suite.py`` -> "N/M passed"."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_rfc7208_suite import load_suite


def main() -> int:
    tests = list(load_suite())
    failures: list[str] = []
    for case in tests:
        try:
            problem = case.failure(case.run())
        except Exception as exc:  # report and carry on: a runner, not a test
            problem = f"raised {type(exc).__name__}: {exc}"
        if problem is not None:
            failures.append(f"FAIL {case.id} ({case.spec.get('spec')}): {problem}")
    for line in failures:
        print(line)
    print(f"{len(tests) - len(failures)}/{len(tests)} passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
