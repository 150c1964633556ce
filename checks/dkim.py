"""Outbound authentication: is the mail the tenant sends DKIM-signed with a key that receivers
find where the domain's DNS says, and that nobody else controls?

Microsoft 365's signing config (Get-DkimSigningConfig) is compared with the recorded answers
for ``selector1`` / ``selector2._domainkey.<domain>`` (asked as CNAME, to see where each points,
and as TXT, to see the key behind it). Where all outbound mail leaves through the gateway, the
gateway's own selectors are looked for in the same recording: profiles that name them only as
patterns (Mimecast's ``mimecast*``) cannot be asked for, so their signing is never assumed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from auditor.context import CheckContext
from auditor.dnsevidence import DNS_KEY, NOT_RECORDED, DomainDns
from auditor.dnsmodel import DnsAnswer, DnsQuery, DnsStatus, normalise_name
from auditor.engine import (
    Mappings,
    Reference,
    Remediation,
    Result,
    Severity,
    Status,
    check,
    ps_literal,
    result,
)
from auditor.globmatch import glob_match
from auditor.models import AcceptedDomain, DkimSigningConfig, EvidenceRef, OutboundConnector

from .dns import authorises_nobody, outbound_via_gateway, spf_tree

MICROSOFT_SELECTORS = ("selector1", "selector2")
# Zones where Microsoft publishes the keys its selector CNAMEs point at: the tenant's initial
# domain (the classic format) and, for domains added since May 2025, *.dkim.mail.microsoft.
MICROSOFT_KEY_ZONES = ("onmicrosoft.com", "dkim.mail.microsoft")
MIN_KEY_BITS = 2048  # RFC 8301: signers SHOULD use 2048-bit RSA keys; Microsoft's default
BROKEN = ("missing", "no-key")  # receivers find no key for what this selector signs

MS_DKIM = Reference(
    "Microsoft: Set up DKIM to sign mail from your Microsoft 365 domain",
    "https://learn.microsoft.com/en-us/defender-office-365/email-authentication-dkim-configure",
)
MS_NEW_DKIM = Reference(
    "Microsoft: New-DkimSigningConfig",
    "https://learn.microsoft.com/en-us/powershell/module/exchangepowershell/new-dkimsigningconfig",
)
MS_ROTATE_DKIM = Reference(
    "Microsoft: Rotate-DkimSigningConfig",
    "https://learn.microsoft.com/en-us/powershell/module/exchangepowershell/rotate-dkimsigningconfig",
)
MIMECAST_DKIM = Reference(
    "Mimecast: Configuring DNS Authentication definitions (outbound DKIM signing)",
    "https://mimecastsupport.zendesk.com/hc/en-us/articles/34000340541587",
)
RFC6376 = Reference("RFC 6376: DomainKeys Identified Mail (DKIM) Signatures",
                    "https://www.rfc-editor.org/rfc/rfc6376")
RFC8301 = Reference("RFC 8301: Cryptographic Algorithm and Key Usage Update to DKIM",
                    "https://www.rfc-editor.org/rfc/rfc8301")


@dataclass(frozen=True, slots=True)
class SelectorVerdict:
    """What the recorded DNS says about one of Microsoft's selectors for a domain."""

    label: str  # selector1 / selector2
    # ok, elsewhere (alias to another target), missing, no-key, txt (a key of its own, no
    # alias), unverified (alias whose target was not recorded), unknown (lookup failed)
    state: str
    detail: str
    ref: EvidenceRef
    outsider: bool = False  # "elsewhere" into a zone neither Microsoft nor the tenant holds


@dataclass(frozen=True, slots=True)
class GatewaySigning:
    """Whether the gateway that all outbound mail leaves through signs the domain's mail."""

    state: str  # "none" (no such gateway), "signs", "absent" (its selectors are not published), "unknown"
    detail: str
    refs: tuple[EvidenceRef, ...] = ()


