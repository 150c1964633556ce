"""The command line: the only place that touches the terminal, user-chosen files and exit codes.

Exit codes: 0 clean, 1 findings at or above --fail-on (or a failed verify), 2 incomplete
audit with --fail-on-incomplete, 3 usage or input error, 4 internal error.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import textwrap
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

import click

from . import __version__
from .audit import Report, run_audit
from .bulk import bulk_json, read_domains, run_bulk
from .context import AuditSettings
from .dnscollect import collect_with_policies
from .dnsevidence import domain_problem
from .dnsresolve import Nameserver, Resolver, silent_nameservers, system_nameservers
from .engine import Registry, Severity, discover
from .errors import AuditorError, InputError
from .gateways import builtin_profiles, load_profile_file, resolve_gateway
from .snapshot import (
    DEFAULT_MAX_FILE_BYTES,
    Snapshot,
    import_export_folder,
    open_source,
    verify_snapshot,
    with_dns,
    write_snapshot,
)

EXIT_FINDINGS, EXIT_INCOMPLETE, EXIT_INPUT, EXIT_INTERNAL = 1, 2, 3, 4
PARALLEL_FROM = 500  # domains from which `domains` spreads the work over every core
DEMO_PARTS = ("share", "mailflow-auditor", "examples", "contoso")


def _terminal_safe(text: str) -> str:
    """Strip what could drive the terminal (escape sequences, bidi overrides) from tenant text."""
    from reports.render import visible

    return visible(text).replace("\n", " ")


def demo_folder() -> Path:
    """The bundled demo tenant: installed data files, or the source checkout's examples/."""
    candidates = [Path(sys.prefix).joinpath(*DEMO_PARTS),
                  Path(__file__).resolve().parent.parent / "examples" / "contoso"]
    for candidate in candidates:
        if (candidate / "Get-TransportRule.json").is_file():
            return candidate
    raise InputError("the demo tenant is not installed (looked in "
                     + ", ".join(str(c) for c in candidates) + ")")


def _registry() -> Registry:
    registry = discover()
    if not registry.checks:
        raise AuditorError("no checks are registered: install the package (pip install -e .) "
                           "so its entry points exist")
    return registry


def _formats(value: str | None) -> list[str]:
    from reports.render import FORMATS

    if not value:
        return list(FORMATS)
    chosen = [part.strip().lower() for part in value.split(",") if part.strip()]
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown:
        raise click.BadParameter(f"unknown format {', '.join(unknown)}; choose from "
                                 f"{', '.join(FORMATS)}", param_hint="--format")
    return chosen


def _severity(value: str) -> Severity | None:
    if value.lower() == "none":
        return None
    try:
        return Severity(value.lower())
    except ValueError:
        raise click.BadParameter(f"{value!r}: use none, info, low, medium, high or critical",
                                 param_hint="--fail-on") from None


