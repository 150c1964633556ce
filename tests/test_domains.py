"""Bulk mode: `mailflow-audit domains` over a real DNS server, as a consultant would run it."""

from __future__ import annotations

import asyncio
import csv
import importlib
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from auditor.bulk import read_domains
from auditor.cli import main
from auditor.engine import Severity
from tests.dnsdouble import DnsDouble
from tests.dnsserver import KnotFactory

from .conftest import REPO

DEMO_ZONES = {p.name.removesuffix(".zone"): p.read_text()
              for p in (REPO / "tests" / "fixtures" / "demo-zones").glob("*.zone")}
SHARED = """
@   300 IN MX 10 us-smtp-inbound-1.mimecast.com.
@   300 IN TXT "v=spf1 include:us._netblocks.mimecast.com -all"
"""


def run(args: list[str], capsys: pytest.CaptureFixture[str], stdin: str | None = None,
        monkeypatch: pytest.MonkeyPatch | None = None) -> tuple[int, str, str]:
    if stdin is not None and monkeypatch is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    try:
        main(args)
        code = 0
    except SystemExit as exited:
        code = int(exited.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def server(knot_factory: KnotFactory) -> str:
    zones = dict(DEMO_ZONES)
    for index in range(5):
        zones[f"client{index}.test"] = SHARED
    host, port = knot_factory(zones).address
    return f"{host}:{port}"


def test_writes_json_csv_and_html(server: str, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    listing = tmp_path / "domains.txt"
    listing.write_text("contoso.com\nnorthwindtraders.com\n# a comment\n\nCONTOSO.com.\n")
    code, _, err = run(["domains", str(listing), "--nameserver", server, "--out",
                        str(tmp_path / "out")], capsys)
    assert code == 0, err
    data = json.loads((tmp_path / "out" / "domains.json").read_text())
    assert [d["domain"] for d in data["domains"]] == ["contoso.com", "northwindtraders.com"]
    assert all(d["gateway"] == ["mimecast"] for d in data["domains"])
    failing = {(f["domain"], f["check_id"]) for f in data["findings"] if f["status"] == "fail"}
    # Without the tenant's connectors, the Exchange Online MX is an open route (DNS-001 fails).
    assert failing == {("northwindtraders.com", "DNS-001"), ("northwindtraders.com", "DNS-006")}
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out" / "domains.csv").read_text())))
    assert {r["domain"] for r in rows} == {"contoso.com", "northwindtraders.com"}
    assert "northwindtraders.com" in (tmp_path / "out" / "domains.html").read_text()


def test_a_domain_whose_mx_names_no_gateway_says_so_without_options_the_command_lacks(
        server: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # The tenant's advice (--gateway, --gateway-file) is no option of `domains`: only the MX counts.
    code, out, err = run(["domains", "-", "--nameserver", server, "--format", "json"], capsys,
                         stdin="contoso.onmicrosoft.com\n", monkeypatch=monkeypatch)
    assert code == 0, err
    [dns001] = [f for f in json.loads(out)["findings"] if f["check_id"] == "DNS-001"]
    assert dns001["status"] == "not_evaluated"
    assert dns001["message"] == ("not evaluated: none of the domain's MX hosts is a known gateway's: "
                                 "its gateway has no profile here, or it has none")


def test_a_domain_nothing_could_be_judged_of_does_not_look_clean(
        server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    listing = tmp_path / "domains.txt"
    listing.write_text("contoso.com\nunserved.example\n")  # (the server refuses what it does not serve)
    code, _, err = run(["domains", str(listing), "--nameserver", server, "--out", str(tmp_path / "out")],
                       capsys)
    assert code == 0, err
    data = json.loads((tmp_path / "out" / "domains.json").read_text())
    by_name = {d["domain"]: d for d in data["domains"]}
    assert by_name["unserved.example"] == {"domain": "unserved.example", "gateway": [], "worst": None,
                                           "incomplete": 6}
    assert by_name["contoso.com"]["incomplete"] == 0
    page = (tmp_path / "out" / "domains.html").read_text()
    row = page[page.index(">unserved.example<"):]
    row = row[:row.index("</tr>")]
    assert '<span class="badge not_evaluated">unknown</span>' in row and '<td class="num">6</td>' in row


def test_reads_standard_input_and_prints_one_format(server: str, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["domains", "-", "--nameserver", server, "--format", "json"], capsys,
                       stdin="client0.test\nclient1.test\n", monkeypatch=monkeypatch)
    assert code == 0
    assert json.loads(out)["summary"]["domains"] == 2


def test_shared_includes_are_asked_once_for_the_whole_run(server: str, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    listing = tmp_path / "clients.txt"
    listing.write_text("\n".join(f"client{i}.test" for i in range(5)))
    code, _, err = run(["domains", str(listing), "--nameserver", server], capsys)
    assert code == 0
    # Per client: MX, TXT, _dmarc, _mta-sts, _smtp._tls = 5 (25; no DKIM selector: no check run
    # in bulk reads one); the MX host's A and AAAA and the shared include are asked once for
    # all five (3).
    assert "5 domains, 28 DNS queries" in err


def test_entries_that_are_not_domains_are_reported_not_fatal(
        server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    listing = tmp_path / "mixed.txt"
    listing.write_text("=HYPERLINK(\"x\")\nclient0.test\nbad..name\n")
    code, out, err = run(["domains", str(listing), "--nameserver", server, "--format", "json"],
                         capsys)
    assert code == 0
    assert "skipped '=HYPERLINK" in err and "skipped 'bad..name'" in err
    assert [r["entry"] for r in json.loads(out)["rejected"]] == ['=HYPERLINK("x")', "bad..name"]


def test_fail_on_sets_the_exit_code(server: str, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    listing = tmp_path / "d.txt"
    listing.write_text("northwindtraders.com\n")
    assert run(["domains", str(listing), "--nameserver", server, "--fail-on", "medium"],
               capsys)[0] == 1
    # Its worst finding is high (DNS-001 fails): nothing is critical.
    assert run(["domains", str(listing), "--nameserver", server, "--fail-on", "high"], capsys)[0] == 1
    assert run(["domains", str(listing), "--nameserver", server, "--fail-on", "critical"],
               capsys)[0] == 0


def test_an_empty_list_is_an_input_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    listing = tmp_path / "empty.txt"
    listing.write_text("# nothing\n")
    code, _, err = run(["domains", str(listing), "--nameserver", "127.0.0.1:9"], capsys)
    assert code == 3 and "no domain to audit" in err


@pytest.fixture
def silent() -> Iterator[DnsDouble]:
    """A DNS server on loopback that never replies to the first query (the root's NS)."""
    with DnsDouble() as double:
        double.drop(".", "NS")
        yield double


def _asked(double: DnsDouble) -> set[str]:
    """The names the server was asked."""
    return {name for name, _, _ in double.counts}


def test_a_server_that_never_answers_ends_the_run_at_once(
        silent: DnsDouble, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Not twenty minutes of timeouts for 10,000 not-evaluated domains: one query, then an error."""
    listing = tmp_path / "domains.txt"
    listing.write_text("contoso.com\nnorthwindtraders.com\n")
    address = f"{silent.address[0]}:{silent.address[1]}"
    code, _, err = run(["domains", str(listing), "--nameserver", address, "--dns-timeout", "0.2",
                        "--out", str(tmp_path / "out")], capsys)
    assert code == 3, err
    assert f"no DNS server replied to a first query (NS of the root): {address} (no reply within " \
           "0.2 s); check --nameserver" in err
    assert not (tmp_path / "out").exists()
    assert _asked(silent) == {"."}


def test_a_server_that_never_answers_beside_one_that_does_is_left_out(
        server: str, silent: DnsDouble, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    listing = tmp_path / "domains.txt"
    listing.write_text("contoso.com\nnorthwindtraders.com\n")
    address = f"{silent.address[0]}:{silent.address[1]}"
    code, out, err = run(["domains", str(listing), "--nameserver", address, "--nameserver", server,
                          "--dns-timeout", "0.2", "--format", "json"], capsys)
    assert code == 0, err
    assert f"DNS server {address} (no reply within 0.2 s) did not reply to a first query: not used" in err
    data = json.loads(out)
    assert data["resolvers"] == [server]
    assert not [f for f in data["findings"] if f["status"] == "not_evaluated" and f["check_id"] != "DNS-001"]
    assert _asked(silent) == {"."}  # (the first query only, never the run's)


def test_csv_cells_cannot_carry_spreadsheet_formulas() -> None:
    from reports.render import render_bulk

    finding = {"domain": "x.test", "gateway": [], "check_id": "DNS-003", "title": "t",
               "severity": "high", "status": "fail", "resource": "domain x.test",
               "message": "=HYPERLINK(\"http://evil\")", "evidence": [], "fingerprint": "f"}
    text = render_bulk({"findings": [finding]}, "csv")
    row = list(csv.reader(io.StringIO(text)))[1]
    assert row[7].startswith("'=")


def test_read_domains_normalises_and_dedupes() -> None:
    domains, rejected = read_domains(["Contoso.COM.", "contoso.com", " # x", "bücher.test", "a b"])
    assert domains == ["contoso.com", "bücher.test"]
    assert rejected == [("a b", "not a valid domain name")]


def test_read_domains_leaves_out_what_no_mail_domain_is() -> None:
    # SPF would give each "none" without a lookup (RFC 7208 4.3), and DNS-004 would pass it.
    domains, rejected = read_domains(["1.2.3.4", "2001:db8::1", "localhost", "mail.10", "10.0.0",
                                      "example.xn--p1ai", "host-1.example"])
    assert domains == ["example.xn--p1ai", "host-1.example"]
    assert rejected == [("1.2.3.4", "an IP address, not a domain name"),
                        ("2001:db8::1", "an IP address, not a domain name"),
                        ("localhost", "a single label, not a domain name"),
                        ("mail.10", "its top-level label is all digits, which no domain's is"),
                        ("10.0.0", "its top-level label is all digits, which no domain's is")]


def test_read_domains_leaves_out_a_name_spf_would_not_evaluate() -> None:
    # dns_path admits an underscore or an edge hyphen in the top label; SPF does not (4.3), and
    # gave such a name "none" without a lookup: DNS-004 passed it.
    domains, rejected = read_domains(["mx.b_c", "foo.-ab", "a-b.c-d"])
    assert domains == ["a-b.c-d"]
    assert rejected == [("mx.b_c", "not a domain name SPF evaluates (RFC 7208 4.3)"),
                        ("foo.-ab", "not a domain name SPF evaluates (RFC 7208 4.3)")]


def test_two_processes_give_the_same_report_as_one(server: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    listing = tmp_path / "many.txt"
    listing.write_text("\n".join(["contoso.com", "northwindtraders.com"]
                                 + [f"client{i}.test" for i in range(5)]))
    reports = []
    for jobs in ("1", "2"):
        code, out, _ = run(["domains", str(listing), "--nameserver", server, "--format", "json",
                            "--jobs", jobs], capsys)
        assert code == 0
        data = json.loads(out)
        reports.append(([d["domain"] for d in data["domains"]],
                        [(f["domain"], f["check_id"], f["status"], f["fingerprint"])
                         for f in data["findings"]], data["summary"]))
    assert reports[0] == reports[1]
    assert reports[0][0][:2] == ["contoso.com", "northwindtraders.com"]
    tables = [run(["domains", str(listing), "--nameserver", server, "--format", "csv", "--jobs", jobs],
                  capsys)[1] for jobs in ("1", "2")]
    assert tables[0] == tables[1] and len(tables[0].splitlines()) == len(reports[0][1]) + 1


def test_workers_report_their_progress_when_asked(server: str) -> None:
    from auditor.bulk import run_bulk
    from auditor.dnsresolve import Nameserver

    host, port = server.rsplit(":", 1)
    names = [f"client{i}.test" for i in range(5)]
    seen: list[tuple[int, int]] = []
    domains, _, _ = run_bulk(names, [Nameserver(host, int(port))], timeout=2.0, concurrency=8, jobs=2,
                             progress=lambda done, total: seen.append((done, total)))
    assert [d["domain"] for d in domains] == names
    assert seen[-1] == (5, 5) and all(total == 5 and 0 <= done <= 5 for done, total in seen)


# --- The fast paths of the bulk report give exactly what the plain ones give -----------------

def _collected(server: str, names: list[str]) -> list[Any]:
    from auditor.dnscollect import collect
    from auditor.dnsresolve import Nameserver, Resolver

    host, port = server.rsplit(":", 1)
    return asyncio.run(collect(names, Resolver([Nameserver(host, int(port))], timeout=2.0)))


def _demo_domains() -> list[str]:
    names = {line.split()[0].rstrip(".") for text in DEMO_ZONES.values() for line in text.splitlines()
             if line[:1].strip() and line[0] not in "$;@"}
    return sorted({*DEMO_ZONES, *(f"{n}.{z}" for z in DEMO_ZONES for n in names if "." not in n),
                   *(f"client{i}.test" for i in range(5)), "missing.invalid"})


def test_the_bulk_report_is_built_as_finding_json_would_build_it(server: str) -> None:
    from auditor.audit import finding_json
    from auditor.bulk import audit_domains
    from auditor.engine import discover
    from auditor.gateways import builtin_profiles

    report = audit_domains(_collected(server, _demo_domains()), discover(), builtin_profiles())
    meta = {c.id: c.meta for c in report.registry.checks}
    plain = [{"domain": r.domain, "gateway": [p.id for p in r.gateway.active],
              **finding_json(f, meta.get(f.check_id))} for r in report.results for f in r.findings]
    built = report.to_json()["findings"]
    assert len(plain) > 100 and {f["status"] for f in plain} >= {"pass", "fail", "warn"}
    assert json.dumps(built) == json.dumps(plain)  # the same fields, values and order


def test_the_json_report_text_is_what_json_dumps_writes(server: str) -> None:
    from auditor.bulk import audit_domains, report_text
    from auditor.engine import discover
    from auditor.gateways import builtin_profiles

    data = audit_domains(_collected(server, _demo_domains()), discover(), builtin_profiles()).to_json()
    assert report_text(data) == json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    tricky = {"numbers": [0, -1, 2**70, 2.5, -0.0, 1e16, 1e-7, float("nan"), float("inf"), -float("inf")],
              "constants": [True, False, None], "empty": [[], {}, (), [[]], [{}]], "tuple": (1, ("a",)),
              "text": ["", "é ü \u2028 \U0001f600", "\x00\x1f\x7f", "\"\\/", "\n\r\t\b\f"],
              "nested": {"": {"a": [{"b": {"c": []}}]}}, "references": [{"url": "x"}], "mappings": {}}
    for value in (tricky, [], {}, "text", 1, None, [tricky, tricky], {1: "int key"}, {"e": Severity.HIGH}):
        assert report_text(value) == json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def test_the_spf_tree_kept_from_collection_is_the_one_the_checks_would_read(server: str) -> None:
    from auditor.dnsevidence import SPF_TREE
    from checks.dns import _evaluate_spf_tree

    recorded = _collected(server, _demo_domains())
    trees = [d._derived[SPF_TREE] for d in recorded]
    assert {tree.result for tree, _ in trees} >= {"ok", "none"}
    for domain, kept in zip(recorded, trees, strict=True):
        assert kept == _evaluate_spf_tree(domain), domain.domain


def _part(names: list[str], sent: int, lengths: list[int] | None = None) -> Any:
    from collections import Counter

    from auditor.bulk import Part

    return Part([{"domain": n, "gateway": [], "worst": None} for n in names],
                lengths or [0 for _ in names], Counter(), Counter(), sent)


def test_a_domain_no_worker_returned_fails_the_run_instead_of_shrinking_the_report(tmp_path: Path) -> None:
    from auditor.bulk import merge_parts
    from auditor.errors import BulkIncompleteError

    def empty(count: int) -> list[Any]:
        return [(tmp_path / f"{i}.txt").open("w+b") for i in range(count)]

    part_a, part_b = _part(["b.example"], 3), _part(["a.example"], 2)
    files = empty(2)
    domains, _, sent = merge_parts(["a.example", "b.example"], [part_a, part_b], files)
    assert [d["domain"] for d in domains] == ["a.example", "b.example"] and sent == 5
    assert all(text_file.closed for text_file in files)  # (no text in them: not kept open)
    with pytest.raises(BulkIncompleteError, match="1 of 3 domains came back from no worker"):
        merge_parts(["a.example", "b.example", "c.example"], [part_a, part_b], empty(2))
    with pytest.raises(BulkIncompleteError, match="0 of 2 domains came back from no worker"):
        merge_parts(["a.example", "b.example"], [part_a, part_b, _part(["a.example"], 1)], empty(3))


def test_a_worker_that_wrote_less_text_than_it_said_fails_the_run(tmp_path: Path) -> None:
    """A worker's text file shorter (or longer) than the lengths it sent: no report is written
    from it, and a file cut after the lengths were checked is not copied short either."""
    from auditor.bulk import bulk_json, merge_parts
    from auditor.errors import BulkIncompleteError

    render = importlib.import_module("reports.render")
    with (tmp_path / "a.txt").open("w+b") as text_a, (tmp_path / "b.txt").open("w+b") as text_b:
        text_a.write(b'"a",\n    ')
        text_b.write(b'"b",\n    ')
        text_a.flush()
        text_b.flush()
        with pytest.raises(BulkIncompleteError, match="wrote 9 bytes of findings where it said 11"):
            merge_parts(["a.example", "b.example"], [_part(["a.example"], 1, [11]), _part(["b.example"], 1)],
                        [text_a, text_b])
        domains, findings, _ = merge_parts(["a.example", "b.example"],
                                           [_part(["a.example"], 1, [9]), _part(["b.example"], 1, [9])],
                                           [text_a, text_b])
        data = bulk_json(domains, findings, [], [], datetime(2026, 1, 1, tzinfo=UTC))
        render.write_bulk(data, "json", tmp_path / "domains.json")
        assert json.loads((tmp_path / "domains.json").read_text(encoding="utf-8"))["findings"] == ["a", "b"]
        text_b.truncate(2)
        with pytest.raises(BulkIncompleteError, match="shorter than it said"):
            render.write_bulk(data, "json", tmp_path / "domains.json")


def test_blocks_are_a_few_per_worker_and_at_most_max_block_neighbours() -> None:
    from auditor.bulk import MAX_BLOCK, block_size

    assert block_size(10_000, 2) == MAX_BLOCK
    assert block_size(100, 2) == 6  # eight blocks or more per worker
    assert block_size(3, 2) == 1 and block_size(1, 1) == 1


def test_the_shared_counter_hands_out_each_block_once_then_none() -> None:
    import multiprocessing

    from auditor.bulk import shared_claims

    claimed = multiprocessing.get_context("fork").Value("i", 0)
    first, second = shared_claims(claimed, 5), shared_claims(claimed, 5)
    taken = [first(), second(), second(), first(), second(), first(), second()]
    assert taken == [0, 1, 2, 3, 4, None, None]


@pytest.mark.parametrize("with_findings", [True, False])
def test_workers_claiming_blocks_in_turn_make_the_report_one_process_would_write(
        server: str, with_findings: bool, tmp_path: Path) -> None:
    """Two jobs share the blocks as workers do (here one after the other, each taking the
    blocks the counter gives it): judged and written block by block, in whatever order they
    end, their parts merge into the report one job taking every block in order writes."""
    from auditor.bulk import BulkJob, bulk_json, merge_parts, report_text, run_job
    from auditor.dnsresolve import Nameserver
    from auditor.engine import discover

    names = _demo_domains()
    host, port = server.rsplit(":", 1)
    registry = discover()
    text_files = [(tmp_path / f"{i}.txt").open("w+b") for i in range(3)]
    jobs = [BulkJob(tuple(names), (Nameserver(host, int(port)),), 2.0, 4, f.fileno(), with_findings, 2)
            for f in text_files]
    blocks = jobs[0].blocks
    assert blocks > 4
    mine = [[b for b in range(blocks) if b % 3 == 1], [b for b in range(blocks) if b % 3 != 1][::-1]]
    parts = [run_job(job, registry=registry, claim=iter([*share, None]).__next__)
             for job, share in zip(jobs[:2], mine, strict=True)]
    assert [len(p.domains) for p in parts] == [
        sum(len(names[b * 2:b * 2 + 2]) for b in share) for share in mine]
    whole = run_job(jobs[2], registry=registry)  # (every block, in order)
    for text_file in text_files:
        text_file.flush()
    domains, findings, _ = merge_parts(names, parts, text_files[:2])
    one_domains, one_findings, _ = merge_parts(names, [whole], text_files[2:])
    when = datetime(2026, 1, 1, tzinfo=UTC)
    assert domains == one_domains and findings.by_status == one_findings.by_status
    assert report_text(bulk_json(domains, findings, [], [], when)) == report_text(
        bulk_json(one_domains, one_findings, [], [], when))
    assert len(findings.runs) > 2
    if with_findings:  # (the rows the workers rendered, as one process renders them)
        render = importlib.import_module("reports.render")
        for fmt in ("csv", "html"):
            assert render.render_bulk(bulk_json(domains, findings, [], [], when), fmt) == \
                render.render_bulk(bulk_json(one_domains, one_findings, [], [], when), fmt)
        assert len(findings.csv_rows().splitlines()) > 100 and len(findings.html_rows()) > 50


@pytest.mark.parametrize("with_findings", [True, False])
def test_the_workers_parts_make_the_report_one_process_would_write(
        server: str, with_findings: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each worker writes its domains' findings as the JSON report's text and sends the
    counts (and the CSV and HTML rows only when asked): merged in the list's order, they make
    the reports (JSON text, summary, CSV, HTML) written from all the findings at once."""
    from datetime import UTC, datetime

    from auditor.bulk import audit_domains, bulk_json, merge_parts, report_text, written_part
    from auditor.engine import discover
    from auditor.gateways import builtin_profiles

    render = importlib.import_module("reports.render")  # (the package's `render` is a function)
    names = _demo_domains()
    recorded = {d.domain: d for d in _collected(server, names)}
    registry, profiles = discover(), builtin_profiles()
    shares = [audit_domains([recorded[n] for n in names[i::3]], registry, profiles) for i in range(3)]
    text_files = [(tmp_path / f"{i}.txt").open("w+b") for i in range(3)]
    parts = [written_part(share, i, text_file, with_findings=with_findings)
             for i, (share, text_file) in enumerate(zip(shares, text_files, strict=True))]
    for text_file in text_files:
        text_file.flush()
    domains, findings, sent = merge_parts(names, parts, text_files)
    when = datetime(2026, 1, 1, tzinfo=UTC)
    written = bulk_json(domains, findings, [("x y", "not a valid domain name")], ["192.0.2.53:53"], when)
    whole = audit_domains([recorded[n] for n in names], registry, profiles).to_json()
    plain = bulk_json(whole["domains"], whole["findings"], [("x y", "not a valid domain name")],
                      ["192.0.2.53:53"], when)
    assert sent == 3 and len(whole["findings"]) > 100
    assert report_text(written) == json.dumps(plain, indent=2, ensure_ascii=False) + "\n"
    render.write_bulk(written, "json", tmp_path / "domains.json")
    assert (tmp_path / "domains.json").read_text(encoding="utf-8") == report_text(written)
    monkeypatch.delattr("os.copy_file_range", raising=False)  # where the kernel cannot copy
    render.write_bulk(written, "json", tmp_path / "copied.json")
    assert (tmp_path / "copied.json").read_bytes() == (tmp_path / "domains.json").read_bytes()
    monkeypatch.setattr("os.linesep", "\r\n")  # where text files translate newlines: one as text
    render.write_bulk(written, "json", tmp_path / "as_text.json")
    assert (tmp_path / "as_text.json").read_bytes() == (tmp_path / "domains.json").read_bytes()
    assert written["summary"] == plain["summary"] and domains == plain["domains"]
    for fmt in ("csv", "html"):  # rendered by the workers, as from every finding's dict at once
        if with_findings:
            assert render.render_bulk(written, fmt) == render.render_bulk(plain, fmt)
        else:
            with pytest.raises(ValueError, match="JSON text only"):
                render.render_bulk(written, fmt)
    findings.close()
    assert all(text_file.closed for text_file in text_files)


def test_a_finding_is_written_as_json_writes_its_dict_whatever_its_values(tmp_path: Path) -> None:
    """The findings' texts are written from the findings, without their dicts: what json.dumps
    writes for the dict, for unusual values too (written by json itself then)."""
    from collections import Counter

    from auditor.audit import finding_json
    from auditor.bulk import WrittenFindings, _FindingWriter, report_text
    from auditor.engine import Finding, Status, discover
    from auditor.models import EvidenceRef

    registry = discover()
    check = registry.checks[0]
    refs = (EvidenceRef("dns/a.json", "/answers/0", ["10 mx.a.test.", "é \u2028 \x00"], "a.test MX"),
            EvidenceRef("dns/a.json", "/answers/1", {"nested": [1, 2.5, None, True, ("t",)], "": {}},
                        None, "a note"),
            EvidenceRef("dns/a.json", "/y", float("nan")),
            EvidenceRef("dns/a.json", "/z", []),
            EvidenceRef("dns/a.json", "/w", [Severity.HIGH, "a string's subclass is written as the string"]))
    unusual = (EvidenceRef("dns/a.json", "/x", {1: "a key json turns into text"}),
               EvidenceRef("dns/a.json", "/z", ["text", 1, [], Status.PASS], property="p", note=""))
    findings = [
        Finding(check.id, check.meta.title, check.meta.severity, Status.FAIL, "domain a.test",
                "quoted \"text\"\n\ttabbed", refs, "f1", fix="Set-Thing -Name 'x'",
                related=("f0", "f2"), verdict="bypassable"),
        Finding("ZZZ-999", "a check not registered", Severity.LOW, Status.PASS, "r", "m", (), "f2"),
        Finding(check.id, check.meta.title, check.meta.severity, Status.WARN, "r", "m", unusual, "f3"),
        Finding(check.id, check.meta.title, check.meta.severity, Status.WARN, 42, Severity.HIGH,  # type: ignore[arg-type]
                (), "f4"),
        Finding(check.id, check.meta.title, check.meta.severity, Status.PASS, "r", "m", refs[:1], "f5"),
    ]
    meta = {c.id: c.meta for c in registry.checks}
    for gateway in ([], ["mimecast", "proofpoint"]):
        rows = [{"domain": "a.test", "gateway": gateway, **finding_json(f, meta.get(f.check_id))}
                for f in findings]
        text = _FindingWriter(registry).findings("a.test", gateway, findings).encode()
        with (tmp_path / "findings.txt").open("w+b") as text_file:
            text_file.write(text + text)
            text_file.flush()
            written = WrittenFindings([(text_file, 0, len(text) * 2)], Counter(), Counter(), None)
            assert report_text({"findings": written}) == json.dumps(
                {"findings": rows + rows}, indent=2, ensure_ascii=False) + "\n"


def test_findings_alike_but_for_a_field_or_two_are_each_written_with_their_own(tmp_path: Path) -> None:
    """The writer keeps the text of fields findings share (check, title, severity and status;
    an evidence item's pointer and property): findings differing in any of them only are each
    written with theirs."""
    from collections import Counter

    from auditor.audit import finding_json
    from auditor.bulk import WrittenFindings, _FindingWriter, report_text
    from auditor.engine import Finding, Status, discover
    from auditor.models import EvidenceRef

    registry = discover()
    check = registry.checks[0]
    refs = [EvidenceRef("dns/a.json", pointer, "observed", prop)
            for pointer, prop in (("/answers/0", "MX"), ("/answers/0", "TXT"), ("/answers/1", "MX"))]
    findings = [Finding(check.id, title, severity, status, "r", "m", tuple(refs[i:i + 2]), f"f{i}")
                for i, (title, severity, status) in enumerate([
                    ("a title", Severity.HIGH, Status.FAIL), ("a title", Severity.LOW, Status.FAIL),
                    ("a title", Severity.HIGH, Status.WARN), ("another title", Severity.HIGH, Status.FAIL),
                    ("a title", Severity.HIGH, Status.FAIL)])]
    findings.append(Finding("ZZZ-999", "a title", Severity.HIGH, Status.FAIL, "r", "m", (), "f5"))
    meta = {c.id: c.meta for c in registry.checks}
    rows = [{"domain": "a.test", "gateway": [], **finding_json(f, meta.get(f.check_id))} for f in findings]
    text = _FindingWriter(registry).findings("a.test", [], findings).encode()
    with (tmp_path / "findings.txt").open("w+b") as text_file:
        text_file.write(text)
        text_file.flush()
        written = WrittenFindings([(text_file, 0, len(text))], Counter(), Counter(), None)
        assert report_text({"findings": written}) == json.dumps(
            {"findings": rows}, indent=2, ensure_ascii=False) + "\n"


def test_a_domain_is_judged_as_with_a_store_of_its_own(server: str) -> None:
    """Bulk mode's store answers ``get`` from a table shared by the run: the findings are those
    of a plain ``EvidenceStore`` per domain."""
    from datetime import UTC, datetime

    from auditor.bulk import DomainJudge, audit_domains, dns_only
    from auditor.context import AuditContext
    from auditor.engine import discover, run_checks
    from auditor.evidence import EvidenceStore
    from auditor.gateways import builtin_profiles, resolve_gateway

    recorded = _collected(server, _demo_domains())
    registry, profiles = discover(), builtin_profiles()
    report = audit_domains(recorded, registry, profiles)
    settings = DomainJudge(registry, profiles).settings
    for domain, judged in zip(recorded, report.results, strict=True):
        store = EvidenceStore({}, dns={domain.domain: domain})
        context = AuditContext(evidence=store, gateway=resolve_gateway(store, profiles),
                               as_of=datetime.now(UTC), settings=settings)
        assert judged.findings == tuple(run_checks(dns_only(registry), context)), domain.domain
