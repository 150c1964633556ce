"""Collect the DNS evidence of each domain: every record an audit of its mail routing reads.

For a domain: MX and the addresses of each exchanger, the SPF record with its whole
include/redirect tree and the addresses its a/mx terms name, DMARC (with the DMARCbis tree
walk towards the organisational domain), MTA-STS and TLS-RPT records, and the DKIM selectors
of Microsoft 365 and of the gateway. Everything asked is recorded, failures included.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import httpx

from . import spf
from .dnsevidence import SPF_TREE, DomainDns, dns_path
from .dnsmodel import DnsAnswer, DnsQuery, DnsStatus, ascii_name, normalise_name
from .dnsresolve import Resolver
from .mailrecords import dmarc_candidates, is_dmarc
from .mtastsfetch import fetch_policy

MAX_MX_HOSTS = 10
MICROSOFT_DKIM_SELECTORS = ("selector1", "selector2")


class _Recorder:
    """Asks the shared resolver and remembers, in order, what this domain's audit used."""

    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        self._slots: list[DnsAnswer | None] = []

    async def query(self, query: DnsQuery) -> DnsAnswer:
        found = self.resolver.cached(query)
        if found is not None:  # shared names: answered already, no need to wait
            self._slots.append(found)
            return found
        slot = len(self._slots)  # answers keep the order of the questions, not of arrival
        self._slots.append(None)
        found = await self.resolver.query(query)
        self._slots[slot] = found
        return found

    async def query_all(self, queries: list[DnsQuery]) -> list[DnsAnswer]:
        """Ask at once (as ``asyncio.gather`` of ``query``), with a task only for the lookups
        neither answered already nor in flight (those are awaited through ``Resolver.joined``:
        in bulk, most domains find the addresses of the shared MX hosts still being asked)."""
        start = len(self._slots)
        self._slots.extend(self.resolver.cached(q) for q in queries)
        missing = [(start + i, q) for i, q in enumerate(queries) if self._slots[start + i] is None]
        if len(missing) == 1:
            self._slots[missing[0][0]] = await self.resolver.query(missing[0][1])
        elif missing:
            resolver = self.resolver
            found = await asyncio.gather(*(resolver.joined(q) or resolver.query(q)
                                           for _, q in missing))
            for (slot, _), answer in zip(missing, found, strict=True):
                self._slots[slot] = answer
        return [a for a in self._slots[start:start + len(queries)] if a is not None]

    @property
    def answers(self) -> list[DnsAnswer]:
        return [a for a in self._slots if a is not None]

    async def ask(self, name: str, rdtype: str) -> DnsAnswer:
        return await self.query(DnsQuery.of(name, rdtype))


@dataclass(frozen=True)
class PolicyFetching:
    """How to fetch MTA-STS policy files: the HTTPS client, and the port (443 but in tests)."""

    client: httpx.AsyncClient
    port: int = 443