def _mail_domains(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    for value in values:
        problem = domain_problem(value)
        if problem:
            raise click.BadParameter(f"{_terminal_safe(value)!r}: {problem}", param_hint="--domain")
    return values


def dns_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The DNS options shared by the commands that collect DNS evidence."""
    for option in reversed((
        click.option("--no-dns", is_flag=True,
                     help="Collect no DNS evidence; the DNS checks report not evaluated."),
        click.option("--nameserver", "nameservers", multiple=True, metavar="IP[:PORT]",
                     help="Send every DNS query to this server only (repeatable)."),
        click.option("--domain", "domains", multiple=True, metavar="DOMAIN", callback=_mail_domains,
                     help="Also audit this domain's DNS (repeatable)."),
        click.option("--dns-timeout", type=click.FloatRange(min=0.1, max=60), default=3.0,
                     show_default=True, help="Seconds to wait for each DNS answer."),
    )):
        func = option(func)
    return func


def _dns(snapshot: Snapshot, *, no_dns: bool, nameservers: tuple[str, ...],
         domains: tuple[str, ...], timeout: float) -> Snapshot:
    """Add DNS evidence: recorded answers are kept (offline re-audit); otherwise ask live."""
    if no_dns:
        if domains or nameservers:
            raise click.UsageError("--no-dns cannot be combined with --domain or --nameserver")
        if snapshot.evidence.dns:
            return snapshot
        return with_dns(snapshot, [], reason="DNS was not collected (--no-dns)")
    if snapshot.evidence.dns and not domains and not nameservers:
        return snapshot
    wanted = [str(getattr(d, "DomainName", "") or "")
              for d in snapshot.evidence.usable("Get-AcceptedDomain")]
    # Initial *.onmicrosoft.com domains are Microsoft's zone: their MX is always Exchange Online.
    wanted = [d for d in wanted if d and not d.startswith("*")
              and not d.lower().rstrip(".").endswith(".onmicrosoft.com")] + list(domains)
    if not wanted:
        return with_dns(snapshot, [], reason="no domain to look up (no accepted domains)")
    servers = [Nameserver.parse(n) for n in nameservers] or system_nameservers()
    resolver = Resolver(servers, timeout=timeout)
    selectors = [s for p in resolve_gateway(snapshot.evidence, builtin_profiles()).active
                 for s in p.dkim_selectors]
    click.echo(f"collecting DNS for {len(wanted)} domain(s) via "
               f"{', '.join(str(s) for s in servers)}", err=True)
    recorded = asyncio.run(collect_with_policies(wanted, resolver, selectors, timeout,
                                                 signing_cnames=True))
    click.echo(f"  {resolver.sent} DNS queries sent", err=True)
    return with_dns(snapshot, recorded)


class _Commands(click.Group):
    """The command group, whose ``collect`` and ``export-script`` are imported only once named
    or listed (by ``--help``): their Graph, EWS and HTTP clients take a tenth of a second to
    import, which the other commands do not need."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_COLLECT_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in _COLLECT_COMMANDS and cmd_name not in self.commands:
            _add_collect_commands(self)
        return super().get_command(ctx, cmd_name)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mailflow-audit")
def cli() -> None:
    """Audit a Microsoft 365 tenant behind a secure email gateway: can mail get around it?"""


@cli.command()
@click.argument("source", required=False, type=click.Path(path_type=Path))
@click.option("--demo", is_flag=True, help="Audit the bundled demo tenant (Contoso behind Mimecast).")
@click.option("--gateway", default="auto", show_default=True,
              help="Gateway profile to assume (see `gateways list`), or auto to detect it.")
@click.option("--gateway-file", type=click.Path(path_type=Path, dir_okay=False),
              help="Your own gateway profile (TOML), e.g. per-customer IP ranges.")
@click.option("--format", "formats", help="Comma-separated report formats: html,md,json "
              "(default: all with --out, a summary on the terminal without).")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False),
              help="Folder to write report.html / report.md / report.json into.")
@click.option("--fail-on", default="none", show_default=True,
              help="Exit 1 when a finding (fail or warn) is at or above this severity.")
@click.option("--fail-on-incomplete", is_flag=True,
              help="Exit 2 when any check could not be evaluated.")
@click.option("--max-file-size", type=click.IntRange(min=1), default=DEFAULT_MAX_FILE_BYTES,
              show_default=True, help="Largest evidence file read, in bytes.")
@click.option("--changed-within", type=click.IntRange(min=1), default=30, show_default=True,
              metavar="DAYS", help="List connectors and rules changed within this many days "
              "of the evidence's collection time for review (CONN-007).")
@click.option("--credential-max-age", type=click.IntRange(min=1), default=365, show_default=True,
              metavar="DAYS", help="Oldest acceptable certificate or secret of an app with "
              "mailbox-wide access (APP-002).")
@click.option("--rotated-since", type=click.DateTime(formats=["%Y-%m-%d"]), metavar="DATE",
              help="Flag app credentials created before this date, e.g. a vendor advisory's "
              "(2021-01-12 for Mimecast's) (APP-002).")
