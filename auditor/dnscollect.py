"""Collect the DNS evidence of each domain: every record an audit of its mail routing reads.

For a domain: MX and the addresses of each exchanger, the SPF record with its whole
include/redirect tree and the addresses its a/mx terms name, DMARC (with the DMARCbis tree
walk towards the organisational domain), MTA-STS and TLS-RPT records, and the DKIM selectors
of Microsoft 365 and of the gateway. Everything asked is recorded, failures included.

What a domain's collection asks is written sans I/O (``domain_lookups``, a generator, as the SPF
walk is): the resolver's answers drive it through callbacks, with no task or coroutine per
domain or per query (in bulk, that bookkeeping was most of the client's time).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, cast

from . import spf
from .dnsevidence import SPF_TREE, DomainDns, PolicyFetch, dns_path
from .dnsmodel import DnsAnswer, DnsQuery, DnsStatus, ascii_name, normalise_name
from .dnsresolve import Resolver, iso_time
from .mailrecords import dmarc_candidates, is_dmarc
from .mtastsfetch import PolicyHost, fetch_policy, policy_host

if TYPE_CHECKING:
    import httpx

MAX_MX_HOSTS = 10
MICROSOFT_DKIM_SELECTORS = ("selector1", "selector2")

# What a domain's collection yields: one query (sent its answer), several asked at once (sent
# their answers in the order asked), or where to fetch the MTA-STS policy from (sent the fetch).
Request = DnsQuery | list[DnsQuery] | PolicyHost
Lookups = Generator[Request, Any, tuple[spf.SpfTree, PolicyFetch | None]]


def domain_lookups(name: str, selectors: list[str] | None, *, fetch_policy_file: bool,
                   signing_cnames: bool) -> Lookups:
    """Every lookup one domain's audit needs, in order: returns its SPF tree and policy fetch.
    ``selectors``: the gateway's DKIM selectors, asked with Microsoft's; None asks no DKIM
    selector at all."""
    mx = yield DnsQuery.of(name, "MX")
    if mx.status is DnsStatus.OK:
        hosts = [host for _, host in mx.mx() if host][:MAX_MX_HOSTS]
        yield [DnsQuery.of(h, t) for h in hosts for t in ("A", "AAAA")]
    tree = yield from spf.analyse(ascii_name(name))
    targets = sorted(set(tree.address_targets))
    yield [DnsQuery.of(t, rtype) for t in targets for rtype in ("A", "AAAA")]
    for candidate in dmarc_candidates(name):
        if is_dmarc((yield DnsQuery.of(f"_dmarc.{candidate}", "TXT"))):
            break
    sts, *_ = yield [
        DnsQuery.of(f"_mta-sts.{name}", "TXT"),
        DnsQuery.of(f"_smtp._tls.{name}", "TXT"),
        *(DnsQuery.of(f"{s}._domainkey.{name}", "TXT")
          for s in dict.fromkeys([*MICROSOFT_DKIM_SELECTORS, *selectors] if selectors is not None else [])),
        *(DnsQuery.of(f"{s}._domainkey.{name}", "CNAME")
          for s in MICROSOFT_DKIM_SELECTORS if signing_cnames),
    ]
    policy = None
    if fetch_policy_file and sts.status is DnsStatus.OK and any(
            t.startswith(b"v=STSv1") for t in sts.txt()):
        where = yield from policy_host(name)
        policy = (yield where) if type(where) is PolicyHost else where
    return tree, policy


@dataclass(frozen=True)
class PolicyFetching:
    """How to fetch MTA-STS policy files: the HTTPS client, and the port (443 but in tests)."""

    client: httpx.AsyncClient
    port: int = 443


class _DomainRun:
    """Drives one domain's ``domain_lookups`` with the resolver's answers as they come, keeping
    them in the order of the questions (not of arrival), and reports the recording when done."""

    __slots__ = ("answered", "batch", "done", "lookups", "name", "path", "pending", "policies", "resolver",
                 "slots", "started")

    def __init__(self, name: str, path: str, lookups: Lookups, resolver: Resolver,
                 policies: PolicyFetching | None,
                 done: Callable[[_DomainRun, DomainDns | BaseException], None]) -> None:
        self.name = name
        self.path = path
        self.lookups = lookups
        self.resolver = resolver
        self.policies = policies
        self.done = done
        self.slots: list[DnsAnswer | None] = []
        self.batch = 0  # where the answers to the current list of queries begin in ``slots``
        self.pending = 0  # answers awaited for it
        self.started = iso_time(time.time_ns())
        self.answered = self._answered  # (made once: the callback of every single query)

    def step(self, value: Any) -> None:
        """Send ``value`` in and ask what comes out, going on at once while the answers are known."""
        try:
            while True:
                try:
                    request = self.lookups.send(value)
                except StopIteration as stop:
                    self._finish(*stop.value)
                    return
                kind = type(request)
                if kind is DnsQuery:
                    value = self._ask(request)
                elif kind is list:
                    value = self._ask_all(request)
                else:
                    self._fetch(request)
                    return
                if value is None:
                    return  # (stepped on by the last answer's callback)
        except BaseException as exc:  # never lost inside a reply handler: the run is told
            self.done(self, exc)
            if not isinstance(exc, Exception):
                raise

    def _ask(self, query: DnsQuery) -> DnsAnswer | None:
        found = self.resolver.request(query, self.answered)
        self.slots.append(found)  # (None while it is awaited)
        return found

    def _answered(self, found: DnsAnswer) -> None:
        self.slots[-1] = found  # (the query awaited is the last asked: nothing was asked since)
        self.step(found)

    def _ask_all(self, queries: list[DnsQuery]) -> list[DnsAnswer] | None:
        slots = self.slots
        start = len(slots)
        request = self.resolver.request
        waiting = 0
        for index, query in enumerate(queries, start):
            found = request(query, partial(self._one_of_many, index))
            slots.append(found)
            if found is None:
                waiting += 1
        if waiting:
            self.batch, self.pending = start, waiting
            return None
        return cast(list[DnsAnswer], slots[start:])

    def _one_of_many(self, index: int, found: DnsAnswer) -> None:
        self.slots[index] = found
        self.pending -= 1
        if self.pending == 0:  # (the list's answers are the last slots: nothing was asked since)
            self.step(self.slots[self.batch:])

    def _fetch(self, where: PolicyHost) -> None:
        assert self.policies is not None
        task = asyncio.ensure_future(fetch_policy(where, self.policies.client, port=self.policies.port))
        _fetches.add(task)
        task.add_done_callback(self._fetched)

    def _fetched(self, task: asyncio.Task[PolicyFetch]) -> None:
        _fetches.discard(task)
        if task.cancelled():
            self.done(self, asyncio.CancelledError())
            return
        exc = task.exception()
        if exc is not None:
            self.done(self, exc)
            return
        self.step(task.result())

    def _finish(self, tree: spf.SpfTree, policy: PolicyFetch | None) -> None:
        recorded = DomainDns.build(self.name, [a for a in self.slots if a is not None], self.path,
                                   self.started, [str(ns) for ns in self.resolver.nameservers], policy)
        # Every answer the tree was read from is in the recording, so reading it again from there
        # (what the SPF checks do) gives this very tree: keep it.
        recorded.derived(SPF_TREE, lambda _: (tree, True))
        del self.answered  # (it refers back to this run: freed once done, with no collector)
        self.done(self, recorded)


_fetches: set[asyncio.Task[PolicyFetch]] = set()  # policy fetches under way (the loop keeps weak refs)


async def collect_domain(domain: str, resolver: Resolver, *, dkim_selectors: Iterable[str] | None = (),
                         policies: PolicyFetching | None = None,
                         signing_cnames: bool = False) -> DomainDns | None:
    """Every answer needed to judge one domain, or None for a name that cannot be a file.

    ``signing_cnames``: also ask Microsoft's selectors as CNAME, for a tenant's own domains
    (DKIM-001 compares the alias target with Get-DkimSigningConfig): the TXT lookup follows
    the alias and keeps only the name asked, not where it points."""
    (found,) = await collect([domain], resolver, dkim_selectors=dkim_selectors, policies=policies,
                             signing_cnames=signing_cnames) or [None]
    return found


async def collect(domains: Iterable[str], resolver: Resolver, *,
                  dkim_selectors: Iterable[str] | None = (),
                  progress: Callable[[int, int], None] | None = None,
                  policies: PolicyFetching | None = None,
                  signing_cnames: bool = False) -> list[DomainDns]:
    """Collect many domains at once; lookups shared between them are asked once.

    ``progress(done, total)`` is called as each domain completes; ``policies`` says how to
    fetch MTA-STS policy files (not fetched when None); ``dkim_selectors`` are the gateway's,
    asked with Microsoft's (None: no DKIM selector is asked, where no check reads them);
    ``signing_cnames`` is for a tenant's own domains (see ``collect_domain``), not for a bulk
    list of domains. A name that cannot be a file is left out.
    """
    unique = list(dict.fromkeys(normalise_name(d) for d in domains if d.strip()))
    runnable = [name for name in unique if dns_path(name) is not None]
    found: dict[str, DomainDns] = {}
    skipped = len(unique) - len(runnable)

    def collected(name: str, recorded: DomainDns) -> None:
        found[name] = recorded
        if progress is not None:
            progress(skipped + len(found), len(unique))

    await collect_each(runnable, resolver, collected, dkim_selectors=dkim_selectors,
                       policies=policies, signing_cnames=signing_cnames)
    return [found[name] for name in runnable]


async def collect_each(domains: Iterable[str], resolver: Resolver,
                       collected: Callable[[str, DomainDns], None], *, at_once: int | None = None,
                       dkim_selectors: Iterable[str] | None = (),
                       policies: PolicyFetching | None = None,
                       signing_cnames: bool = False) -> None:
    """Collect the domains as ``domains`` yields them (each normalised, distinct, and a name
    that can be a file), at most ``at_once`` under way (None: all at once), and tell
    ``collected(name, recording)`` of each as it ends, in the order they end. Bulk workers hand
    out their names this way, block by block, as they go; an exception from ``domains`` or
    ``collected`` ends the collection with it (options: see ``collect``)."""
    selectors = None if dkim_selectors is None else [
        s for s in dkim_selectors if not any(c in s for c in "*?[")]
    names = iter(domains)
    finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    under_way = 0
    exhausted = starting = False

    def fail(exc: BaseException) -> None:
        if not finished.done():
            finished.set_exception(exc)
        if not isinstance(exc, Exception):
            raise exc

    def start_more() -> None:
        # Not re-entered: a domain that ends at once (its answers all known) is counted here.
        nonlocal under_way, exhausted, starting
        if starting:
            return
        starting = True
        try:
            while not exhausted and (at_once is None or under_way < at_once) and not finished.done():
                name = next(names, None)
                if name is None:
                    exhausted = True
                    break
                path = dns_path(name)
                if path is None:
                    raise ValueError(f"not a domain name that can be a file: {name!r}")
                under_way += 1
                lookups = domain_lookups(name, selectors, fetch_policy_file=policies is not None,
                                         signing_cnames=signing_cnames)
                _DomainRun(name, path, lookups, resolver, policies, done).step(None)
        except BaseException as exc:
            fail(exc)
        finally:
            starting = False
        if exhausted and under_way == 0 and not finished.done():
            finished.set_result(None)

    def done(run: _DomainRun, outcome: DomainDns | BaseException) -> None:
        nonlocal under_way
        if finished.done():
            return
        if isinstance(outcome, BaseException):
            fail(outcome)
            return
        under_way -= 1
        try:
            collected(run.name, outcome)
        except BaseException as exc:
            fail(exc)
            return
        start_more()

    start_more()
    await finished


@asynccontextmanager
async def policy_fetching(timeout: float) -> AsyncIterator[PolicyFetching]:
    """How MTA-STS policy files are fetched for a collection (HTTPS, certificates verified):
    the client is made on the first fetch and closed at the end."""
    client = _ClientOnDemand(timeout=timeout, verify=True, trust_env=False)
    try:
        yield PolicyFetching(cast("httpx.AsyncClient", client))
    finally:
        await client.aclose()


async def collect_with_policies(domains: list[str], resolver: Resolver, selectors: list[str] | None,
                                timeout: float,
                                progress: Callable[[int, int], None] | None = None,
                                *, signing_cnames: bool = False) -> list[DomainDns]:
    """Collect DNS evidence and the MTA-STS policy files (HTTPS, certificates verified)."""
    async with policy_fetching(timeout) as policies:
        return await collect(domains, resolver, dkim_selectors=selectors, progress=progress,
                             policies=policies, signing_cnames=signing_cnames)


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
            import httpx  # (only when a policy is fetched)

            self.client = httpx.AsyncClient(**self.options)
        return self.client.stream(*args, **kwargs)

    async def aclose(self) -> None:
        if self.client is not None:
            await self.client.aclose()
