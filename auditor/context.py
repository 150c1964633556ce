"""What a check sees: the evidence it declared, the gateway in front of the tenant, the time.

``as_of`` is the time the evidence was collected, not the time of the audit, so an old
snapshot audited today gives the same result it gave the day it was taken.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any, TypeVar, cast

from . import models
from .dnsevidence import DNS_KEY, DomainDns
from .dnsmodel import normalise_name
from .errors import UndeclaredEvidenceError
from .evidence import EvidenceStore
from .gateways import GatewayContext
from .models import ExoObject

if TYPE_CHECKING:
    from .engine import Finding

M = TypeVar("M", bound=ExoObject)
T = TypeVar("T")
_NOT_DERIVED = object()  # (a derived value may be None)


@dataclass(frozen=True)
class AuditSettings:
    """The user's judgement calls that checks apply (CLI options); defaults suit most tenants."""

    changed_within: timedelta = timedelta(days=30)  # CONN-007: what counts as a recent change
    credential_max_age: timedelta = timedelta(days=365)  # APP-002: oldest acceptable app credential
    rotated_since: datetime | None = None  # APP-002: credentials must be newer (an advisory's date)
    # Why a check that needs the gateway was not evaluated when none was detected: where the
    # command that runs the audit looked for one, and how its user can name it.
    unknown_gateway: str = ("no third-party gateway was detected from connectors, smart hosts or "
                            "MX records; name it with --gateway NAME or --gateway-file FILE")


@dataclass(frozen=True)
class AuditContext:
    """What one audit's checks are run against: the evidence, the gateway and the audit's time."""

    evidence: EvidenceStore
    gateway: GatewayContext
    as_of: datetime
    settings: AuditSettings = field(default_factory=AuditSettings)
    # Values derived from this (immutable) evidence, shared by the checks that ask (``per_audit``).
    _derived: dict[tuple[Callable[..., Any], tuple[Any, ...]], Any] = field(
        default_factory=dict, init=False, repr=False, compare=False)


@lru_cache(maxsize=1 << 10)  # a view per check per domain, from a few declarations
def _key_set(*declared: tuple[str, ...]) -> frozenset[str]:
    """The names of the declarations, as one set."""
    return frozenset().union(*declared)