@dns_options
@click.option("--debug", is_flag=True, help="Re-raise a crashing check instead of reporting it.")
def audit(source: Path | None, demo: bool, gateway: str, gateway_file: Path | None,
          formats: str | None, out: Path | None, fail_on: str, fail_on_incomplete: bool,
          max_file_size: int, changed_within: int, credential_max_age: int,
          rotated_since: datetime | None, no_dns: bool, nameservers: tuple[str, ...],
          domains: tuple[str, ...], dns_timeout: float, debug: bool) -> None:
    """Audit SOURCE: an export folder or a snapshot (folder or .zip)."""
    threshold = _severity(fail_on)
    chosen = _formats(formats)
    if demo == (source is not None):
        raise click.UsageError("give either SOURCE or --demo")
    path = demo_folder() if demo else source
    assert path is not None
    snapshot = open_source(path, max_file_bytes=max_file_size)
    user_profile = load_profile_file(gateway_file) if gateway_file else None
    snapshot = _dns(snapshot, no_dns=no_dns, nameservers=nameservers, domains=domains,
                    timeout=dns_timeout)
    settings = AuditSettings(changed_within=timedelta(days=changed_within),
                             credential_max_age=timedelta(days=credential_max_age),
                             rotated_since=rotated_since.replace(tzinfo=UTC) if rotated_since else None)
    report = run_audit(snapshot, _registry(), gateway=gateway, user_profile=user_profile,
                       debug=debug, settings=settings)
    _emit(report, chosen, out, explicit=formats is not None)
    if threshold is not None and report.worst(threshold):
        sys.exit(EXIT_FINDINGS)
    if fail_on_incomplete and report.incomplete:
        sys.exit(EXIT_INCOMPLETE)


def _emit(report: Report, formats: list[str], out: Path | None, *, explicit: bool) -> None:
    from reports.render import EXTENSIONS, render

    data = report.to_json()
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        for fmt in formats:
            target = out / f"report.{EXTENSIONS[fmt]}"
            target.write_text(render(data, fmt), encoding="utf-8")
            click.echo(f"wrote {target}", err=True)
        _summary(report)
        return
    if explicit and len(formats) == 1:
        click.echo(render(data, formats[0]), nl=False)
        return
    _summary(report)


def _summary(report: Report) -> None:
    counts = report.counts()
    tenant = report.snapshot.tenant
    name = tenant.get("display_name") or tenant.get("organization") or "tenant"
    click.echo(f"{_terminal_safe(str(name))}: gateway {report.gateway.names} "
               f"({report.gateway.mode}); snapshot {report.snapshot.snapshot_id[:16]}", err=True)
    status = ", ".join(f"{v} {k}" for k, v in counts["by_status"].items() if v)
    click.echo(f"results: {status}", err=True)
    findings = sorted(report.findings, key=lambda f: -f.severity.rank)
    for finding in findings:
        if finding.status.is_finding:
            click.echo(f"  [{finding.severity.value.upper()}] {finding.status.value} "
                       f"{finding.check_id} {_terminal_safe(finding.resource)}: "
                       f"{_terminal_safe(finding.message)}", err=True)
    incomplete = [f for f in report.findings if f.status.is_incomplete]
    if incomplete or report.problems:
        click.echo(f"incomplete: {len(incomplete)} result(s) not evaluated; "
                   f"{len(report.problems)} plugin problem(s)", err=True)
        for problem in report.problems:
            click.echo(f"  plugin {problem.source}: {_terminal_safe(problem.message)}", err=True)


@cli.command("import")
@click.argument("export_dir", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="Snapshot to write: a new folder, or a file ending in .zip.")
@click.option("--max-file-size", type=click.IntRange(min=1), default=DEFAULT_MAX_FILE_BYTES,
              show_default=True, help="Largest evidence file read, in bytes.")