def has_key(found: DnsAnswer) -> bool:
    """A DKIM key record (RFC 6376 3.6.1): a p= tag that is not empty (an empty p= revokes)."""
    for text in found.txt():
        tags: dict[str, str] = {}
        for part in text.decode("utf-8", "replace").split(";"):
            tag, _, value = part.partition("=")
            tags[tag.strip()] = "".join(value.split())
        if tags.get("p"):
            return True
    return False


def within(name: str, zones: tuple[str, ...] | list[str]) -> bool:
    """Whether ``name`` is one of ``zones`` or a name under one of them."""
    return any(name == zone or name.endswith(f".{zone}") for zone in zones)


def judge_selector(dd: DomainDns, label: str, expected: str | None, own: list[str]) -> SelectorVerdict:
    """Compare ``<label>._domainkey.<domain>`` with the CNAME target Microsoft asks for.

    The target comes from the recorded CNAME lookup or, in recordings made before that lookup
    was asked, from the alias chain of the TXT lookup (its ``cname`` lists the alias owners
    followed, so a target shows there only when the chain has a second hop)."""
    name = f"{label}._domainkey.{dd.domain}"
    txt_query, cname_query = DnsQuery.of(name, "TXT"), DnsQuery.of(name, "CNAME")
    txt, alias = dd.lookup(txt_query), dd.lookup(cname_query)
    ref = dd.ref(txt_query)
    target: str | None = None
    if alias.status is DnsStatus.OK and alias.names():
        target, ref = alias.names()[0], dd.ref(cname_query)
    elif alias.status.temporary and alias.detail != NOT_RECORDED:
        return SelectorVerdict(label, "unknown", f"the CNAME lookup of {name} failed "
                               f"({alias.status.value}: {alias.detail or 'no detail'})", dd.ref(cname_query))
    elif alias.detail == NOT_RECORDED and len(txt.cname) >= 2 and txt.cname[0] == name:
        target = txt.cname[1]
    aliased = target is not None or (alias.detail == NOT_RECORDED and name in txt.cname)
    if target is not None and expected is not None and target != expected:
        if within(target, MICROSOFT_KEY_ZONES):
            whose = "a key Microsoft holds for another domain or tenant"
        elif within(target, own):
            whose = "a name in the tenant's own DNS that must lead on to the config's target"
        else:
            return SelectorVerdict(
                label, "elsewhere", f"{name} points to {target}, not to {expected}: whoever "
                "controls that name, outside Microsoft's key zones and the tenant's domains, "
                f"chooses the key receivers accept for mail signed as {dd.domain} with {label}, "
                "so they can sign mail that passes DKIM and DMARC in the domain's name", ref, True)
        return SelectorVerdict(label, "elsewhere", f"{name} points to {target} ({whose}), not to "
                               f"{expected}: receivers check the tenant's signatures against the "
                               "wrong key", ref)
    if txt.status.temporary:
        why = "was not recorded" if txt.detail == NOT_RECORDED else (
            f"failed ({txt.status.value}: {txt.detail or 'no detail'})")
        return SelectorVerdict(label, "unknown", f"the TXT lookup of {name} {why}", dd.ref(txt_query))
    if txt.status.void:
        if aliased:
            return SelectorVerdict(label, "no-key", f"{name} points to {target or 'an alias'}, but "
                                   f"no DKIM key is published there ({txt.status.value})", ref)
        return SelectorVerdict(label, "missing", f"{name} does not exist in DNS ({txt.status.value})"
                               + (f"; it should be a CNAME to {expected}" if expected else ""), ref)
    if not has_key(txt):
        return SelectorVerdict(label, "no-key", f"{name} publishes no DKIM key (no p=, or an empty "
                               "p= that revokes it)", dd.ref(txt_query))
    if not aliased:
        return SelectorVerdict(label, "txt", f"{name} is a TXT key of its own, not the CNAME to "
                               f"{expected or 'the tenant'} through which Microsoft rotates keys",
                               dd.ref(txt_query))
    if target is None or expected is None:
        missing = "its target was not recorded" if target is None else (
            f"Selector{label[-1]}CNAME is empty in the signing config")
        return SelectorVerdict(label, "unverified", f"{name} is an alias that leads to a DKIM key, "
                               f"but {missing}, so it was not compared with the config", ref)
    return SelectorVerdict(label, "ok", f"{name} -> {target}", ref)


