"""Render the JSON report as JSON, Markdown or HTML through Jinja templates.

Everything in a report that came from the tenant (rule names, values, messages quoting
them) is attacker-controllable: HTML is autoescaped, Markdown is escaped by hand, control
and bidirectional-override characters are shown as visible escapes, and the HTML page
forbids scripts and network access with a Content-Security-Policy.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import unicodedata
from collections.abc import Iterable, Mapping
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jinja2

FORMATS = ("html", "md", "json")
EXTENSIONS = {"html": "html", "md": "md", "json": "json"}
_STATUS_ORDER = {"fail": 0, "warn": 1, "error": 2, "not_evaluated": 3, "pass": 4}
_SEVERITY_ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3, "info": 4}
_VERDICT_ORDER = {"not routed through the gateway": 0, "bypassable": 1, "cannot tell": 2, "protected": 3}
CHANGE_CHECK = "CHG-001"  # its verdicts ("changed by X on D") are shown beside the findings they relate to
_MD_SYNTAX = r"\\`*_\[\]()!|~"  # (a character class's inside) what Markdown reads as syntax
_MD_SPECIAL = re.compile(f"([{_MD_SYNTAX}])")
_MD_PLAIN = re.compile(f"[^{_MD_SYNTAX}&<>\r\n\t]*\\Z")  # text md_escape leaves as it is
# The findings a domain's verdict links to in the Markdown and HTML reports (the JSON report has
# every one): a tenant with hundreds of weakening rules links them all from every verdict.
RELATED_SHOWN = 15


def visible(value: Any) -> str:
    """Text with control, format (bidi overrides, zero-width) and line-separator characters
    replaced by visible ``<U+XXXX>`` marks, except newline and tab."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    if text.isprintable():  # no character of those categories (nor newline or tab), found in C
        return text
    out = []
    for char in text:
        if char.isprintable() or char in "\n\t":
            out.append(char)
        elif unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co"):
            out.append(f"<U+{ord(char):04X}>")
        else:
            out.append(char)
    return "".join(out)


def md_escape(value: Any) -> str:
    """Safe inline Markdown: HTML entities for < > &, backslash before Markdown syntax,
    line breaks as <br>, so no value can open a tag, a link or a table cell."""
    text = visible(value)
    if _MD_PLAIN.match(text):
        return text
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MD_SPECIAL.sub(r"\\\1", text)
    return text.replace("\r\n", "\n").replace("\n", "<br>").replace("\t", " ")


def md_code(value: Any) -> str:
    """A fenced block that no value can close early."""
    text = visible(value)
    fence = "~~~~"
    while fence in text:
        fence += "~"
    return f"{fence}\n{text}\n{fence}"


def observed(value: Any) -> str:
    if value is None:
        return "null"
    return json.dumps(value, ensure_ascii=False)


def safe_url(url: Any) -> str | None:
    return url if isinstance(url, str) and re.match(r"^https?://", url) else None


def _env(autoescape: bool) -> jinja2.Environment:
    import jinja2  # only for the formats rendered from templates (JSON and CSV are not)

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("reports", "templates"),
        autoescape=autoescape,  # noqa: S701 - Markdown is escaped by the md filter instead
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(visible=visible, md=md_escape, md_code=md_code, observed=observed,
                       safe_url=safe_url)
    return env


def _view(report: dict[str, Any]) -> dict[str, Any]:
    findings = sorted(
        report["findings"],
        key=lambda f: (_STATUS_ORDER.get(f["status"], 9), _SEVERITY_ORDER.get(f["severity"], 9),
                       f["check_id"], f["resource"]),
    )
    verdicts = sorted((f for f in findings if f.get("verdict") and f["check_id"] == "GW-001"),
                      key=lambda f: (_VERDICT_ORDER.get(f["verdict"], 9), f["resource"]))
    return {
        "report": report,
        "verdicts": verdicts,
        "changes": _changes(findings),
        "by_fingerprint": {f["fingerprint"]: f for f in findings},
        "problems_found": [f for f in findings if f["status"] in ("fail", "warn")],
        "incomplete": [f for f in findings if f["status"] in ("error", "not_evaluated")],
        "passed": [f for f in findings if f["status"] == "pass"],
        "severities": list(_SEVERITY_ORDER),
        "statuses": list(_STATUS_ORDER),
        "related_shown": RELATED_SHOWN,
    }