@dns_options
def import_(export_dir: Path, out: Path, max_file_size: int, no_dns: bool,
            nameservers: tuple[str, ...], domains: tuple[str, ...], dns_timeout: float) -> None:
    """Turn an export folder into a hashed snapshot (with the domains' DNS answers)."""
    snapshot = import_export_folder(export_dir, max_file_bytes=max_file_size)
    snapshot = _dns(snapshot, no_dns=no_dns, nameservers=nameservers, domains=domains,
                    timeout=dns_timeout)
    write_snapshot(snapshot, out)
    for item in snapshot.items:
        detail = f"{item.objects} objects" if item.objects is not None else (item.error or "")
        click.echo(f"  {item.state.value:8} {item.key}: {_terminal_safe(detail)}", err=True)
    for extra in snapshot.extras:
        click.echo(f"  kept     {_terminal_safe(extra.path)} (not evidence)", err=True)
    click.echo(f"snapshot {snapshot.snapshot_id} written to {out}")


@cli.command()
@click.argument("snapshot", type=click.Path(path_type=Path))
def verify(snapshot: Path) -> None:
    """Recompute every hash of SNAPSHOT and name what changed, went missing or was added."""
    result = verify_snapshot(snapshot)
    for path in result.changed:
        click.echo(f"changed: {_terminal_safe(path)}")
    for path in result.missing:
        click.echo(f"missing: {_terminal_safe(path)}")
    for path in result.added:
        click.echo(f"added: {_terminal_safe(path)}")
    for problem in result.problems:
        click.echo(f"manifest: {problem}")
    if not result.ok:
        sys.exit(EXIT_FINDINGS)
    click.echo(f"ok: {result.checked} files match the manifest")


@cli.command()
@click.argument("source", metavar="FILE|-")
@click.option("--format", "formats", help="Comma-separated formats: html,json,csv "
              "(default: all with --out, a summary on the terminal without).")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False),
              help="Folder to write domains.html / domains.json / domains.csv into.")
@click.option("--fail-on", default="none", show_default=True,
              help="Exit 1 when a finding (fail or warn) is at or above this severity.")
@click.option("--nameserver", "nameservers", multiple=True, metavar="IP[:PORT]",
              help="Send every DNS query to this server only (repeatable).")
@click.option("--dns-timeout", type=click.FloatRange(min=0.1, max=60), default=3.0,
              show_default=True, help="Seconds to wait for each DNS answer.")
@click.option("--concurrency", type=click.IntRange(min=1, max=1000), default=256,
              show_default=True, help="DNS queries in flight at once (shared by the processes).")
@click.option("--jobs", type=click.IntRange(min=1, max=64), default=None,
              help="Processes to use [default: one per core from 500 domains, else one].")
def domains(source: str, formats: str | None, out: Path | None, fail_on: str,
            nameservers: tuple[str, ...], dns_timeout: float, concurrency: int,
            jobs: int | None) -> None:
    """Audit the DNS of many domains (one per line; - reads standard input), without a tenant."""
    from reports.render import BULK_FORMATS, render_bulk, write_bulk

    threshold = _severity(fail_on)
    chosen = [f.strip().lower() for f in (formats or ",".join(BULK_FORMATS)).split(",") if f.strip()]
    unknown = [f for f in chosen if f not in BULK_FORMATS]
    if unknown:
        raise click.BadParameter(f"unknown format {', '.join(unknown)}; choose from "
                                 f"{', '.join(BULK_FORMATS)}", param_hint="--format")
    if source == "-":
        lines = sys.stdin.read().splitlines()
    else:
        try:
            lines = Path(source).read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{source}: cannot read the domain list: {exc}") from None
    wanted, rejected = read_domains(lines)
    for entry, reason in rejected:
        click.echo(f"skipped {_terminal_safe(entry)!r}: {reason}", err=True)
    if not wanted:
        raise InputError(f"{source}: no domain to audit")
    servers = _answering([Nameserver.parse(n) for n in nameservers] or system_nameservers(), dns_timeout)
    registry = _registry()  # fail early, in this process, when no check is registered
    if jobs is None:
        jobs = (os.cpu_count() or 1) if len(wanted) >= PARALLEL_FROM else 1
    bar = _progress_bar() if sys.stderr.isatty() else None
    # The formats written (to --out, or one to the terminal): the JSON report needs only the
    # findings' texts from the workers, the CSV and HTML reports read the findings themselves.
    rendered = chosen if out is not None or (formats and len(chosen) == 1) else []
    found, results, sent = run_bulk(wanted, servers, timeout=dns_timeout, concurrency=concurrency,
                                    jobs=jobs, progress=bar, registry=registry,
                                    with_findings=any(fmt != "json" for fmt in rendered))
    if bar is not None:
        click.echo("", err=True)
    data = bulk_json(found, results, rejected, [str(s) for s in servers], datetime.now(UTC))
    try:
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            for fmt in chosen:
                target = out / f"domains.{fmt}"
                write_bulk(data, fmt, target)
                click.echo(f"wrote {target}", err=True)
        elif formats and len(chosen) == 1:
            click.echo(render_bulk(data, chosen[0]), nl=False)
    finally:
        results.close()  # (the findings' text the workers wrote, in temporary files)
    summary = data["summary"]
    status = ", ".join(f"{v} {k}" for k, v in summary["by_status"].items() if v)
    click.echo(f"{summary['domains']} domains, {sent} DNS queries: {status}", err=True)
    # A domain's worst finding is its most severe fail or warn.
    if threshold is not None and any(
            d["worst"] is not None and Severity(d["worst"]).rank >= threshold.rank for d in found):
        sys.exit(EXIT_FINDINGS)


