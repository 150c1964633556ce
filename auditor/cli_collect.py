"""``collect`` (live, read-only collection from Exchange Online) and ``export-script``.

Registered on the ``mailflow-audit`` group at the end of auditor/cli.py (import this module
through auditor.cli). ``collect`` writes the collected REST bodies as an export folder with an
export.json recording each item's state, then imports that folder exactly as ``import`` does:
a live snapshot and an imported one have the same layout.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import click
import httpx

from .auditlog import AUDIT_KEY, collect_audit_log, not_collected
from .cli import EXIT_INCOMPLETE, _dns, _terminal_safe, dns_options
from .errors import InputError
from .evidence import State
from .exo_rest import (
    ADMIN_API,
    BATCH_SIZE,
    INBOX_RULES,
    MAILBOXES,
    MAX_BATCH_SIZE,
    PLAN,
    CmdletCall,
    CmdletResult,
    ExoClient,
    Progress,
    RetryPolicy,
)
from .graph import GRAPH_API, GRAPH_SCOPE, GraphClient, graph_plan
from .graph_mailbox import GraphMailboxCollector
from .mailbox import (
    API_NAMES,
    EWS_URL,
    GRAPH,
    HEADERS_KEY,
    RULES_KEY,
    MailboxCollector,
    MailboxPolicy,
    collect_mailbox_evidence,
    mailbox_addresses,
)
from .oauth import (
    DEFAULT_AUTHORITY,
    EXO_SCOPE,
    CertificateCredential,
    ClientSecretCredential,
    Credential,
    DeviceCodeCredential,
    check_endpoint,
    load_certificate,
)
from .snapshot import EXPORT_MANIFEST, import_export_folder, write_snapshot

EXPORT_SCRIPT = "export_script.ps1"
ORGANIZATION_CONFIG = "Get-OrganizationConfig"  # EwsEnabled / EwsAllowedAppIDs: may EWS be used?
# The admin API items (exo/); mailbox/ items are read over EWS (auditor.mailbox) or Microsoft
# Graph (auditor.graph_mailbox).


class TerminalProgress(Progress):
    """One redrawn status line on a terminal; one plain line per finished item otherwise."""

    def __init__(self, total: int, *, live: bool) -> None:
        self.total = total
        self.live = live
        self.done = 0
        self.running: list[str] = []

    def started(self, call: CmdletCall) -> None:
        self.running.append(call.key)
        self._draw()

    def finished(self, result: CmdletResult) -> None:
        if result.key in self.running:
            self.running.remove(result.key)
        self.done += 1
        if self.live:
            self._draw()
        else:
            click.echo(_line(result), err=True)

    def _draw(self) -> None:
        if not self.live:
            return
        running = ", ".join(self.running[:3]) + (" ..." if len(self.running) > 3 else "")
        text = f"  collecting [{self.done}/{self.total}] {running}"[:100]
        sys.stderr.write(f"\r{text:<100}")
        sys.stderr.flush()

    def close(self) -> None:
        if self.live:
            sys.stderr.write("\r" + " " * 100 + "\r")
            sys.stderr.flush()


def _line(result: CmdletResult) -> str:
    if result.state.usable:
        detail = f"{result.objects} objects, {result.pages} page(s)"
        if result.reason:
            detail += f"; {result.reason}"
    else:
        detail = result.reason or ""
    return f"  {result.state.value:8} {result.key}: {_terminal_safe(detail)}"


def _source(result: CmdletResult) -> str:
    """How the manifest names an item's origin: the admin API call that produced it."""
    if result.key in graph_plan() or result.key == AUDIT_KEY:
        return result.cmdlet  # the Graph request, as GraphClient names it
    parameters = " ".join(f"-{k} {v}" for k, v in _plan_parameters(result.key).items())
    if result.key in (RULES_KEY, HEADERS_KEY):
        api = GRAPH if result.cmdlet.startswith(API_NAMES[GRAPH]) else "ews"
        return f"{result.cmdlet} (mailbox evidence over {API_NAMES[api]})"
    if result.cmdlet == INBOX_RULES:
        parameters = f"-Mailbox <each mailbox Get-Mailbox listed> {parameters}"
    return f"admin API InvokeCommand {result.cmdlet}{' ' + parameters if parameters else ''}"


def _plan_parameters(key: str) -> dict[str, object]:
    return next((dict(c.parameters) for c in PLAN if c.key == key), {})