def active_selector(config: DkimSigningConfig, as_of: datetime) -> str | None:
    """The selector Microsoft signs with at collection time."""
    if config.RotateOnDate is not None and as_of >= config.RotateOnDate:
        return config.SelectorAfterRotateOnDate
    return config.SelectorBeforeRotateOnDate


def gateway_signing(ctx: CheckContext, dd: DomainDns | None, relay: OutboundConnector | None,
                    ) -> GatewaySigning:
    """Whether all outbound mail leaves through the gateway, and the gateway's own DKIM
    selector is published for the domain in the recorded answers."""
    if relay is None:
        return GatewaySigning("none", "no enabled outbound connector sends all mail through a gateway")
    profiles = [p for p in ctx.gateway.active if p.deployment != "exchange-online"]
    lead = (f"all outbound mail leaves through {', '.join(p.name for p in profiles) or 'the gateway'} "
            f"(connector '{relay.display_name}')")
    via = relay.ref("SmartHosts")
    patterns = [s.lower() for p in profiles for s in p.dkim_selectors]
    if dd is None:
        return GatewaySigning("unknown", f"{lead}, but no DNS answers were recorded for the domain "
                              "to see whether the gateway signs", (via,))
    suffix = f"._domainkey.{dd.domain}"
    asked = {found.query.name.removesuffix(suffix): found for found in dd.answers
             if found.query.rdtype == "TXT" and found.query.name.endswith(suffix)}
    asked = {label: found for label, found in asked.items() if label not in MICROSOFT_SELECTORS
             and any(glob_match(label, p) for p in patterns)}
    published = [label for label, found in asked.items() if found.status is DnsStatus.OK and has_key(found)]
    if published:
        return GatewaySigning("signs", f"{lead}, which signs with its own key (selector "
                              f"{', '.join(published)} published)",
                              (via, *(dd.ref(asked[label].query) for label in published)))
    literal = [p for p in patterns if not any(c in p for c in "*?[")]
    if patterns and literal == patterns and set(literal) <= set(asked) and not any(
            found.status.temporary for found in asked.values()):
        return GatewaySigning("absent", f"{lead}, but none of its DKIM selectors "
                              f"({', '.join(literal)}) is published for the domain",
                              (via, *(dd.ref(found.query) for found in asked.values())))
    known = (f"its profile names them only as {', '.join(patterns)}, which DNS cannot be asked for"
             if patterns else "its profile names none")
    return GatewaySigning("unknown", f"{lead}, which may sign the mail, but no selector of the "
                          f"gateway was found in the recorded DNS ({known}): confirm at the gateway "
                          "that it signs for the domain and that its selector is published", (via,))


def sends_no_mail(dd: DomainDns | None) -> bool:
    """SPF that authorises nobody (``v=spf1 -all``): the domain declares it sends no mail."""
    if dd is None:
        return False
    tree, complete = spf_tree(dd)
    return complete and tree.result == "ok" and authorises_nobody(tree)


def custom_domains(accepted: tuple[AcceptedDomain, ...]) -> list[tuple[str, AcceptedDomain]]:
    """Accepted domains that can send mail in their own name: not wildcards, and not the
    *.onmicrosoft.com domains, which Microsoft signs itself."""
    out = []
    for domain in accepted:
        name = normalise_name(domain.DomainName or "")
        if name and not name.startswith("*") and not name.endswith(".onmicrosoft.com"):
            out.append((name, domain))
    return out