def _changes(findings: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """For each finding, the CHG-001 results recording a change to its object in the review
    window ("changed by X on D"), oldest first."""
    changes: dict[str, list[dict[str, Any]]] = {}
    for change in findings:
        if change["check_id"] != CHANGE_CHECK or not change.get("verdict"):
            continue
        for fingerprint in change.get("related") or ():
            changes.setdefault(fingerprint, []).append(change)
    for listed in changes.values():
        listed.sort(key=lambda c: (c["verdict"].rsplit(" on ", 1)[-1], c["fingerprint"]))
    return changes


BULK_FORMATS = ("html", "json", "csv")
CSV_COLUMNS = ("domain", "gateway", "check_id", "title", "severity", "status", "resource", "message",
               "source", "pointer", "observed", "fingerprint")
CSV_HEADER = ",".join(CSV_COLUMNS) + "\n"


def _csv_cell(value: str) -> str:
    """Neutralise spreadsheet formulas: a cell starting with = + - @ (or a control character)
    is prefixed with a quote, as OWASP advises for CSV injection."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


HtmlRow = tuple[tuple[int, int, str, int], str]  # a finding's row of the HTML report, and its place


def bulk_csv_rows(findings: Iterable[Mapping[str, Any]]) -> str:
    """The bulk CSV report's rows (those after its header) of these finding dicts."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for f in findings:
        first = f["evidence"][0] if f["evidence"] else {}
        row = [f["domain"], " ".join(f["gateway"]), f["check_id"], f["title"], f["severity"],
               f["status"], f["resource"], f["message"], first.get("source") or "",
               first.get("pointer") or "", observed(first.get("observed")), f["fingerprint"]]
        writer.writerow([_csv_cell(visible(str(cell))) for cell in row])
    return out.getvalue()


class BulkHtmlRows:
    """Renders the bulk HTML report's rows of finding dicts (a pass has none), each with its
    place on the page: by status, severity and domain, a domain's findings in their order.
    A bulk run's workers render the rows of the findings they judged (see ``PartWriter``)."""

    def __init__(self) -> None:
        self.row = _env(autoescape=True).get_template("domains_row.html.j2").module.finding_row  # type: ignore[attr-defined]

    def __call__(self, findings: Iterable[Mapping[str, Any]]) -> list[HtmlRow]:
        return [((_STATUS_ORDER.get(f["status"], 9), _SEVERITY_ORDER.get(f["severity"], 9), f["domain"], i),
                 str(self.row(f)))
                for i, f in enumerate(findings) if f["status"] != "pass"]


def render_bulk(report: dict[str, Any], fmt: str) -> str:
    """Render the bulk (domains) JSON report as JSON, CSV or HTML. Its findings are dicts, or
    a bulk run's ``WrittenFindings``, whose CSV and HTML rows the workers rendered."""
    from auditor.bulk import WrittenFindings, report_text

    if fmt == "json":
        return report_text(report)  # (the same text as json.dumps(indent=2), faster)
    findings = report["findings"]
    written = findings if isinstance(findings, WrittenFindings) else None
    if fmt == "csv":
        return CSV_HEADER + (written.csv_rows() if written else bulk_csv_rows(findings))
    if fmt == "html":
        placed = written.html_rows() if written else BulkHtmlRows()(findings)
        return _env(autoescape=True).get_template("domains.html.j2").render(
            report=report, rows=[row for _, row in sorted(placed, key=itemgetter(0))],
            severities=list(_SEVERITY_ORDER), statuses=list(_STATUS_ORDER))
    raise ValueError(f"unknown report format {fmt!r}; choose from {', '.join(BULK_FORMATS)}")


def write_bulk(report: dict[str, Any], fmt: str, target: Path) -> None:
    """Write the bulk report in ``fmt`` to ``target`` (UTF-8), as ``render_bulk`` renders it:
    the JSON report in pieces, never whole (a hundred megabytes for 10,000 domains), its
    findings' text copied from the files the workers wrote it to."""
    if fmt != "json" or os.linesep != "\n":  # (a text file's newlines are translated there)
        target.write_text(render_bulk(report, fmt), encoding="utf-8")
        return
    from auditor.bulk import report_parts

    with target.open("wb") as out:
        for piece in report_parts(report):
            if type(piece) is str:
                out.write(piece.encode())
            else:
                piece.write_to(out)


def render_catalog(checks: list[dict[str, Any]]) -> str:
    """The check catalog (``checks list --format json``'s items) as Markdown: docs/checks.md."""
    for item in checks:
        bad = [r["url"] for r in item["references"] if not safe_url(r["url"])]
        if bad:
            raise ValueError(f"{item['id']}: reference URLs must be http(s): {bad}")
    env = _env(autoescape=False)
    env.filters["md_url"] = md_url
    return env.get_template("checks.md.j2").render(checks=checks)


def md_url(url: str) -> str:
    """A link target that no character can end early: parentheses, spaces and angle brackets
    percent-encoded."""
    return "".join(f"%{ord(c):02X}" if c in "()<> \t\n" else c for c in url)


def render(report: dict[str, Any], fmt: str) -> str:
    """Render the JSON report dict in one of FORMATS."""
    if fmt == "json":
        return json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    if fmt == "html":
        return _env(autoescape=True).get_template("report.html.j2").render(**_view(report))
    if fmt == "md":
        return _env(autoescape=False).get_template("report.md.j2").render(**_view(report))
    raise ValueError(f"unknown report format {fmt!r}; choose from {', '.join(FORMATS)}")