def _credential(tenant: str, client_id: str, certificate: Path | None, password: str | None,
                secret: str | None, device_code: bool, authority: str, backoff: float,
                scope: str = EXO_SCOPE) -> Credential:
    """The way in: device code when asked, else the certificate (preferred), else the secret."""
    if device_code:
        return DeviceCodeCredential(tenant, client_id, lambda text: click.echo(text, err=True),
                                    authority=authority, backoff=backoff, scope=scope)
    if certificate is not None:
        return CertificateCredential(tenant, client_id, load_certificate(certificate, password),
                                     authority=authority, backoff=backoff, scope=scope)
    if secret:
        return ClientSecretCredential(tenant, client_id, secret, authority=authority, backoff=backoff,
                                      scope=scope)
    raise click.UsageError("give --certificate (or AZURE_CLIENT_CERTIFICATE_PATH), a client secret "
                           "(AZURE_CLIENT_SECRET) or --device-code")


def _refuse_existing(out: Path) -> None:
    """Fail before collecting, not after, when the snapshot cannot be written."""
    if out.suffix.lower() == ".zip" and out.exists():
        raise InputError(f"{out}: already exists; choose a new name")
    if out.suffix.lower() != ".zip" and out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out}: already exists and is not empty; choose a new folder")


async def _collect(credential: Credential, tenant: str, admin_api: str, policy: RetryPolicy,
                   calls: Sequence[CmdletCall], concurrency: int, inbox_rules: bool,
                   progress: TerminalProgress, mailbox_policy: MailboxPolicy,
                   ews_url: str, graph: Credential | None = None,
                   graph_api: str = GRAPH_API,
                   batch_size: int = BATCH_SIZE, mailbox_api: str = "auto",
                   mailbox_graph: Credential | None = None) -> tuple[str, list[CmdletResult]]:
    """Sign in first (fail fast on credentials), then collect every item; mailbox evidence
    last, for the mailboxes Get-Mailbox listed, over EWS or Microsoft Graph (``mailbox_api``;
    ``mailbox_graph`` signs in to Graph for it), saying which and why."""
    async with httpx.AsyncClient(timeout=policy.timeout) as http:
        token = await credential.token(http)
        client = ExoClient(tenant, credential, http, base_url=admin_api, policy=policy)
        try:
            results = await client.collect(calls, concurrency=concurrency, progress=progress,
                                           inbox_rules=inbox_rules, batch_size=batch_size)
        finally:
            progress.close()
        if client.batch_refused:
            click.echo(f"note: {client.batch_refused}", err=True)
        listed = next((r.body for r in results if r.key == MAILBOXES), None)
        org_config = next((r.body for r in results if r.key == ORGANIZATION_CONFIG), None)
        ews = MailboxCollector(credential, http, ews_url=ews_url, policy=mailbox_policy)
        over_graph = (GraphMailboxCollector(mailbox_graph, http, base_url=graph_api, policy=mailbox_policy)
                      if mailbox_graph is not None else None)
        choice, found = await collect_mailbox_evidence(mailbox_api, ews, over_graph,
                                                       mailbox_addresses(listed), org_config,
                                                       credential.client_id)
        if choice is not None:
            click.echo(choice.line, err=True)
        results += found
        if graph is None:  # the app inventory (APP-*), with its own Graph-scoped token
            results += [CmdletResult(key, "Microsoft Graph", State.MISSING,
                                     reason="not collected (--no-graph)") for key in graph_plan()]
        else:
            results += await GraphClient(graph, http, base_url=graph_api, policy=policy).collect()
        return str(token.claims.get("tid") or tenant), results


def export_manifest(results: Sequence[CmdletResult], *, collected_at: datetime, tenant_id: str,
                    credential: Credential, admin_api: str) -> bytes:
    """export.json of a live collection: when, from where, how, and each item's state."""
    body = {
        "tool": "mailflow-audit collect",
        "collected_at": collected_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "tenant": tenant_id,
        "admin_api": admin_api,
        "auth": credential.kind,
        "client_id": credential.client_id,
        "cmdlets": {r.key: r.status() for r in results},
    }
    return json.dumps(body, indent=2, ensure_ascii=False).encode()


@click.command()
@click.option("--tenant", envvar="AZURE_TENANT_ID", required=True, metavar="ID",
              help="Tenant id (GUID) or initial domain [env AZURE_TENANT_ID].")
@click.option("--client-id", envvar="AZURE_CLIENT_ID", required=True, metavar="ID",
              help="Application (client) id [env AZURE_CLIENT_ID].")