@check(
    id="DKIM-001",
    title="A domain's mail is not DKIM-signed with its own published key, or a selector points elsewhere",
    severity=Severity.MEDIUM,
    rationale=(
        "DKIM lets receivers, Exchange Online behind the gateway included, verify that a message "
        "really comes from the domain in its From address, whatever path it took. Without signing "
        "enabled for the domain, Exchange Online signs with the tenant's onmicrosoft.com domain "
        "only, which DMARC does not accept as aligned, so DMARC rests on SPF alone and breaks at "
        "every forwarding hop. With signing enabled but a selector CNAME missing, receivers find "
        "no key and the signature fails. A selector CNAME that points anywhere but the target "
        "Get-DkimSigningConfig gives is worse when the target is in a zone someone else "
        "controls: that party picks the key receivers trust for the domain and can sign mail "
        "that passes DKIM and DMARC in its name. Keys shorter than 2048 bits are below RFC 8301."
    ),
    remediation=Remediation(
        "Publish the two CNAMEs Get-DkimSigningConfig gives for the domain (selector1._domainkey "
        "and selector2._domainkey to Selector1CNAME / Selector2CNAME), remove any that point "
        "elsewhere, then enable signing; rotate keys shorter than 2048 bits (twice, to replace "
        "both selectors' keys). Where the gateway signs all outbound mail instead, publish its "
        "selector.",
        "New-DkimSigningConfig -DomainName <domain> -KeySize 2048 -Enabled $false\n"
        "Get-DkimSigningConfig -Identity <domain> | Format-List Selector1CNAME,Selector2CNAME\n"
        "# publish both CNAMEs in the domain's DNS, then:\n"
        "Set-DkimSigningConfig -Identity <domain> -Enabled $true\n"
        "Rotate-DkimSigningConfig -Identity <domain> -KeySize 2048",
    ),
    requires=("Get-DkimSigningConfig", "Get-AcceptedDomain"),
    uses=(DNS_KEY, "Get-OutboundConnector"),
    references=(MS_DKIM, MS_NEW_DKIM, MS_ROTATE_DKIM, MIMECAST_DKIM, RFC6376, RFC8301),
    mappings=Mappings(attack=("T1684.002", "T1672"), cis=("2.1.9",), scuba=("MS.EXO.3.1v1",)),
    legitimate=(
        "Signing enabled with both selector CNAMEs pointing at the targets Get-DkimSigningConfig "
        "gives (classic *.onmicrosoft.com or the newer *.dkim.mail.microsoft format) and 2048-bit "
        "keys; a domain that Microsoft does not sign whose outbound mail all leaves through the "
        "gateway with the gateway's selector published (only selectors a profile names literally, "
        "such as Hornetsecurity's hse1/hse2, can be looked up: Mimecast's mimecast* cannot, so "
        "such a domain is a low warning to confirm, never a pass by assumption); a domain whose "
        "SPF authorises nobody (v=spf1 -all: it sends no mail); *.onmicrosoft.com domains, which "
        "Microsoft signs itself."
    ),
)
def dkim_signing(ctx: CheckContext) -> Iterator[Result]:
    accepted = ctx.accepted_domains
    if not accepted:
        yield result(Status.NOT_EVALUATED, "Get-AcceptedDomain", "not evaluated: Get-AcceptedDomain "
                     "holds no domain, yet every tenant has at least its initial onmicrosoft.com "
                     "domain: the export is incomplete", key="empty")
        return
    domains = custom_domains(accepted)
    if not domains:
        yield result(Status.PASS, "accepted domains", "no accepted domain besides *.onmicrosoft.com, "
                     "which Microsoft signs itself", key="none", summary=True)
        return
    configs: dict[str, DkimSigningConfig] = {}
    for config in ctx.objects("Get-DkimSigningConfig", DkimSigningConfig):
        configs.setdefault(normalise_name(config.Domain or config.Name or ""), config)
    unreadable = {normalise_name(r.name) for r in ctx.rejected("Get-DkimSigningConfig")}
    relay = outbound_via_gateway(ctx) if ctx.available("Get-OutboundConnector") else None
    recorded = ctx.available(DNS_KEY)
    own = [name for name, _ in domains]
    for name, domain in domains:
        dd = ctx.dns(name) if recorded else None
        config = configs.get(name)
        if config is None and unreadable - set(configs):
            # The engine reports each unreadable object; its domain may be this one.
            yield result(Status.NOT_EVALUATED, f"domain {name}", "not evaluated: a signing config "
                         "of Get-DkimSigningConfig could not be read "
                         f"({', '.join(sorted(unreadable - set(configs)))}), so whether this "
                         "domain has one is unknown", key=name)
        elif config is not None and config.Enabled is None:
            yield result(Status.NOT_EVALUATED, f"domain {name}", "not evaluated: the signing config "
                         "does not say whether it is enabled (Enabled is absent)",
                         config.ref("Enabled"), key=name)
        elif config is not None and config.Enabled:
            yield _signing(ctx, name, config, dd, relay, own)
        else:
            yield _not_signing(ctx, name, domain, config, dd, relay, own)


