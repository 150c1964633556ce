"""Rewrite the corpus's expected.json files from the current code, and show what changed.

    python -m tests.corpus.regen [TENANT...]

For each tenant (all by default) the audit is run offline exactly as tests/test_corpus.py runs
it, expected.json is rewritten, and every triple that appeared or disappeared is printed, so a
reviewer sees each change in behaviour. A rewritten file is only right once a human has checked
it against the tenant's README: regenerating makes the test pass, not the findings correct.
"""

from __future__ import annotations

import sys

from auditor.engine import discover
from tests.corpus import EXPECTED, audit_tenant, dump_expected, load_expected, tenant_folders, triples


def main(argv: list[str]) -> int:
    registry = discover()
    for problem in registry.problems:
        print(f"warning: check not loaded: {problem.source}: {problem.message}", file=sys.stderr)
    changed = 0
    for folder in tenant_folders(argv):
        found = triples(audit_tenant(folder, registry))
        old = load_expected(folder)
        text = dump_expected(found)
        path = folder / EXPECTED
        if old is None:
            print(f"{folder.name}: new {EXPECTED} with {len(found)} findings")
        elif set(old) == set(found):
            print(f"{folder.name}: unchanged ({len(found)} findings)")
        else:
            changed += 1
            print(f"{folder.name}: {len(old)} -> {len(found)} findings")
            for triple in sorted(set(old) - set(found)):
                print(f"  - {list(triple)}")
            for triple in sorted(set(found) - set(old)):
                print(f"  + {list(triple)}")
        errors = [t for t in found if t[1] == "error"]
        for triple in errors:
            print(f"  ! error finding: {list(triple)}", file=sys.stderr)
        if old is None or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
    print(f"{changed} tenant(s) changed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