@click.option("--certificate", envvar="AZURE_CLIENT_CERTIFICATE_PATH",
              type=click.Path(path_type=Path, dir_okay=False),
              help="PEM (certificate + private key) or .pfx file for app-only sign-in "
                   "[env AZURE_CLIENT_CERTIFICATE_PATH].")
@click.option("--certificate-password", envvar="AZURE_CLIENT_CERTIFICATE_PASSWORD",
              help="Password of the certificate file [env AZURE_CLIENT_CERTIFICATE_PASSWORD].")
@click.option("--client-secret", envvar="AZURE_CLIENT_SECRET",
              help="Client secret for app-only sign-in; prefer the environment variable "
                   "AZURE_CLIENT_SECRET (a command line is visible to other local users).")
@click.option("--device-code", is_flag=True,
              help="Sign in as a user (a consultant with a reader role) with a device code.")
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="Snapshot to write: a new folder, or a file ending in .zip.")
@click.option("--concurrency", type=click.IntRange(1, 10), default=3, show_default=True,
              help="Admin API requests in flight at once.")
@click.option("--batch-size", type=click.IntRange(1, MAX_BATCH_SIZE), default=BATCH_SIZE,
              show_default=True, help="Cmdlet calls per admin API $batch request (1: no batching).")
@click.option("--no-inbox-rules", is_flag=True,
              help="Skip Get-InboxRule (one request per mailbox); the item is marked missing.")
@click.option("--mailboxes/--no-mailboxes", default=False, show_default=True,
              help="Read inbox rules and the transport headers of recent inbox messages (for MBX-002 "
                   "and MAIL-001) over EWS or Microsoft Graph (see --mailbox-api). Off: the items "
                   "are marked missing.")
@click.option("--mailbox-api", type=click.Choice(["auto", "ews", "graph"]), default="auto",
              show_default=True,
              help="How to read mailboxes: ews (needs full_access_as_app, and EWS allowed for the "
                   "app: Exchange Online blocks EWS from October 2026 and switches it off in April "
                   "2027), graph (needs the Graph application permissions MailboxSettings.Read and "
                   "Mail.Read; hidden inbox rules are not visible to it) or auto: EWS where the "
                   "tenant allows it, else Graph.")
@click.option("--mailbox-sample", type=click.IntRange(min=1), metavar="N",
              help="Read only N mailboxes (the same N on every run) [default: all].")
@click.option("--messages-per-mailbox", type=click.IntRange(0, 1000), default=20, show_default=True,
              help="Most recent inbox messages whose headers are read per mailbox (0: none).")