def _selectors(dd: DomainDns, config: DkimSigningConfig | None, own: list[str]) -> list[SelectorVerdict]:
    expected = {"selector1": config.Selector1CNAME, "selector2": config.Selector2CNAME} if config else {}
    return [judge_selector(dd, label, normalise_name(expected.get(label) or "") or None, own)
            for label in MICROSOFT_SELECTORS]


def _elsewhere(name: str, verdicts: list[SelectorVerdict], config: DkimSigningConfig,
               refs: list[EvidenceRef], lead: str) -> Result | None:
    """A selector aliased away from the config's target: fails whether or not Microsoft signs."""
    away = [v for v in verdicts if v.state == "elsewhere"]
    if not away:
        return None
    refs = [*refs, *(v.ref for v in away), *(config.ref(f"{v.label.capitalize()}CNAME") for v in away)]
    return result(Status.FAIL, f"domain {name}", f"{lead}, but " + "; ".join(v.detail for v in away),
                  *refs, severity=Severity.HIGH if any(v.outsider for v in away) else Severity.MEDIUM,
                  key=name)


def _not_signing(ctx: CheckContext, name: str, domain: AcceptedDomain, config: DkimSigningConfig | None,
                 dd: DomainDns | None, relay: OutboundConnector | None, own: list[str]) -> Result:
    resource = f"domain {name}"
    lit = ps_literal(name)
    if config is None:
        what = "Microsoft 365 has no DKIM signing config for the domain"
        refs = [domain.ref("DomainName", note="no Get-DkimSigningConfig entry for this domain")]
        fix = (f"New-DkimSigningConfig -DomainName {lit} -KeySize 2048 -Enabled $false\n"
               f"Get-DkimSigningConfig -Identity {lit} | Format-List Selector1CNAME,Selector2CNAME\n"
               "# publish both CNAMEs in the domain's DNS, then:\n"
               f"Set-DkimSigningConfig -Identity {lit} -Enabled $true")
    else:
        what = "DKIM signing is disabled for the domain (Enabled False)"
        refs = [config.ref("Enabled")]
        fix = f"Set-DkimSigningConfig -Identity {lit} -Enabled $true"
        if dd is not None and (away := _elsewhere(name, _selectors(dd, config, own), config, refs, what)):
            return away
    if sends_no_mail(dd):
        assert dd is not None
        return result(Status.PASS, resource, f"{what}, but its SPF authorises no sender: the domain "
                      "sends no mail", *refs, dd.ref(DnsQuery.of(name, "TXT")), key=name)
    gateway = gateway_signing(ctx, dd, relay)
    if gateway.state == "signs":
        return result(Status.PASS, resource, f"{what}; {gateway.detail}", *refs, *gateway.refs, key=name)
    if gateway.state in ("absent", "unknown"):
        return result(Status.WARN, resource, f"{what}; {gateway.detail}", *refs, *gateway.refs,
                      severity=Severity.MEDIUM if gateway.state == "absent" else Severity.LOW,
                      key=name, fix=fix)
    unchecked = "" if dd is not None else (
        "; no DNS answers were recorded for the domain, so whether it sends mail at all was not checked")
    return result(Status.FAIL, resource, f"{what}: Exchange Online signs its mail, if at all, with "
                  "the tenant's onmicrosoft.com domain, which DMARC does not accept as aligned, so "
                  f"DMARC rests on SPF alone ({gateway.detail}){unchecked}", *refs, key=name, fix=fix)


