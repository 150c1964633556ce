"""Fetch a domain's MTA-STS policy file over HTTPS (RFC 8461 3.3), recording what happened.

The host ``mta-sts.<domain>`` is resolved through the audit's own resolver (so --nameserver
is honoured; ``policy_host`` says what to ask), then contacted by address with the name as TLS
SNI and Host header; the certificate must be valid for that name. Redirects are not followed, as
the RFC requires.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .dnsevidence import PolicyFetch
from .dnsmodel import DnsAnswer, DnsQuery, DnsStatus
from .dnsresolve import iso_time
from .mtasts import MAX_POLICY_BYTES

if TYPE_CHECKING:
    import httpx

POLICY_PATH = "/.well-known/mta-sts.txt"


@dataclass(frozen=True, slots=True)
class PolicyHost:
    """Where a domain's policy file is fetched from: its URL and the host's first address."""

    domain: str
    address: str
    at: str  # when the fetch began (its address lookups included)

    @property
    def host(self) -> str:
        return f"mta-sts.{self.domain}"

    @property
    def url(self) -> str:
        return f"https://{self.host}{POLICY_PATH}"


def policy_host(domain: str) -> Generator[DnsQuery, DnsAnswer, PolicyHost | PolicyFetch]:
    """Look up ``mta-sts.<domain>`` (sans I/O: yields each query, is sent its answer): where to
    fetch the policy from, or the failed fetch when the host has no address."""
    host = f"mta-sts.{domain}"
    at = iso_time(time.time_ns())
    addresses: list[str] = []
    statuses = []
    for rdtype in ("A", "AAAA"):
        found = yield DnsQuery.of(host, rdtype)
        statuses.append(found.status)
        if found.status is DnsStatus.OK:
            addresses.extend(found.addresses())
        elif found.status is DnsStatus.NXDOMAIN:
            break  # no such name: it has no record of any type (RFC 8020), AAAA included
    if not addresses:
        temporary = any(s.temporary for s in statuses)
        return PolicyFetch(f"https://{host}{POLICY_PATH}", "timeout" if temporary else "error", at=at,
                           detail=f"{host} has no address ({', '.join(s.value for s in statuses)})")
    return PolicyHost(domain, addresses[0], at)


async def fetch_policy(where: PolicyHost, client: httpx.AsyncClient, *, port: int = 443) -> PolicyFetch:
    """Fetch ``https://mta-sts.<domain>/.well-known/mta-sts.txt`` from the address found; never
    raises."""
    import httpx  # (loaded only when a policy is fetched: most runs of many domains fetch none)

    host, url, at, address = where.host, where.url, where.at, where.address
    literal = f"[{address}]" if ipaddress.ip_address(address).version == 6 else address
    target = f"https://{literal}:{port}{POLICY_PATH}"
    headers = {"Host": host if port == 443 else f"{host}:{port}", "Accept": "text/plain"}
    try:
        async with client.stream("GET", target, headers=headers, follow_redirects=False,
                                 extensions={"sni_hostname": host}) as response:
            body = b""
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_POLICY_BYTES:
                    return PolicyFetch(url, "error", response.status_code, at=at, address=address,
                                       detail=f"the policy is larger than {MAX_POLICY_BYTES} bytes")
            content_type = response.headers.get("content-type")
            if response.status_code != 200:
                return PolicyFetch(url, "error", response.status_code, content_type, at=at,
                                   address=address, detail=f"HTTP {response.status_code} "
                                   "(redirects are not followed for MTA-STS)")
            return PolicyFetch(url, "ok", 200, content_type, body.decode("utf-8", "replace"),
                               at=at, address=address)
    except httpx.TimeoutException as exc:
        return PolicyFetch(url, "timeout", at=at, address=address, detail=f"timed out: {exc}")
    except httpx.HTTPError as exc:
        return PolicyFetch(url, "error", at=at, address=address,
                           detail=f"{type(exc).__name__}: {exc}"[:500])