@click.option("--ews-url", default=EWS_URL, show_default=True, help="Exchange Online EWS endpoint.")
@click.option("--max-pages", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Pages fetched per cmdlet before the item is marked partial.")
@click.option("--timeout", type=click.FloatRange(1, 600), default=120.0, show_default=True,
              help="Seconds to wait for one admin API answer.")
@click.option("--authority-host", envvar="AZURE_AUTHORITY_HOST", default=DEFAULT_AUTHORITY,
              show_default=True, help="Identity platform [env AZURE_AUTHORITY_HOST].")
@click.option("--admin-api", default=ADMIN_API, show_default=True,
              help="Exchange Online admin API host.")
@click.option("--no-graph", is_flag=True,
              help="Skip the Microsoft Graph app inventory (needs Application.Read.All; for "
                   "APP-001 and APP-002); its items are marked missing.")
@click.option("--graph-api", default=GRAPH_API, show_default=True, help="Microsoft Graph host.")
@click.option("--audit-days", type=click.IntRange(1, 180), default=30, show_default=True, metavar="DAYS",
              help="Days of the unified audit log searched for Exchange admin operations, through "
                   "Microsoft Graph (needs AuditLogsQuery-Exchange.Read.All; for CHG-001: who "
                   "changed it).")
@click.option("--no-audit-log", is_flag=True,
              help="Skip the audit log search; the item is marked missing (so it is with --no-graph).")
@click.option("--backoff", type=click.FloatRange(0, 60), default=2.0, hidden=True)
@click.option("--fail-on-incomplete", is_flag=True,
              help="Exit 2 when an item was not fully collected (partial, denied, error, missing).")
@dns_options
def collect(tenant: str, client_id: str, certificate: Path | None, certificate_password: str | None,
            client_secret: str | None, device_code: bool, out: Path, concurrency: int, batch_size: int,
            no_inbox_rules: bool, mailboxes: bool, mailbox_api: str, mailbox_sample: int | None,
            messages_per_mailbox: int, ews_url: str, max_pages: int, timeout: float, authority_host: str,
            admin_api: str, no_graph: bool, graph_api: str, audit_days: int, no_audit_log: bool,
            backoff: float,
            fail_on_incomplete: bool, no_dns: bool,
            nameservers: tuple[str, ...], domains: tuple[str, ...], dns_timeout: float) -> None:
    """Collect the tenant's evidence live (read-only Get-* cmdlets) into a snapshot."""
    _refuse_existing(out)
    admin_api = check_endpoint(admin_api, "--admin-api")
    credential = _credential(tenant, client_id, certificate, certificate_password, client_secret,
                             device_code, authority_host, backoff)
    graph = None if no_graph else _credential(
        tenant, client_id, certificate, certificate_password, client_secret, device_code,
        authority_host, backoff, scope=GRAPH_SCOPE)
    graph_api = check_endpoint(graph_api, "--graph-api")
    mailbox_graph = graph or (_credential(
        tenant, client_id, certificate, certificate_password, client_secret, device_code,
        authority_host, backoff, scope=GRAPH_SCOPE) if mailboxes and mailbox_api != "ews" else None)
    policy = RetryPolicy(backoff=backoff, timeout=timeout, max_pages=max_pages)
    ews_url = check_endpoint(ews_url, "--ews-url")
    mailbox_policy = MailboxPolicy(concurrency=concurrency, mailbox_sample=mailbox_sample,
                                   messages_per_mailbox=messages_per_mailbox, rules=mailboxes,
                                   headers=mailboxes and messages_per_mailbox > 0,
                                   backoff=backoff, timeout=timeout, max_pages=max_pages)
    progress = TerminalProgress(len(PLAN), live=sys.stderr.isatty())
    collected_at = datetime.now(UTC)
    click.echo(f"collecting {len(PLAN)} evidence items from {admin_api} "
               f"({credential.kind}, {concurrency} in flight)", err=True)
    tenant_id, results = asyncio.run(_collect(credential, tenant, admin_api, policy, PLAN,
                                              concurrency, not no_inbox_rules, progress,
                                              mailbox_policy, ews_url, graph, graph_api, batch_size,
                                              mailbox_api, mailbox_graph))
    if no_audit_log or graph is None:
        results.append(not_collected("not collected (--no-audit-log)" if no_audit_log else
                                     "not collected (--no-graph): it is read through Microsoft Graph"))
    else:
        results.append(asyncio.run(collect_audit_log(graph, graph_api=graph_api, policy=policy,
                                                     days=audit_days, now=collected_at)))
    if not progress.live:
        for result in results[len(PLAN):]:
            click.echo(_line(result), err=True)
    with tempfile.TemporaryDirectory(prefix="mailflow-collect-") as folder:
        export = Path(folder)
        for result in results:
            if result.body is not None:
                (export / f"{result.key}.json").write_bytes(result.body)
        (export / EXPORT_MANIFEST).write_bytes(export_manifest(
            results, collected_at=collected_at, tenant_id=tenant_id, credential=credential,
            admin_api=admin_api))
        snapshot = import_export_folder(export)
        sources = {r.key: _source(r) for r in results}
        snapshot = replace(snapshot,
                           items=tuple(replace(i, source=sources.get(i.key, i.source))
                                       for i in snapshot.items),
                           source={"kind": "admin-api", "host": admin_api, "auth": credential.kind,
                                   "client_id": client_id},
                           tenant={**snapshot.tenant, "tenant_id": tenant_id})
        snapshot = _dns(snapshot, no_dns=no_dns, nameservers=nameservers, domains=domains,
                        timeout=dns_timeout)
        write_snapshot(snapshot, out)
    if progress.live:
        for result in results:
            click.echo(_line(result), err=True)
    incomplete = [r for r in results if r.state is not State.OK]
    if incomplete:
        click.echo(f"{len(incomplete)} of {len(results)} items not fully collected "
                   "(their checks report not evaluated)", err=True)
    click.echo(f"snapshot {snapshot.snapshot_id} written to {out}")
    if fail_on_incomplete and incomplete:
        sys.exit(EXIT_INCOMPLETE)


def export_script_text() -> str:
    """The PowerShell export script shipped with the package."""
    return resources.files("auditor").joinpath(EXPORT_SCRIPT).read_text(encoding="utf-8")


@click.command("export-script")
def export_script() -> None:
    """Print the PowerShell script a client admin runs after Connect-ExchangeOnline.

    It writes the export folder that `import` and `audit` read (save it with
    `mailflow-audit export-script > Export-MailflowEvidence.ps1`).
    """
    click.echo(export_script_text(), nl=False)
