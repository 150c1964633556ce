"""Renderers: every format shows the evidence, and nothing from the tenant can run or hide."""

from __future__ import annotations

import json
import sys
import unicodedata
from typing import Any

import pytest

from reports.render import md_escape, render, visible

HOSTILE = "<script>alert(1)</script> {{ 1234*1000 }} {% raw %}\nline two \u202eevil\u200b \x1b[31m"


def _report(name: str = HOSTILE) -> dict[str, Any]:
    finding = {
        "check_id": "RULE-001", "title": "A transport rule turns spam filtering off",
        "severity": "critical", "status": "fail", "resource": f"transport rule {name}",
        "message": f"sets SCL -1 when HeaderContains {name}",
        "evidence": [{"source": "exo/Get-TransportRule.json", "pointer": "/0/SetSCL",
                      "property": "SetSCL", "observed": name, "note": None}],
        "remediation": {"text": "Remove it.", "powershell": "Disable-TransportRule -Identity x"},
        "references": [{"title": "good", "url": "https://learn.microsoft.com/x"},
                       {"title": "evil", "url": "javascript:alert(1)"}],
        "mappings": {"attack": ["T1685"], "cis": ["6.2.2"], "scuba": []},
        "fingerprint": "abc",
        "fix": f"Disable-TransportRule -Identity '{name}'",
    }
    passed = dict(finding, status="pass", severity="high", fingerprint="def")
    return {
        "schema_version": 1, "tool": {"name": "mailflow-auditor", "version": "0.1.0"},
        "generated_at": "2026-11-25T00:00:00Z",
        "snapshot": {"id": "f" * 64, "created_at": "2026-11-20T00:00:00Z", "source": {},
                     "tenant": {"display_name": name, "organization": "x.onmicrosoft.com"},
                     "evidence": [{"key": "Get-TransportRule", "path": "exo/Get-TransportRule.json",
                                   "sha256": "0" * 64, "state": "ok", "error": None,
                                   "objects": 1, "rejected": 0, "warnings": []}],
                     "extra": []},
        "gateway": {"mode": "auto", "active": [], "clues": []},
        "summary": {"by_status": {"pass": 1, "fail": 1, "warn": 0, "not_evaluated": 0, "error": 0},
                    "by_severity": {"critical": 1, "high": 0, "medium": 0, "low": 0, "info": 0}},
        "problems": [], "findings": [finding, passed],
    }


def test_html_escapes_tenant_text_and_forbids_scripts() -> None:
    html = render(_report(), "html")
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "{{ 1234*1000 }}" in html and "1234000" not in html
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    assert 'href="javascript:' not in html
    assert 'href="https://learn.microsoft.com/x"' in html


def test_html_shows_bidi_and_control_characters_visibly() -> None:
    html = render(_report(), "html")
    assert "\u202e" not in html and "&lt;U+202E&gt;" in html
    assert "\u200b" not in html and "&lt;U+200B&gt;" in html
    assert "\x1b" not in html


def test_html_shows_evidence_and_remediation() -> None:
    html = render(_report("Allow partners"), "html")
    for text in ("exo/Get-TransportRule.json", "/0/SetSCL", "Disable-TransportRule -Identity x",
                 "T1685", "6.2.2"):
        assert text in html


def test_markdown_cannot_open_tags_links_or_cells() -> None:
    md = render(_report(), "md")
    prose = md.split("~~~~")[::2]  # code fences (the PowerShell fix) are never rendered as HTML
    assert len(prose) > 1 and all("<script" not in part for part in prose)
    assert "\u202e" not in md
    line = next(ln for ln in md.splitlines() if ln.startswith("| exo/Get-TransportRule.json"))
    assert line.count(" | ") == 3  # no cell split by the value


@pytest.mark.parametrize("text", ["a|b", "[x](javascript:y)", "<b>", "`code`", "# head"])
def test_md_escape_neutralises_markdown(text: str) -> None:
    escaped = md_escape(text)
    assert "|" not in escaped.replace("\\|", "")
    assert "<" not in escaped
    assert "](" not in escaped


def test_json_keeps_the_exact_original_text() -> None:
    data = json.loads(render(_report(), "json"))
    assert data["findings"][0]["evidence"][0]["observed"] == HOSTILE


def test_visible_keeps_newlines_and_marks_other_controls() -> None:
    assert visible("a\nb\tc\x00") == "a\nb\tc<U+0000>"


def test_visible_marks_every_character_of_the_hidden_categories_and_only_those() -> None:
    # Every code point, alone and inside printable text (which takes the fast path when whole).
    hidden = ("Cc", "Cf", "Zl", "Zp", "Cs", "Co")
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        marked = char not in "\n\t" and unicodedata.category(char) in hidden
        expected = f"<U+{code:04X}>" if marked else char
        assert visible(f"a{char}b") == f"a{expected}b", hex(code)


@pytest.mark.parametrize("char", [chr(c) for c in range(0x20, 0x7F)] + ["\n", "\t", "\r", "é", "\u202e"])
def test_md_escape_of_each_character(char: str) -> None:
    # Plain text is returned as it is (the common case, checked once); the rest is escaped.
    expected = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "\n": "<br>", "\t": " ",
                "\r": "&lt;U+000D&gt;", "\u202e": "&lt;U+202E&gt;"}.get(char, char)
    if char in "\\`*_[]()!|~":
        expected = "\\" + char
    assert md_escape(f"a{char}b") == f"a{expected}b"


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown report format"):
        render(_report(), "pdf")


def _with_change(user: str) -> dict[str, Any]:
    """The report with a CHG-001 result saying who changed the failing rule's object."""
    report = _report("Allow partners")
    change = dict(report["findings"][0], check_id="CHG-001", status="warn", severity="medium",
                  fingerprint="chg1", related=["abc"], verdict=f"changed by {user} on 2026-11-12",
                  message=f"New-TransportRule by {user}", fix="")
    report["findings"].append(change)
    return report


def test_html_shows_who_changed_a_findings_object_linked_to_the_change() -> None:
    html = render(_with_change("isaiah.langer@contoso.com"), "html")
    finding = html.split('id="f-abc"', 1)[1].split('<div class="finding', 1)[0]
    assert 'href="#f-chg1"' in finding
    assert "changed by isaiah.langer@contoso.com on 2026-11-12" in finding
    assert 'id="f-chg1"' in html  # the link has a target
    passed = html.split('id="f-def"', 1)[1].split("</tr>", 1)[0]
    assert "changed by" not in passed  # not related to the passed finding


def test_change_attribution_escapes_hostile_user_names() -> None:
    html = render(_with_change(HOSTILE), "html")
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "\u202e" not in html and "1234000" not in html
    md = render(_with_change('x](javascript:alert(1)) <img src=x onerror=alert(1)> | y'), "md")
    line = next(ln for ln in md.splitlines() if ln.startswith("- **Audit log:**"))
    assert "<img" not in line and "](" not in line and "|" not in line.replace("\\|", "")
