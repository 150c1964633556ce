"""Parsers for the mail-policy TXT records: DMARC (RFC 7489), MTA-STS (RFC 8461) and TLS-RPT
(RFC 8460). Pure functions over record text; they report problems, they never look anything up."""

from __future__ import annotations

from dataclasses import dataclass, field

from .dnsmodel import DnsAnswer, DnsStatus, normalise_name

DMARC_POLICIES = ("none", "quarantine", "reject")
DMARC_MAX_LABELS = 8  # DMARCbis tree walk: at most this many labels are considered


@dataclass(frozen=True, slots=True)
class TagRecord:
    """A ``tag=value; ...`` record and what is wrong with it (empty when valid)."""

    tags: dict[str, str] = field(default_factory=dict)
    problems: tuple[str, ...] = ()

    def get(self, tag: str) -> str | None:
        return self.tags.get(tag)


def parse_tags(text: str, version_tag: str, version: str) -> TagRecord:
    """Split a tag list; the first tag must be the version (case-sensitive value)."""
    tags: dict[str, str] = {}
    problems: list[str] = []
    for index, raw in enumerate(text.split(";")):
        part = raw.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        if not sep or not key:
            problems.append(f"{part!r} is not tag=value")
            continue
        if key in tags:
            problems.append(f"tag {key} appears twice")
        tags[key] = value.strip()
        if index == 0 and (key != version_tag or tags[key] != version):
            problems.append(f"the record must start with {version_tag}={version}")
    if version_tag not in tags:
        problems.append(f"no {version_tag}={version} tag")
    return TagRecord(tags, tuple(problems))


@dataclass(frozen=True, slots=True)
class Dmarc:
    """A DMARC record read: its policies and percentage (RFC 7489 defaults applied)."""

    record: TagRecord
    policy: str | None  # p
    subdomain_policy: str | None  # sp, defaulting to p
    pct: int

    @property
    def problems(self) -> tuple[str, ...]:
        return self.record.problems


def parse_dmarc(text: str) -> Dmarc:
    record = parse_tags(text, "v", "DMARC1")
    problems = list(record.problems)
    policy = record.get("p")
    if policy is not None:
        policy = policy.lower()
        if policy not in DMARC_POLICIES:
            problems.append(f"p={policy} is not none, quarantine or reject")
            policy = None
    elif "rua" in record.tags:
        policy = "none"  # RFC 7489 6.6.3: a missing p with a valid rua is treated as p=none
    else:
        problems.append("no p= tag")
    subdomain = record.get("sp")
    if subdomain is not None:
        subdomain = subdomain.lower()
        if subdomain not in DMARC_POLICIES:
            problems.append(f"sp={subdomain} is not none, quarantine or reject")
            subdomain = None
    pct_text = record.get("pct")
    pct = 100
    if pct_text is not None:
        if pct_text.isdigit() and 0 <= int(pct_text) <= 100:
            pct = int(pct_text)
        else:
            problems.append(f"pct={pct_text} is not a number from 0 to 100")
    if len(problems) > len(record.problems):  # (else the record as parsed says it all)
        record = TagRecord(record.tags, tuple(problems))
    return Dmarc(record, policy, subdomain or policy, pct)


def policy_rank(policy: str | None) -> int:
    return DMARC_POLICIES.index(policy) if policy in DMARC_POLICIES else -1


def parse_mta_sts(text: str) -> TagRecord:
    record = parse_tags(text, "v", "STSv1")
    if "id" not in record.tags:
        return TagRecord(record.tags, (*record.problems, "no id= tag"))
    return record


def parse_tlsrpt(text: str) -> TagRecord:
    record = parse_tags(text, "v", "TLSRPTv1")
    if "rua" not in record.tags:
        return TagRecord(record.tags, (*record.problems, "no rua= tag"))
    return record


def dmarc_candidates(domain: str) -> list[str]:
    """Names whose ``_dmarc`` record may hold the policy, most specific first (DMARCbis 4.10)."""
    labels = normalise_name(domain).split(".")
    if len(labels) > DMARC_MAX_LABELS:
        labels = labels[-(DMARC_MAX_LABELS - 1):]
        first = [normalise_name(domain)]
    else:
        first = []
    names = [".".join(labels[i:]) for i in range(len(labels) - 1)]
    return first + [n for n in names if n not in first]


def is_dmarc(answer: DnsAnswer) -> bool:
    return bool(dmarc_records(answer))


def dmarc_records(answer: DnsAnswer) -> list[str]:
    """The DMARC records among the TXT records of an answer (none unless it is OK)."""
    if answer.status is not DnsStatus.OK:
        return []
    return [text for text in (t.decode("utf-8", "replace") for t in answer.txt())
            if text.startswith("v=DMARC1")]
