"""glob_match must say exactly what fnmatch.fnmatchcase says."""

from __future__ import annotations

import fnmatch
import itertools

import pytest

from auditor.gateways import builtin_profiles
from auditor.globmatch import glob_match

# Every pattern of up to five characters over a small alphabet, against every name of up to
# four characters over the same letters: stars next to stars, "?" inside pieces, pieces that
# repeat, a last piece that overlaps the middle ones.
_PATTERN_ALPHABET = "ab.*?"
_NAME_ALPHABET = "ab."


def _words(alphabet: str, longest: int) -> list[str]:
    return ["".join(w) for n in range(longest + 1) for w in itertools.product(alphabet, repeat=n)]


def test_every_short_pattern_against_every_short_name() -> None:
    names = _words(_NAME_ALPHABET, 4)
    mismatches = [(p, n) for p in _words(_PATTERN_ALPHABET, 5) for n in names
                  if glob_match(n, p) != fnmatch.fnmatchcase(n, p)]
    assert mismatches == []


def test_the_shipped_profiles_patterns() -> None:
    patterns = {p.lower() for prof in builtin_profiles()
                for p in (*prof.mx_patterns, *prof.smart_hosts, *prof.spf_includes, *prof.archive_domains,
                          *prof.header_stamps)}
    hosts = ["eu-smtp-inbound-1.mimecast.com", "mx01.hornetsecurity.com", "mx0a.hornetsecurity.com",
             "d1.ess.barracudanetworks.com", "d1.ess.eu.barracudanetworks.com", "ess.barracudanetworks.com",
             "cluster5.eu.messagelabs.com", "cluster5.messagelabs.com",
             "contoso-com.mail.protection.outlook.com", "mail.protection.outlook.com", "x-bess-id",
             "x-barracuda-spam-score", "mailstream-east.mxrecord.io", "a.b.c.iphmx.com", "iphmx.com", ""]
    assert len(patterns) > 50
    for pattern, host in itertools.product(sorted(patterns), hosts):
        assert glob_match(host, pattern) == fnmatch.fnmatchcase(host, pattern), (pattern, host)


@pytest.mark.parametrize(("name", "pattern", "expected"), [
    ("mx1.example.com", "mx[0-9].example.com", True),  # a character class: fnmatch's own reading
    ("mxa.example.com", "mx[0-9].example.com", False),
    ("mx1.example.com", "MX1.example.com", False),  # case-sensitive, as fnmatchcase
    ("a\nb", "a*b", True),  # a star matches any character, a newline included
])
def test_classes_case_and_newlines(name: str, pattern: str, expected: bool) -> None:
    assert glob_match(name, pattern) is expected
    assert fnmatch.fnmatchcase(name, pattern) is expected
