"""Gateway profiles (data shipped in ``auditor/profiles``) and detecting which gateway fronts a tenant.

Detection reads content, never names: connector IP ranges and certificate names, outbound
smart hosts and MX hosts are matched against the profiles. Names of rules and connectors are
attacker-controllable and are not used.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property, lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from .dnsmodel import DnsQuery, DnsStatus
from .errors import ProfileError
from .evidence import EvidenceStore
from .globmatch import glob_match
from .models import (
    EvidenceRef,
    ExoObject,
    HostedConnectionFilterPolicy,
    InboundConnector,
    OutboundConnector,
    TransportRule,
)
from .netutil import IpRange, IpSet

PATTERN_FIELDS = (
    "mx_patterns",
    "spf_includes",
    "smart_hosts",
    "tls_certificate_names",
    "header_stamps",
    "dkim_selectors",
    "archive_domains",
    "arc_sealers",
)
# Facts that are not patterns but still need a [sources.<name>] entry when a profile states them.
SOURCED_FLAGS = ("modifies_messages",)
_TOP_KEYS = {
    "schema_version", "id", "name", "vendor", "deployment", "aliases", "notes",
    "customer_specific_ips", "certificate_shared", "references", "sources", "ip_ranges",
    *PATTERN_FIELDS, *SOURCED_FLAGS,
}
_RANGE_KEYS = {"region", "cidrs", "source", "as_of", "confidence", "note"}
_SOURCE_KEYS = {"url", "as_of", "confidence"}
_CONFIDENCE = {"vendor", "third-party", "observed", "user"}
_ID = re.compile(r"^[a-z0-9][a-z0-9-]*$")
# A domain-name pattern whose part after the last * names at least two labels, so that an
# archive pattern can never match every domain ("*", "*.com").
_ARCHIVE_PATTERN = re.compile(r"^(?:[a-z0-9*-]+\.)*?(?:[a-z0-9-]+\.)+[a-z0-9-]+$")
# An ARC sealing domain (the d= of the ARC-Seal): a plain domain name of two labels or more.
_SEALER_DOMAIN = re.compile(r"^(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z0-9-]+$")
Deployment = Literal["mx", "api", "exchange-online"]


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where and when a profile's published ranges were read, and how sure that source is."""

    url: str | None
    as_of: date | None
    confidence: str


@dataclass(frozen=True, slots=True)
class RangeGroup:
    """The published delivery ranges of one region, with where and when they were read."""

    region: str
    ranges: tuple[IpRange, ...]
    provenance: Provenance
    note: str | None = None


@dataclass(frozen=True)
class GatewayProfile:
    """What identifies one gateway product (MX hosts, SPF includes, smart hosts, certificate
    names, header stamps, DKIM selectors, ARC sealers, delivery ranges) and where each fact
    comes from."""

    id: str
    name: str
    vendor: str
    deployment: Deployment
    origin: str
    aliases: tuple[str, ...] = ()
    notes: str = ""
    customer_specific_ips: bool = False
    certificate_shared: bool = False
    mx_patterns: tuple[str, ...] = ()
    spf_includes: tuple[str, ...] = ()
    smart_hosts: tuple[str, ...] = ()
    tls_certificate_names: tuple[str, ...] = ()
    header_stamps: tuple[str, ...] = ()
    dkim_selectors: tuple[str, ...] = ()
    # Domain-name patterns of the vendor's archive or journaling service: the domain of the
    # journal address it issues, or the host an outbound connector relays journal reports to.
    archive_domains: tuple[str, ...] = ()
    # The d= domain(s) of the gateway's ARC-Seal, the first being the one it is seen to use,
    # and whether it changes messages in transit (link rewriting, banners: DKIM then fails);
    # None where its documentation does not settle it (an optional feature, say).
    arc_sealers: tuple[str, ...] = ()
    modifies_messages: bool | None = None
    references: tuple[tuple[str, str], ...] = ()
    sources: Mapping[str, Provenance] = field(default_factory=dict)
    range_groups: tuple[RangeGroup, ...] = ()

    @cached_property
    def ip_set(self) -> IpSet:
        return IpSet(r for group in self.range_groups for r in group.ranges)

    def matches_mx(self, host: str) -> bool:
        return _match_host(host, self.mx_patterns)

    def matches_smart_host(self, host: str) -> bool:
        return _match_host(host, self.smart_hosts)

    def matches_archive(self, domain: str) -> bool:
        """Whether mail for ``domain`` (or relayed to host ``domain``) reaches this vendor's archive."""
        return _match_host(domain, self.archive_domains)

    def seals_as(self, domain: str) -> bool:
        """Whether ``domain`` (a trusted ARC sealer entry) is one this gateway seals with."""
        return domain.strip().lower().rstrip(".") in self.arc_sealers

    def matches_certificate(self, name: str) -> bool:
        """Whether a connector's TlsSenderCertificateName names this gateway's certificate."""
        candidate = name.strip().lower().rstrip(".")
        for pattern in self.tls_certificate_names:
            pattern = pattern.lower()
            if candidate == pattern or glob_match(candidate, pattern):
                return True
            # "*.mimecast.com" on the connector also admits the vendor's own hosts.
            if candidate.startswith("*.") and glob_match("x" + candidate[1:], pattern):
                return True
        return False