def _answering(servers: list[Nameserver], timeout: float) -> list[Nameserver]:
    """The servers that reply to a first query (the root's NS, see ``silent_nameservers``),
    said on the terminal of those that do not: a bulk run asking a server that never replies
    would wait out every lookup's timeouts (for 10,000 domains, about twenty minutes) to report
    nothing."""
    if not servers:
        return servers  # (the resolver says there is no server to ask)
    silent = asyncio.run(silent_nameservers(servers, timeout))
    said = [f"{server} ({why})" for server, why in silent]
    if len(silent) == len(servers):
        raise InputError(f"no DNS server replied to a first query (NS of the root): "
                         f"{'; '.join(said)}; check --nameserver or the network")
    for text in said:
        click.echo(f"DNS server {text} did not reply to a first query: not used", err=True)
    unused = {server for server, _ in silent}
    return [server for server in servers if server not in unused]


def _progress_bar() -> Callable[[int, int], None]:
    """A one-line progress bar on the terminal (stderr), redrawn at most once per percent."""
    last = -1

    def show(done: int, total: int) -> None:
        nonlocal last
        percent = done * 100 // total
        if percent == last and done != total:
            return
        last = percent
        filled = percent * 30 // 100
        sys.stderr.write(f"\r  [{'#' * filled}{'.' * (30 - filled)}] {done}/{total} domains")
        sys.stderr.flush()

    return show


EXIT_UNAUTHORIZED = 2  # `probe` without --i-am-authorized


@cli.command()
@click.option("--domain", metavar="DOMAIN", help="Accepted domain to probe [default: --rcpt's domain].")
@click.option("--rcpt", required=True, metavar="ADDRESS",
              help="A dedicated test mailbox in the domain (RCPT TO).")
@click.option("--mail-from", required=True, metavar="ADDRESS",
              help="MAIL FROM: an address in a domain you control (one of the tenant's own domains "
              "tests Direct Send instead).")
@click.option("--helo", metavar="NAME", help="Name given in EHLO [default: --mail-from's domain].")
@click.option("--host", "host_port", metavar="HOST[:PORT]",
              help="Connect here instead of <domain with dashes>.mail.protection.outlook.com:25 "
              "(needed for a domain with a dash, or one served at *.mx.microsoft).")
@click.option("--ca-file", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="Trust this CA bundle (PEM) for STARTTLS instead of the system's (a test "
              "server); the host name is checked either way.")
@click.option("--timeout", type=click.FloatRange(min=0.1, max=300), default=30.0, show_default=True,
              help="Seconds to wait for each reply (the whole run: four times as long).")
@click.option("--send-canary", is_flag=True,
              help="Go past DATA: send one plain, labelled message to --rcpt if it was accepted "
              "(your own tenant only).")
@click.option("--i-am-authorized", "authorized", is_flag=True,
              help="Confirm that you administer the tenant or have written permission to test it.")
