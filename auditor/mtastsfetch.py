"""Fetch a domain's MTA-STS policy file over HTTPS (RFC 8461 3.3), recording what happened.

The host ``mta-sts.<domain>`` is resolved through the audit's own resolver (so --nameserver
is honoured), then contacted by address with the name as TLS SNI and Host header; the
certificate must be valid for that name. Redirects are not followed, as the RFC requires.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import httpx

from .dnsevidence import PolicyFetch
from .dnsmodel import DnsAnswer, DnsQuery, DnsStatus
from .mtasts import MAX_POLICY_BYTES

POLICY_PATH = "/.well-known/mta-sts.txt"


async def fetch_policy(domain: str, lookup: Callable[[DnsQuery], Awaitable[DnsAnswer]],
                       client: httpx.AsyncClient, *, port: int = 443) -> PolicyFetch:
    """Fetch ``https://mta-sts.<domain>/.well-known/mta-sts.txt``; never raises."""
    host = f"mta-sts.{domain}"
    url = f"https://{host}{POLICY_PATH}"
    at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    addresses: list[str] = []
    statuses = []
    for rdtype in ("A", "AAAA"):
        found = await lookup(DnsQuery.of(host, rdtype))
        statuses.append(found.status)
        if found.status is DnsStatus.OK:
            addresses.extend(found.addresses())
    if not addresses:
        temporary = any(s.temporary for s in statuses)
        return PolicyFetch(url, "timeout" if temporary else "error", at=at,
                           detail=f"{host} has no address ({', '.join(s.value for s in statuses)})")
    address = addresses[0]
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