def _match_host(host: str, patterns: tuple[str, ...]) -> bool:
    return _host_matches(host.strip().lower().rstrip("."), patterns)


@lru_cache(maxsize=1 << 14)
def _host_matches(name: str, patterns: tuple[str, ...]) -> bool:
    """Cached: a bulk audit asks the same few MX hosts of every profile for thousands of domains."""
    return any(glob_match(name, p.lower()) for p in patterns)


def _fail(origin: str, message: str) -> ProfileError:
    return ProfileError(f"gateway profile {origin}: {message}")


def _strings(origin: str, data: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise _fail(origin, f"{key} must be a list of non-empty strings")
    return tuple(v.strip() for v in value)


def _date(origin: str, value: Any, where: str) -> date | None:
    if value is None:
        return None
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise _fail(origin, f"{where}: as_of {value!r} is not an ISO date") from None


def _provenance(origin: str, data: Mapping[str, Any], where: str, strict: bool) -> Provenance:
    url = data.get("url", data.get("source"))
    confidence = data.get("confidence", "user" if not strict else None)
    if strict and (not isinstance(url, str) or not url.startswith("https://")):
        raise _fail(origin, f"{where}: a https:// source URL is required")
    if confidence not in _CONFIDENCE:
        raise _fail(origin, f"{where}: confidence must be one of {sorted(_CONFIDENCE)}")
    as_of = _date(origin, data.get("as_of"), where)
    if strict and as_of is None:
        raise _fail(origin, f"{where}: as_of (the date the source was read) is required")
    return Provenance(url=url if isinstance(url, str) else None, as_of=as_of, confidence=confidence)


def parse_profile(data: Mapping[str, Any], origin: str, *, strict: bool) -> GatewayProfile:
    """Validate one profile document. ``strict`` (shipped profiles) demands a source per fact."""
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise _fail(origin, f"unknown keys {sorted(unknown)}")
    if data.get("schema_version") != 1:
        raise _fail(origin, "schema_version must be 1")
    profile_id = data.get("id")
    if not isinstance(profile_id, str) or not _ID.match(profile_id):
        raise _fail(origin, "id must be lowercase letters, digits and dashes")
    for key in ("name", "vendor"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise _fail(origin, f"{key} is required")
    deployment = data.get("deployment", "mx")
    if deployment not in ("mx", "api", "exchange-online"):
        raise _fail(origin, "deployment must be mx, api or exchange-online")
    patterns = {key: _strings(origin, data, key) for key in PATTERN_FIELDS}
    for pattern in patterns["archive_domains"]:
        if not _ARCHIVE_PATTERN.match(pattern.lower()):
            raise _fail(origin, f"archive_domains: {pattern!r} must be a domain name, with * only "
                                "before a literal part of two labels or more (e.g. *.archive.example)")
    patterns["arc_sealers"] = tuple(d.lower().rstrip(".") for d in patterns["arc_sealers"])
    for sealer in patterns["arc_sealers"]:
        if not _SEALER_DOMAIN.match(sealer):
            raise _fail(origin, f"arc_sealers: {sealer!r} must be a domain name of two labels or more "
                                "(the d= of the ARC-Seal), without wildcards")
    modifies = data.get("modifies_messages")
    if modifies is not None and not isinstance(modifies, bool):
        raise _fail(origin, "modifies_messages must be true or false")
    raw_sources = data.get("sources", {})
    if not isinstance(raw_sources, dict):
        raise _fail(origin, "sources must be a table")
    sources: dict[str, Provenance] = {}
    for key, value in raw_sources.items():
        if key not in PATTERN_FIELDS + SOURCED_FLAGS or not isinstance(value, dict):
            raise _fail(origin, f"sources.{key} is not a pattern field table")
        if set(value) - _SOURCE_KEYS:
            raise _fail(origin, f"sources.{key}: unknown keys {sorted(set(value) - _SOURCE_KEYS)}")
        sources[key] = _provenance(origin, value, f"sources.{key}", strict)
    if strict:
        for key, values in patterns.items():
            if values and key not in sources:
                raise _fail(origin, f"{key} has no [sources.{key}] entry")
        if modifies is not None and "modifies_messages" not in sources:
            raise _fail(origin, "modifies_messages has no [sources.modifies_messages] entry")
    groups: list[RangeGroup] = []
    for index, group in enumerate(data.get("ip_ranges", [])):
        where = f"ip_ranges[{index}]"
        if not isinstance(group, dict) or set(group) - _RANGE_KEYS:
            raise _fail(origin, f"{where}: unknown keys or not a table")
        cidrs = _strings(origin, group, "cidrs")
        try:
            ranges = tuple(IpRange.parse(c) for c in cidrs)
        except ValueError as exc:
            raise _fail(origin, f"{where}: {exc}") from None
        groups.append(
            RangeGroup(
                region=str(group.get("region", "all")),
                ranges=ranges,
                provenance=_provenance(origin, group, where, strict),
                note=group.get("note"),
            )
        )
    references = []
    for ref in data.get("references", []):
        if not isinstance(ref, dict) or not isinstance(ref.get("url"), str):
            raise _fail(origin, "references entries need a url")
        references.append((str(ref.get("title", ref["url"])), ref["url"]))
    return GatewayProfile(
        id=profile_id,
        name=data["name"].strip(),
        vendor=data["vendor"].strip(),
        deployment=deployment,
        origin=origin,
        aliases=tuple(a.lower() for a in _strings(origin, data, "aliases")),
        notes=str(data.get("notes", "")),
        customer_specific_ips=bool(data.get("customer_specific_ips", False)),
        certificate_shared=bool(data.get("certificate_shared", False)),
        modifies_messages=modifies,
        references=tuple(references),
        sources=sources,
        range_groups=tuple(groups),
        **patterns,
    )


def builtin_profiles() -> tuple[GatewayProfile, ...]:
    """Every profile shipped with the package, validated strictly."""
    folder = resources.files("auditor").joinpath("profiles")
    profiles = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".toml"):
            continue
        origin = f"builtin:{entry.name}"
        try:
            data = tomllib.loads(entry.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise _fail(origin, f"not valid TOML: {exc}") from None
        profile = parse_profile(data, origin, strict=True)
        if profile.id != entry.name.removesuffix(".toml"):
            raise _fail(origin, f"id {profile.id!r} must equal the file name")
        profiles.append(profile)
    return tuple(profiles)


def load_profile_file(path: Path) -> GatewayProfile:
    """A user's own profile (TOML), e.g. for an on-premises relay or per-customer IPs."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise ProfileError(f"{path}: no such file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{path}: not valid TOML: {exc}") from None
    return parse_profile(data, str(path), strict=False)


def find_profile(profiles: Iterable[GatewayProfile], name: str) -> GatewayProfile:
    wanted = name.strip().lower()
    for profile in profiles:
        if wanted == profile.id or wanted in profile.aliases:
            return profile
    known = ", ".join(sorted(p.id for p in profiles if p.deployment != "exchange-online"))
    raise ProfileError(f"unknown gateway {name!r}; known gateways: {known}")


@dataclass(frozen=True, slots=True)
class Clue:
    """One piece of evidence tying the tenant to a gateway."""

    profile_id: str
    strength: Literal["strong", "weak"]
    description: str
    evidence: EvidenceRef


@dataclass(frozen=True)
class GatewayContext:
    """Which gateway(s) front the tenant, how we know, and helpers to judge addresses."""

    mode: Literal["auto", "forced", "file"]
    active: tuple[GatewayProfile, ...]
    clues: tuple[Clue, ...]
    known: tuple[GatewayProfile, ...]
    ranges: IpSet = field(default_factory=IpSet)

    @property
    def detected(self) -> bool:
        return bool(self.active)

    @property
    def names(self) -> str:
        return ", ".join(p.name for p in self.active) or "none"

    def hints(self) -> tuple[Clue, ...]:
        """Weak clues that did not make any profile active (shown when nothing was detected)."""
        active = {p.id for p in self.active}
        return tuple(c for c in self.clues if c.profile_id not in active)

    def covers(self, rng: IpRange) -> bool:
        return self.ranges.covers(rng)

    def owner(self, rng: IpRange) -> GatewayProfile | None:
        """The known profile (gateway or Exchange Online) whose published ranges hold ``rng``."""
        for profile in self.known:
            if profile.ip_set.covers(rng):
                return profile
        return None

    def certificate_owner(self, name: str) -> GatewayProfile | None:
        for profile in self.active + self.known:
            if profile.deployment != "exchange-online" and profile.matches_certificate(name):
                return profile
        return None

    def archive_owner(self, domain: str) -> GatewayProfile | None:
        """The known profile (shipped or the user's) whose archive service receives mail for
        ``domain`` or runs host ``domain``; the active profiles are asked first."""
        for profile in self.active + self.known:
            if profile.matches_archive(domain):
                return profile
        return None

    def is_active(self, profile: GatewayProfile | None) -> bool:
        return profile is not None and any(p.id == profile.id for p in self.active)


def _parsed_ranges(texts: Iterable[str]) -> list[IpRange]:
    out = []
    for text in texts:
        try:
            out.append(IpRange.parse(text))
        except ValueError:
            continue
    return out


def _clues(evidence: EvidenceStore, candidates: list[GatewayProfile],
           sets: Mapping[str, IpSet], mx_owners: Callable[[str], tuple[GatewayProfile, ...]],
           ) -> list[Clue]:
    """Every clue in the evidence; ``candidates`` are the known profiles but Exchange Online,
    ``sets`` their published ranges by id, ``mx_owners`` the candidates an MX host names."""
    found: list[Clue] = []

    def ranges_clue(obj: ExoObject, prop: str, texts: Iterable[str],
                    strength: Literal["strong", "weak"], what: str) -> None:
        ranges = _parsed_ranges(texts)
        if not ranges:
            return
        for profile in candidates:
            covered = [r for r in ranges if sets[profile.id].covers(r)]
            if covered:
                found.append(Clue(profile.id, strength,
                                  f"{what} '{obj.display_name}' {prop}: {len(covered)} of {len(ranges)} "
                                  f"ranges are {profile.name}'s published ranges", obj.ref(prop)))

    for conn in evidence.usable("Get-InboundConnector"):
        assert isinstance(conn, InboundConnector)
        ranges_clue(conn, "SenderIPAddresses", conn.SenderIPAddresses, "strong", "inbound connector")
        if conn.TlsSenderCertificateName:
            for profile in candidates:
                if profile.matches_certificate(conn.TlsSenderCertificateName):
                    found.append(Clue(profile.id, "strong",
                                      f"inbound connector '{conn.display_name}' trusts the certificate "
                                      f"name {conn.TlsSenderCertificateName} of {profile.name}",
                                      conn.ref("TlsSenderCertificateName")))
    for conn in evidence.usable("Get-OutboundConnector"):
        assert isinstance(conn, OutboundConnector)
        for host in conn.SmartHosts:
            for profile in candidates:
                if profile.matches_smart_host(host):
                    found.append(Clue(profile.id, "strong",
                                      f"outbound connector '{conn.display_name}' relays to {host}, "
                                      f"a {profile.name} smart host", conn.ref("SmartHosts")))
    for rule in evidence.usable("Get-TransportRule"):
        assert isinstance(rule, TransportRule)
        ranges_clue(rule, "SenderIpRanges", rule.SenderIpRanges, "weak", "transport rule")
        ranges_clue(rule, "ExceptIfSenderIpRanges", rule.ExceptIfSenderIpRanges, "weak", "transport rule")
    for domain in evidence.dns.values():
        query = DnsQuery.of(domain.domain, "MX")
        mx = domain.lookup(query)
        if mx.status is not DnsStatus.OK:
            continue
        for _, host in mx.mx():
            for profile in mx_owners(host):
                found.append(Clue(profile.id, "strong",
                                  f"MX of {domain.domain} is {host}, a {profile.name} host",
                                  domain.ref(query)))
    for policy in evidence.usable("Get-HostedConnectionFilterPolicy"):
        assert isinstance(policy, HostedConnectionFilterPolicy)
        ranges_clue(policy, "IPAllowList", policy.IPAllowList, "weak", "connection filter policy")
    return found


class GatewayResolver:
    """Decides which gateway(s) are in front of a tenant, for any number of evidence stores
    judged against the same profiles (a bulk audit makes one store per domain). What depends
    only on the profiles is worked out once: the candidates and their ranges, the candidates
    each MX host names, and the active profiles and ranges of each set of strong clues."""

    def __init__(self, profiles: tuple[GatewayProfile, ...], *,
                 user_profile: GatewayProfile | None = None) -> None:
        self.known = profiles + ((user_profile,) if user_profile else ())
        self.user_profile = user_profile
        self._candidates = [p for p in self.known if p.deployment != "exchange-online"]
        self._sets = {p.id: p.ip_set for p in self._candidates}
        self._mx_owners: dict[str, tuple[GatewayProfile, ...]] = {}
        self._by_strong: dict[frozenset[str], tuple[tuple[GatewayProfile, ...], IpSet]] = {}
        # Most domains of a bulk audit name no gateway: they all get this (frozen) context.
        self._nothing_found = GatewayContext(mode="auto", active=(), clues=(), known=self.known,
                                             ranges=IpSet())

    def mx_owners(self, host: str) -> tuple[GatewayProfile, ...]:
        """The candidates whose MX patterns match ``host``, in the order of the profiles."""
        owners = self._mx_owners.get(host)
        if owners is None:
            owners = self._mx_owners[host] = tuple(p for p in self._candidates if p.matches_mx(host))
        return owners

    def resolve(self, evidence: EvidenceStore, *, forced: str | None = None) -> GatewayContext:
        """See ``resolve_gateway``."""
        known = self.known
        clues = _clues(evidence, self._candidates, self._sets, self.mx_owners)
        if forced and forced.lower() != "auto":
            active: tuple[GatewayProfile, ...] = (find_profile(known, forced),)
            mode: Literal["auto", "forced", "file"] = "forced"
        elif self.user_profile is not None:
            active, mode = (self.user_profile,), "file"
        elif not clues:
            return self._nothing_found
        else:
            strong = frozenset(c.profile_id for c in clues if c.strength == "strong")
            chosen = self._by_strong.get(strong)
            if chosen is None:
                picked = tuple(p for p in known if p.id in strong)
                chosen = self._by_strong[strong] = (picked, _ranges_of(picked))
            return GatewayContext(mode="auto", active=chosen[0], clues=tuple(clues), known=known,
                                  ranges=chosen[1])
        return GatewayContext(mode=mode, active=active, clues=tuple(clues), known=known,
                              ranges=_ranges_of(active))


def _ranges_of(active: tuple[GatewayProfile, ...]) -> IpSet:
    return IpSet(r for p in active for g in p.range_groups for r in g.ranges)


def resolve_gateway(
    evidence: EvidenceStore,
    profiles: tuple[GatewayProfile, ...],
    *,
    forced: str | None = None,
    user_profile: GatewayProfile | None = None,
) -> GatewayContext:
    """Decide which gateway(s) are in front of the tenant.

    A forced name or a user's profile file wins; otherwise every profile with a strong clue
    (a connector's ranges or certificate, an outbound smart host) is active. Weak clues alone
    (rule or allow-list ranges) make nothing active: they are shown as hints instead.
    """
    return GatewayResolver(profiles, user_profile=user_profile).resolve(evidence, forced=forced)