@click.option("--snapshot", type=click.Path(path_type=Path, file_okay=False),
              help="Add the transcript to this snapshot folder (its manifest is re-hashed).")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the transcript to this new file (e.g. EXPORT_DIR/Probe-SMTP.json).")
def probe(domain: str | None, rcpt: str, mail_from: str, helo: str | None, host_port: str | None,
          ca_file: Path | None, timeout: float, send_canary: bool, authorized: bool,
          snapshot: Path | None, out: Path | None) -> None:
    """Ask the tenant's Exchange Online endpoint over SMTP whether it accepts mail that did not
    come through the gateway. One connection; stops before DATA unless --send-canary. Exit 0
    locked, 1 exposed or a Direct Send block only, 2 inconclusive or not authorized."""
    import ssl

    from . import probe as probing

    if not authorized:
        what = "--send-canary delivers a message, and the probe" if send_canary else "the probe"
        click.echo(f"mailflow-audit: error: {what} connects to the tenant's mail endpoint: run it "
                   "only against a tenant you administer or have written permission to test, and "
                   "say so with --i-am-authorized", err=True)
        sys.exit(EXIT_UNAUTHORIZED)
    if (snapshot is None) == (out is None):
        raise click.UsageError("give --snapshot SNAPSHOT or --out FILE: where the transcript is kept")
    if out is not None and out.exists():
        raise InputError(f"{out}: already exists; choose a new file")
    if snapshot is not None:
        probing.check_snapshot(snapshot)
    recipient = probing.check_address(rcpt, "--rcpt")
    sender = probing.check_address(mail_from, "--mail-from")
    name = probing.check_domain(domain, "--domain") if domain else recipient.rpartition("@")[2]
    host, port = (probing.parse_host(host_port) if host_port
                  else (probing.endpoint_for(name), probing.SMTP_PORT))
    request = probing.ProbeRequest(
        domain=name, recipient=recipient, mail_from=sender,
        helo=probing.check_helo(helo) if helo else sender.rpartition("@")[2], host=host, port=port,
        send_canary=send_canary, tls=ssl.create_default_context(cafile=ca_file) if ca_file else None,
        step_timeout=timeout, total_timeout=timeout * 4)
    click.echo(f"probing {host}:{port} as {request.helo}: MAIL FROM:<{sender}> RCPT TO:<{recipient}>, "
               + ("then one canary message" if send_canary else "stopping before DATA"), err=True)
    record = asyncio.run(probing.run_probe(request))
    if snapshot is not None:
        probing.add_to_snapshot(snapshot, record)
    else:
        assert out is not None
        out.write_bytes(probing.encode([record]))
    for line in probing.transcript_lines(record):
        click.echo(f"  {_terminal_safe(line)}", err=True)
    click.echo(f"transcript written to {snapshot or out}", err=True)
    if snapshot is None:
        status, text = probing.summary(record)
    else:
        registry = _registry()
        wanted = Registry(tuple(c for c in registry.checks if c.id in ("PROBE-001", "CONN-001")))
        report = run_audit(open_source(snapshot), wanted)
        verdicts = [f for f in report.findings if f.check_id == "PROBE-001"]
        found = [f for f in verdicts if f.resource == f"SMTP probe to {name}"] or verdicts
        status = found[0].status.value if found else "not_evaluated"
        text = "; ".join(f"{f.status.value} {f.resource}: {f.message}" for f in found)
    click.echo(f"PROBE-001 {_terminal_safe(text)}")
    sys.exit({"pass": 0, "fail": EXIT_FINDINGS, "warn": EXIT_FINDINGS}.get(status, EXIT_INCOMPLETE))


@cli.group()
def checks() -> None:
    """List and explain the registered checks."""


@checks.command("list")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "md"]), default="text",
              show_default=True, help="md prints the catalog as docs/checks.md holds it.")