class CheckContext:
    """A read-only view limited to the evidence a check listed in ``requires``."""

    _by_check: dict[str, tuple[Finding, ...]] | None = None  # ``findings``' index, made on first use

    def __init__(self, audit: AuditContext, requires: Iterable[str], uses: Iterable[str] = (), *,
                 findings: tuple[Finding, ...] = (), derives_from: Iterable[str] = (),
                 ran: frozenset[str] = frozenset()) -> None:
        self._audit = audit
        self._allowed = _key_set(tuple(requires), tuple(uses))
        self._findings = findings
        self._sources = _key_set(tuple(derives_from))
        self._ran = ran

    @classmethod
    def of_sets(cls, audit: AuditContext, allowed: frozenset[str], sources: frozenset[str], *,
                findings: tuple[Finding, ...] = (), ran: frozenset[str] = frozenset()) -> CheckContext:
        """The view of a check whose declarations are already made into sets: ``allowed``, the
        evidence it requires or uses, ``sources``, what it derives from (the engine makes them
        once per check for all the audits of a run, not once per audit)."""
        view = cls.__new__(cls)
        view._audit = audit
        view._allowed = allowed
        view._findings = findings
        view._sources = sources
        view._ran = ran
        return view

    def findings(self, check_id: str) -> tuple[Finding, ...]:
        """A verdict check's view of the findings of a check it derives from."""
        if check_id not in self._sources:
            raise UndeclaredEvidenceError(f"the check read {check_id}'s findings without "
                                          "declaring it in derives_from")
        if self._by_check is None:  # (a verdict check asks once per domain: not a scan each time)
            grouped: dict[str, list[Finding]] = {}
            for finding in self._findings:
                grouped.setdefault(finding.check_id, []).append(finding)
            self._by_check = {key: tuple(found) for key, found in grouped.items()}
        return self._by_check.get(check_id, ())

    def ran(self, check_id: str) -> bool:
        """Whether a check this one derives from was registered and run in this audit."""
        if check_id not in self._sources:
            raise UndeclaredEvidenceError(f"{check_id} is not in derives_from")
        return check_id in self._ran

    def evidence_state(self, key: str) -> str:
        """A declared evidence item's state and why, for a not-evaluated message."""
        if key not in self._allowed:
            raise UndeclaredEvidenceError(f"the check asked for {key} without declaring it")
        collection = self._audit.evidence.get(key)
        return collection.state.value + (f" ({collection.reason})" if collection.reason else "")

    def rejected(self, key: str) -> tuple[models.Rejected, ...]:
        """The objects of a declared item that could not be read: the engine reports each, and a
        check must not judge their absence (a config it cannot read is not a missing config)."""
        if key not in self._allowed:
            raise UndeclaredEvidenceError(f"the check asked for {key} without declaring it")
        return self._audit.evidence.get(key).rejected

    def available(self, key: str) -> bool:
        """Whether declared evidence (required or optional) is usable in this snapshot."""
        if key not in self._allowed:
            raise UndeclaredEvidenceError(f"the check asked for {key} without declaring it")
        return self._audit.evidence.get(key).state.usable

    def per_audit(self, compute: Callable[..., T], *args: Hashable, reads: Iterable[str]) -> T:
        """``compute(self, *args)``, worked out by the first check of the audit that asks and
        shared with the others: for what several checks derive alike from the evidence (the
        domains the DNS checks judge). ``reads``, the evidence ``compute`` reads, must be
        declared by every check that asks, as if it read them itself."""
        for key in reads:
            if key not in self._allowed:
                raise UndeclaredEvidenceError(f"the check asked for {key} without declaring it")
        derived = self._audit._derived
        found = derived.get((compute, args), _NOT_DERIVED)
        if found is _NOT_DERIVED:
            found = derived[(compute, args)] = compute(self, *args)
        return found  # type: ignore[no-any-return]  # (not cast: a call, 25,000 times a run)

    @property
    def gateway(self) -> GatewayContext:
        return self._audit.gateway

    @property
    def as_of(self) -> datetime:
        return self._audit.as_of

    @property
    def settings(self) -> AuditSettings:
        return self._audit.settings

    def objects(self, key: str, model: type[M]) -> tuple[M, ...]:
        if key not in self._allowed:
            raise UndeclaredEvidenceError(f"the check read {key} without declaring it in requires")
        return cast(tuple[M, ...], self._audit.evidence.get(key).items)

    @property
    def transport_rules(self) -> tuple[models.TransportRule, ...]:
        return self.objects("Get-TransportRule", models.TransportRule)

    @property
    def inbound_connectors(self) -> tuple[models.InboundConnector, ...]:
        return self.objects("Get-InboundConnector", models.InboundConnector)

    @property
    def outbound_connectors(self) -> tuple[models.OutboundConnector, ...]:
        return self.objects("Get-OutboundConnector", models.OutboundConnector)

    @property
    def accepted_domains(self) -> tuple[models.AcceptedDomain, ...]:
        return self.objects("Get-AcceptedDomain", models.AcceptedDomain)

    @property
    def organization_config(self) -> models.OrganizationConfig | None:
        found = self.objects("Get-OrganizationConfig", models.OrganizationConfig)
        return found[0] if found else None

    @property
    def connection_filter_policies(self) -> tuple[models.HostedConnectionFilterPolicy, ...]:
        return self.objects("Get-HostedConnectionFilterPolicy", models.HostedConnectionFilterPolicy)

    def dns(self, domain: str) -> DomainDns | None:
        """The DNS answers recorded for a domain (None when it was not collected)."""
        if DNS_KEY not in self._allowed:
            raise UndeclaredEvidenceError("the check read DNS evidence without declaring it")
        return self._audit.evidence.dns.get(normalise_name(domain))

    def recorded_domains(self) -> list[str]:
        """Every domain with recorded DNS answers."""
        if DNS_KEY not in self._allowed:
            raise UndeclaredEvidenceError("the check read DNS evidence without declaring it")
        return sorted(self._audit.evidence.dns)

    def is_internal_address(self, address: str) -> bool:
        """Whether an address is in one of the tenant's accepted domains (or their subdomains
        where ``MatchSubDomains`` is set)."""
        domain = address.rsplit("@", 1)[-1].lower().rstrip(".")
        for accepted in self.accepted_domains:
            name = accepted.normalised_name
            if not name:
                continue
            if name.startswith("*."):
                if domain.endswith(name[1:]):
                    return True
            elif domain == name or (accepted.MatchSubDomains and domain.endswith("." + name)):
                return True
        return False
