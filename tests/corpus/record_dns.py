"""Re-record the corpus tenants' DNS evidence from the zone files in ``tests/corpus/zones/``.

    python -m tests.corpus.record_dns [TENANT...]

The zones are served by a local Knot DNS server (``tests/dnsserver.py``; knotd must be installed,
e.g. ``apt-get install knot``, or named by $KNOTD), and each tenant's domains are collected with the
same code ``mailflow-audit import --nameserver 127.0.0.1:PORT`` runs: the tenant's accepted
domains (not ``*.onmicrosoft.com``), the detected gateway's DKIM selectors, and every lookup
the audit reads. An MTA-STS policy is fetched over real HTTPS from a local server
(``tests/httpsserver.py``) that serves ``zones/mta-sts/<domain>.txt`` under its own test
certificate authority, which is why the zones point ``mta-sts.<domain>`` at 127.0.0.1.

So that re-recording unchanged zones changes no file, the times (``collected_at``, ``at``) are
set to the export's ``collected_at``, ``elapsed_ms`` is dropped and the server's random port is
left out of ``server`` and ``resolvers``. Everything else is what the resolver recorded.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx

from auditor.dnscollect import PolicyFetching, collect
from auditor.dnsresolve import Nameserver, Resolver
from auditor.gateways import builtin_profiles, resolve_gateway
from auditor.snapshot import import_export_folder
from tests.corpus import CORPUS, tenant_folders
from tests.dnsserver import KnotServer, knotd_path
from tests.httpsserver import HttpsServer, Reply

ZONES = CORPUS / "zones"
POLICIES = ZONES / "mta-sts"
POLICY_PATH = "/.well-known/mta-sts.txt"
SERVER_LABEL = "127.0.0.1 (Knot, tests/corpus/zones)"


def zones() -> dict[str, str]:
    return {path.name.removesuffix(".zone"): path.read_text() for path in sorted(ZONES.glob("*.zone"))}


def _wanted_domains(folder: Path) -> tuple[list[str], list[str], str]:
    """The domains ``import`` would look up, the gateway's DKIM selectors, and the export time."""
    snapshot = import_export_folder(folder)
    names = [str(getattr(d, "DomainName", "") or "") for d in snapshot.evidence.usable("Get-AcceptedDomain")]
    domains = [d for d in names
               if d and not d.startswith("*") and not d.lower().rstrip(".").endswith(".onmicrosoft.com")]
    gateway = resolve_gateway(snapshot.evidence, builtin_profiles())
    selectors = [s for p in gateway.active for s in p.dkim_selectors]
    collected = json.loads((folder / "export.json").read_text(encoding="utf-8-sig"))["collected_at"]
    return domains, selectors, collected


def _normalised(data: bytes, collected: str) -> bytes:
    body: dict[str, Any] = json.loads(data)
    body["collected_at"] = collected
    body["resolvers"] = [SERVER_LABEL]
    for answer in body["answers"]:
        answer["at"] = collected
        answer["elapsed_ms"] = None
        answer["server"] = SERVER_LABEL
    if body.get("mta_sts_policy"):
        body["mta_sts_policy"]["at"] = collected
    return (json.dumps(body, indent=1, ensure_ascii=False) + "\n").encode()


async def _record_domain(domain: str, selectors: list[str], address: tuple[str, int]) -> bytes:
    resolver = Resolver([Nameserver(*address)], timeout=2.0)
    async with HttpsServer([f"mta-sts.{domain}"]) as server:
        policy = POLICIES / f"{domain}.txt"
        if policy.is_file():
            server.routes[POLICY_PATH] = Reply(body=policy.read_bytes())
        async with httpx.AsyncClient(verify=server.client_context(), timeout=3.0,
                                     trust_env=False) as client:
            found = await collect([domain], resolver, dkim_selectors=selectors,
                                  policies=PolicyFetching(client, port=server.port),
                                  signing_cnames=True)
    return found[0].to_bytes()


def record(folders: Iterable[Path], address: tuple[str, int]) -> dict[Path, bytes]:
    """The DNS evidence files of each tenant, as ``{path: contents}``."""
    out: dict[Path, bytes] = {}
    for folder in folders:
        domains, selectors, collected = _wanted_domains(folder)
        for domain in domains:
            data = asyncio.run(_record_domain(domain, selectors, address))
            out[folder / "dns" / f"{domain}.json"] = _normalised(data, collected)
    return out


def main(argv: list[str]) -> int:
    folders = tenant_folders(argv)
    knotd = knotd_path() or ("/usr/sbin/knotd" if Path("/usr/sbin/knotd").exists() else None)
    if knotd is None:
        print("knotd not found: install Knot DNS (apt-get install knot) or set $KNOTD", file=sys.stderr)
        return 2
    with KnotServer(zones(), knotd=knotd) as server:
        recorded = record(folders, server.address)
    for folder in folders:
        for stale in (folder / "dns").glob("*.json"):
            if stale not in recorded:
                stale.unlink()
                print(f"removed {stale.relative_to(CORPUS)}")
    for path, data in sorted(recorded.items()):
        path.parent.mkdir(exist_ok=True)
        old = path.read_bytes() if path.exists() else None
        if old != data:
            path.write_bytes(data)
        state = "unchanged" if old == data else "new" if old is None else "changed"
        print(f"{state:9} {path.relative_to(CORPUS)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