async def collect_domain(domain: str, resolver: Resolver, *, dkim_selectors: Iterable[str] = (),
                         policies: PolicyFetching | None = None,
                         signing_cnames: bool = False) -> DomainDns | None:
    """Every answer needed to judge one domain, or None for a name that cannot be a file.

    ``signing_cnames``: also ask Microsoft's selectors as CNAME, for a tenant's own domains
    (DKIM-001 compares the alias target with Get-DkimSigningConfig): the TXT lookup follows
    the alias and keeps only the name asked, not where it points."""
    name = normalise_name(domain)
    path = dns_path(name)
    if path is None:
        return None
    rec = _Recorder(resolver)
    started = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    mx = await rec.ask(name, "MX")
    if mx.status is DnsStatus.OK:
        hosts = [host for _, host in mx.mx() if host][:MAX_MX_HOSTS]
        await rec.query_all([DnsQuery.of(h, t) for h in hosts for t in ("A", "AAAA")])
    tree = await spf.resolve_async(spf.analyse(ascii_name(name)), rec.query)
    targets = sorted(set(tree.address_targets))
    await rec.query_all([DnsQuery.of(t, rtype) for t in targets for rtype in ("A", "AAAA")])
    for candidate in dmarc_candidates(name):
        if is_dmarc(await rec.ask(f"_dmarc.{candidate}", "TXT")):
            break
    sts, *_ = await rec.query_all([
        DnsQuery.of(f"_mta-sts.{name}", "TXT"),
        DnsQuery.of(f"_smtp._tls.{name}", "TXT"),
        *(DnsQuery.of(f"{s}._domainkey.{name}", "TXT")
          for s in dict.fromkeys([*MICROSOFT_DKIM_SELECTORS, *dkim_selectors])),
        *(DnsQuery.of(f"{s}._domainkey.{name}", "CNAME")
          for s in MICROSOFT_DKIM_SELECTORS if signing_cnames),
    ])
    policy = None
    if policies is not None and sts.status is DnsStatus.OK and any(
            t.startswith(b"v=STSv1") for t in sts.txt()):
        policy = await fetch_policy(name, rec.query, policies.client, port=policies.port)
    recorded = DomainDns.build(name, rec.answers, path, started,
                               [str(ns) for ns in resolver.nameservers], policy)
    # Every answer the tree was read from is in the recording, so reading it again from there
    # (what the SPF checks do) gives this very tree: keep it.
    recorded.derived(SPF_TREE, lambda _: (tree, True))
    return recorded


async def collect(domains: Iterable[str], resolver: Resolver, *,
                  dkim_selectors: Iterable[str] = (),
                  progress: Callable[[int, int], None] | None = None,
                  policies: PolicyFetching | None = None,
                  signing_cnames: bool = False) -> list[DomainDns]:
    """Collect many domains at once; lookups shared between them are asked once.

    ``progress(done, total)`` is called as each domain completes; ``policies`` says how to
    fetch MTA-STS policy files (not fetched when None); ``signing_cnames`` is for a tenant's
    own domains (see ``collect_domain``), not for a bulk list of domains.
    """
    selectors = [s for s in dkim_selectors if not any(c in s for c in "*?[")]
    unique = list(dict.fromkeys(normalise_name(d) for d in domains if d.strip()))
    done = 0

    async def one(name: str) -> DomainDns | None:
        nonlocal done
        found = await collect_domain(name, resolver, dkim_selectors=selectors, policies=policies,
                                     signing_cnames=signing_cnames)
        done += 1
        if progress is not None:
            progress(done, len(unique))
        return found

    found = await asyncio.gather(*(one(d) for d in unique))
    return [d for d in found if d is not None]


async def collect_with_policies(domains: list[str], resolver: Resolver, selectors: list[str],
                                timeout: float,
                                progress: Callable[[int, int], None] | None = None,
                                *, signing_cnames: bool = False) -> list[DomainDns]:
    """Collect DNS evidence and the MTA-STS policy files (HTTPS, certificates verified)."""
    client = _ClientOnDemand(timeout=timeout, verify=True, trust_env=False)
    try:
        return await collect(domains, resolver, dkim_selectors=selectors, progress=progress,
                             policies=PolicyFetching(cast(httpx.AsyncClient, client)),
                             signing_cnames=signing_cnames)
    finally:
        await client.aclose()


class _ClientOnDemand:
    """The ``httpx.AsyncClient`` policy files are fetched with, made when the first one is (as
    ``fetch_policy`` uses it: ``stream``), and closed at the end if it was. Making one loads the
    CA certificates (a tenth of a second, in each bulk worker), which a run where no policy host
    has an address (no domain publishing MTA-STS) never needs."""

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.client: httpx.AsyncClient | None = None

    def stream(self, *args: Any, **kwargs: Any) -> Any:
        if self.client is None:
            self.client = httpx.AsyncClient(**self.options)
        return self.client.stream(*args, **kwargs)

    async def aclose(self) -> None:
        if self.client is not None:
            await self.client.aclose()