def _signing(ctx: CheckContext, name: str, config: DkimSigningConfig, dd: DomainDns | None,
             relay: OutboundConnector | None, own: list[str]) -> Result:
    resource = f"domain {name}"
    if dd is None:
        return result(Status.NOT_EVALUATED, resource, "not evaluated: DKIM signing is enabled, but no "
                      f"DNS answers were recorded for {name}, so its selector records cannot be "
                      "compared with the config", config.ref("Enabled"), key=name)
    verdicts = _selectors(dd, config, own)
    refs = [config.ref("Enabled"), *(v.ref for v in verdicts)]
    away = _elsewhere(name, verdicts, config, [config.ref("Enabled")], "DKIM signing is enabled")
    if away is not None:
        return away
    active = active_selector(config, ctx.as_of)
    broken = [v for v in verdicts if v.state in BROKEN]
    if broken:
        refs += [config.ref(f"{v.label.capitalize()}CNAME") for v in broken]
        which = "; ".join(v.detail + (" (the selector Microsoft signs with now)" if v.label == active
                                      else "") for v in broken)
        if sends_no_mail(dd):
            return result(Status.PASS, resource, f"DKIM signing is enabled but {which}; its SPF "
                          "authorises no sender: the domain sends no mail", *refs,
                          dd.ref(DnsQuery.of(name, "TXT")), key=name)
        gateway = gateway_signing(ctx, dd, relay)
        if gateway.state == "signs":
            return result(Status.WARN, resource, f"DKIM signing is enabled but {which}: Microsoft's "
                          f"signature cannot be verified; {gateway.detail}", *refs, *gateway.refs,
                          severity=Severity.LOW, key=name)
        now = any(v.label == active for v in broken) or active is None
        consequence = ("receivers cannot verify the signature, so DMARC rests on SPF alone" if now
                       else "signatures verify today, but fail from the next key rotation")
        return result(Status.FAIL, resource, f"DKIM signing is enabled but {which}: {consequence}",
                      *refs, severity=None if now else Severity.LOW, key=name)
    sizes = {"selector1": config.Selector1KeySize, "selector2": config.Selector2KeySize}
    weak = {label: size for label, size in sizes.items() if size is not None and size < MIN_KEY_BITS}
    rotate = f"Rotate-DkimSigningConfig -Identity {ps_literal(name)} -KeySize {MIN_KEY_BITS}"
    weak_note = (f"key length below {MIN_KEY_BITS} bits ("
                 + ", ".join(f"{label} {size} bits" for label, size in weak.items()) + ")") if weak else ""
    refs += [config.ref(f"{label.capitalize()}KeySize") for label in weak]
    flattened = [v for v in verdicts if v.state == "txt"]
    if flattened:
        return result(Status.WARN, resource, "DKIM signing is enabled but "
                      + "; ".join(v.detail for v in flattened) + ": the next key rotation breaks "
                      "the signature" + (f"; {weak_note}" if weak else ""), *refs,
                      severity=Severity.LOW, key=name, fix=rotate if weak else "")
    unverified = [v for v in verdicts if v.state in ("unverified", "unknown")]
    if weak:
        return result(Status.WARN, resource, f"DKIM signing is enabled with a {weak_note}"
                      + "".join(f"; not verified: {v.detail}" for v in unverified), *refs,
                      severity=Severity.LOW, key=name, fix=rotate)
    if unverified:
        return result(Status.NOT_EVALUATED, resource, "not evaluated: DKIM signing is enabled; "
                      + "; ".join(v.detail for v in unverified), *refs, key=name)
    return result(Status.PASS, resource, "DKIM signing is enabled and both selectors point to the "
                  f"tenant's keys ({'; '.join(v.detail for v in verdicts)})", *refs, key=name)


CHECKS = (dkim_signing,)
