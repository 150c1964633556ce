"""Recorded DNS evidence: one file per domain under ``dns/``, read back without a network.

Each file holds every answer used to judge that domain (MX and its hosts' addresses, the
whole SPF tree, DMARC, MTA-STS, TLS-RPT, DKIM selectors), so an offline re-audit makes the
same decisions from the same answers. A lookup that was never recorded is reported as such,
never treated as an empty answer.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from .dnsmodel import DnsAnswer, DnsQuery, DnsStatus, ascii_name, normalise_name
from .errors import EvidenceError
from .frozen import built_directly
from .models import EvidenceRef
from .spf import initial_domain_ok

T = TypeVar("T")
DNS_DIR = "dns"
NOT_RECORDED = "this lookup is not in the recorded DNS evidence"
DNS_KEY = "dns"
# DomainDns.derived() key of (SpfTree, every lookup recorded) for the domain's own SPF tree.
SPF_TREE = "spf-tree"
SCHEMA_VERSION = 1
_new_ref = built_directly(EvidenceRef)  # several per domain and check in bulk
_SAFE_NAME = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,62}\.)*[a-z0-9_-]{1,63}$")


def dns_path(domain: str) -> str | None:
    """The snapshot file of a domain, or None when the name is not a plain DNS name."""
    name = _a_labels(normalise_name(domain))
    if name is None or len(name) > 253 or not _SAFE_NAME.match(name):
        return None
    return f"{DNS_DIR}/{name}.json"


def domain_problem(domain: str) -> str | None:
    """Why ``domain`` cannot be audited as a mail domain, or None. Beyond being a name that can
    be a snapshot file (``dns_path``), it must be one SPF evaluates (RFC 7208 4.3: two labels or
    more, a top label of letters, digits and inner hyphens, not all digits): SPF gives any other
    name "none" without asking anything, and no mail domain is an IP address or a bare host."""
    name = normalise_name(domain)
    try:
        ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        return "an IP address, not a domain name"
    if dns_path(name) is None:
        return "not a valid domain name"
    if "." not in name:
        return "a single label, not a domain name"
    if name.rsplit(".", 1)[1].isdigit():
        return "its top-level label is all digits, which no domain's is"
    if not initial_domain_ok(ascii_name(name)):
        return "not a domain name SPF evaluates (RFC 7208 4.3)"
    return None


def _a_labels(name: str) -> str | None:
    """``name.encode("idna").decode("ascii")``, or None where the codec refuses. An ASCII name
    (nearly every one) is checked as the codec's own ASCII path checks it, without the codec."""
    if not name.isascii():
        try:
            return name.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    labels = name.split(".")
    if any(not 0 < len(label) < 64 for label in labels[:-1]) or len(labels[-1]) >= 64:
        return None
    return name


@dataclass(frozen=True, slots=True)
class PolicyFetch:
    """The MTA-STS policy file as fetched over HTTPS (or why it could not be)."""

    url: str
    status: str  # "ok", "error" (the server or certificate failed) or "timeout"
    http_status: int | None = None
    content_type: str | None = None
    body: str | None = None
    detail: str | None = None
    at: str | None = None
    address: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "status": self.status, "http_status": self.http_status,
                "content_type": self.content_type, "body": self.body, "detail": self.detail,
                "at": self.at, "address": self.address}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PolicyFetch:
        return cls(url=str(data["url"]), status=str(data["status"]),
                   http_status=data.get("http_status"), content_type=data.get("content_type"),
                   body=data.get("body"), detail=data.get("detail"), at=data.get("at"),
                   address=data.get("address"))


@dataclass(frozen=True)
class DomainDns:
    """Every answer recorded for one domain, in the order the lookups were made."""

    domain: str
    answers: tuple[DnsAnswer, ...]
    file: str
    collected_at: str | None = None
    resolvers: tuple[str, ...] = ()
    mta_sts_policy: PolicyFetch | None = None  # None: not fetched (no _mta-sts record, or offline)
    _index: Mapping[DnsQuery, int] = field(default_factory=dict, repr=False, compare=False)
    _derived: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def derived(self, name: str, compute: Callable[[DomainDns], T]) -> T:
        """A value computed from these answers once (they never change), e.g. the SPF tree
        that several checks read."""
        if name not in self._derived:
            self._derived[name] = compute(self)
        return cast(T, self._derived[name])

    @classmethod
    def build(cls, domain: str, answers: Iterable[DnsAnswer], file: str,
              collected_at: str | None = None, resolvers: Iterable[str] = (),
              mta_sts_policy: PolicyFetch | None = None) -> DomainDns:
        ordered: dict[DnsQuery, DnsAnswer] = {}
        for found in answers:
            ordered.setdefault(found.query, found)
        listed = tuple(ordered.values())
        return cls(normalise_name(domain), listed, file, collected_at, tuple(resolvers),
                   mta_sts_policy, {a.query: i for i, a in enumerate(listed)}, {})

    def lookup(self, query: DnsQuery) -> DnsAnswer:
        """The recorded answer, or an error answer saying it was never recorded."""
        index = self._index.get(query)
        if index is None:
            return DnsAnswer(query, DnsStatus.ERROR, detail=NOT_RECORDED)
        return self.answers[index]

    def get(self, name: str, rdtype: str) -> DnsAnswer:
        return self.lookup(DnsQuery.of(name, rdtype))

    def ref(self, query: DnsQuery, note: str | None = None) -> EvidenceRef:
        index = self._index.get(query)
        if index is None:
            return _new_ref(self.file, "", None, f"{query.name} {query.rdtype}", note or "not recorded")
        found = self.answers[index]
        observed: Any = list(found.records) if found.status is DnsStatus.OK else found.status.value
        return _new_ref(self.file, f"/answers/{index}", observed, f"{query.name} {query.rdtype}", note)

    def to_bytes(self) -> bytes:
        body = {
            "schema_version": SCHEMA_VERSION,
            "domain": self.domain,
            "collected_at": self.collected_at,
            "resolvers": list(self.resolvers),
            "answers": [a.to_json() for a in self.answers],
            "mta_sts_policy": self.mta_sts_policy.to_json() if self.mta_sts_policy else None,
        }
        return (json.dumps(body, indent=1, ensure_ascii=False) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes, file: str) -> DomainDns:
        try:
            body = json.loads(data.decode("utf-8-sig"))
            if not isinstance(body, dict) or body.get("schema_version") != SCHEMA_VERSION:
                raise ValueError("not a DNS evidence file of schema_version 1")
            answers = [DnsAnswer.from_json(a) for a in body["answers"]]
            policy = body.get("mta_sts_policy")
            return cls.build(str(body["domain"]), answers, file, body.get("collected_at"),
                             [str(r) for r in body.get("resolvers") or ()],
                             PolicyFetch.from_json(policy) if policy else None)
        except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
            raise EvidenceError(file, f"unreadable DNS evidence: {exc}") from None