def checks_list(fmt: str) -> None:
    """Every registered check with its metadata."""
    registry = _registry()
    if fmt == "md":
        from reports.render import render_catalog

        click.echo(render_catalog([c.meta.to_json() for c in registry.checks]), nl=False)
        return
    if fmt == "json":
        data: dict[str, Any] = {
            "checks": [c.meta.to_json() for c in registry.checks],
            "problems": [{"source": p.source, "message": p.message} for p in registry.problems],
        }
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    for chk in registry.checks:
        click.echo(f"{chk.id:10} {chk.meta.severity.value:8} {chk.meta.title}")
    for problem in registry.problems:
        click.echo(f"plugin problem: {problem.source}: {problem.message}", err=True)


@checks.command("explain")
@click.argument("check_id")
def checks_explain(check_id: str) -> None:
    """Everything known about one check: why, how to fix, references, mappings."""
    registry = _registry()
    chk = registry.get(check_id)
    if chk is None:
        raise InputError(f"no check {check_id!r}; run `mailflow-audit checks list`")
    meta = chk.meta
    wrap = textwrap.TextWrapper(width=92, initial_indent="  ", subsequent_indent="  ")
    click.echo(f"{meta.id}: {meta.title}\nseverity: {meta.severity.value}")
    click.echo("requires: " + ", ".join(meta.requires)
               + (f"; uses if present: {', '.join(meta.uses)}" if meta.uses else ""))
    click.echo("\nWhy it matters:\n" + wrap.fill(meta.rationale))
    if meta.legitimate:
        click.echo("\nNot flagged (legitimate setup):\n" + wrap.fill(meta.legitimate))
    if meta.derives_from:
        click.echo("\nDerived from the findings of: " + ", ".join(meta.derives_from))
    click.echo("\nRemediation:\n" + wrap.fill(meta.remediation.text))
    if meta.remediation.powershell:
        click.echo(textwrap.indent(meta.remediation.powershell, "    "))
    if meta.references:
        click.echo("\nReferences:")
        for ref in meta.references:
            click.echo(f"  - {ref.title}: {ref.url}")
    mapped = [(label, ids) for label, ids in (("MITRE ATT&CK", meta.mappings.attack),
                                               ("CIS M365", meta.mappings.cis),
                                               ("CISA SCuBA", meta.mappings.scuba)) if ids]
    if mapped:
        click.echo("\nMappings:")
        for label, ids in mapped:
            click.echo(f"  {label}: {', '.join(ids)}")


@cli.group()
def gateways() -> None:
    """The gateway profiles shipped with the tool."""


@gateways.command("list")
def gateways_list() -> None:
    """Every shipped gateway profile, with its range sources."""
    for profile in builtin_profiles():
        ranges = sum(len(g.ranges) for g in profile.range_groups)
        dates = sorted({g.provenance.as_of.isoformat() for g in profile.range_groups
                        if g.provenance.as_of})
        when = f", ranges as of {dates[0]}..{dates[-1]}" if dates else ""
        click.echo(f"{profile.id:24} {profile.name} ({profile.deployment}; {ranges} ranges{when})")


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"mailflow-audit: error: {message}", err=True)
    sys.exit(code)


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point: maps every error to its exit code, without a traceback."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="mailflow-audit",
                 standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx else "mailflow-audit"
        _fail(f"{exc.format_message()} (see `{command} --help`)", EXIT_INPUT)
    except click.Abort:
        _fail("aborted", EXIT_INPUT)
    except InputError as exc:
        _fail(str(exc), EXIT_INPUT)
    except AuditorError as exc:
        if debug:
            raise
        _fail(str(exc), EXIT_INTERNAL)
    except (KeyboardInterrupt, BrokenPipeError):
        sys.exit(130)
    except Exception as exc:
        if debug:
            raise
        _fail(f"internal error: {type(exc).__name__}: {exc} (run with --debug for a traceback)",
              EXIT_INTERNAL)


_COLLECT_COMMANDS = ("collect", "export-script")  # auditor/cli_collect.py, registered when named


def _add_collect_commands(group: click.Group) -> None:
    """Register ``collect`` and ``export-script`` (they reuse this module's helpers)."""
    from .cli_collect import collect, export_script

    group.add_command(collect)
    group.add_command(export_script)
