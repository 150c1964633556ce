"""Who may vouch for a message's authentication: the trusted ARC sealers of Get-ArcConfig, judged
against the gateway in front of the tenant and a few services known to seal only what they verified.

Exchange Online uses a trusted sealer's recorded results (ARC) in place of its own failing SPF, DKIM
and DMARC checks. The gateway's own sealer belongs there when the gateway changes messages; any other
domain lets whoever controls it assert ``dmarc=pass`` for forged mail.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from auditor.context import CheckContext
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
from auditor.evidence import evidence_path
from auditor.gateways import GatewayProfile
from auditor.models import ArcConfig, EvidenceRef

KEY = "Get-ArcConfig"


@dataclass(frozen=True, slots=True)
class KnownSealer:
    """A service that ARC-seals what its own servers verified, and where its d= value was seen."""

    domain: str
    service: str
    source: str


# Services whose seal records their own evaluation of the original sender; trusting them lets
# forwarded or list mail keep its authentication. Observed d= values, with the message they are on.
KNOWN_SERVICES: tuple[KnownSealer, ...] = (
    KnownSealer(
        "google.com", "Google (Gmail forwarding, Google Groups)",
        # ARC-Seal "i=2; a=rsa-sha256; d=google.com; s=arc-20240605" (Google Groups, 2025-09-23)
        "https://github.com/linux-mailinglist-archives/blinux-list.redhat.com.0",
    ),
    KnownSealer(
        "microsoft.com", "Microsoft 365 (Exchange Online relaying mail from another tenant)",
        # ARC-Seal "i=1; a=rsa-sha256; s=arcselector10001; d=microsoft.com" (2025-10-16)
        "https://lore.kernel.org/all/LO4P265MB739293B94D911AE33A496EDFEBE9A@LO4P265MB7392.GBRP265.PROD.OUTLOOK.COM/",
    ),
)

MS_ARC = Reference(
    "Microsoft: Configure trusted ARC sealers",
    "https://learn.microsoft.com/en-us/defender-office-365/email-authentication-arc-configure",
)
MS_SET_ARC = Reference(
    "Microsoft: Set-ArcConfig",
    "https://learn.microsoft.com/en-us/powershell/module/exchangepowershell/set-arcconfig",
)
MS_GET_ARC = Reference(
    "Microsoft: Get-ArcConfig",
    "https://learn.microsoft.com/en-us/powershell/module/exchangepowershell/get-arcconfig",
)
RFC_ARC = Reference(
    "RFC 8617: The Authenticated Received Chain (ARC) Protocol",
    "https://www.rfc-editor.org/rfc/rfc8617",
)
MIMECAST_URL_PROTECT = Reference(
    "Mimecast: URL Protect definitions (links in inbound mail are rewritten)",
    "https://mimecastsupport.zendesk.com/hc/en-us/articles/34000589915155-Targeted-Threat-Protection-URL-Protect-Configuring-URL-Protect-Definitions",
)
VIRCOM_ARC = Reference(
    "Vircom (Proofpoint Essentials partner): Add a trusted ARC sealer to Microsoft 365",
    "https://support.vircom.com/support/solutions/articles/48001238013-add-a-trusted-arc-sealer-to-microsoft-365-for-spf-failures",
)

_SEALERS = "(Get-ArcConfig).ArcTrustedSealers -split ',' | ForEach-Object { $_.Trim() }"


def _identity(config: ArcConfig | None) -> str:
    return ps_literal(config.Identity if config and config.Identity else "Default")


def remove_sealer_command(config: ArcConfig, domain: str) -> str:
    """PowerShell that drops one sealer and keeps the others, whatever else was fixed first."""
    return (f"$keep = @({_SEALERS} | Where-Object {{ $_ -and $_ -ne {ps_literal(domain)} }})\n"
            f"Set-ArcConfig -Identity {_identity(config)} -ArcTrustedSealers $keep")


def add_sealer_command(config: ArcConfig | None, domain: str) -> str:
    """PowerShell that adds one sealer to those already trusted (Set-ArcConfig replaces the list)."""
    return (f"$sealers = @({_SEALERS} | Where-Object {{ $_ }}) + {ps_literal(domain)}\n"
            f"Set-ArcConfig -Identity {_identity(config)} -ArcTrustedSealers $sealers")


@dataclass(frozen=True, slots=True)
class TrustedSealer:
    """One trusted ARC sealer domain and the ArcTrustedSealers value it was read from."""

    config: ArcConfig
    domain: str
    raw: str  # the value of ArcTrustedSealers it was read from

    @property
    def ref(self) -> EvidenceRef:
        return self.config.ref_item("ArcTrustedSealers", self.raw)


@check(
    id="ARC-001",
    title="Trusted ARC sealers include an unknown domain or miss the gateway's sealer",
    severity=Severity.HIGH,
    rationale=(
        "A trusted ARC sealer tells Exchange Online to use the authentication results the sealer "
        "recorded instead of its own: a message that fails SPF, DKIM and DMARC on arrival is "
        "accepted as authenticated when a trusted sealer's ARC chain says it passed (compauth "
        "reason 130). Whoever controls a trusted sealer domain can therefore seal forged mail, "
        "from anywhere and in the name of any sender, including the organisation's own domains, "
        "and have it pass authentication and spoof protection. The list belongs to the gateway in "
        "front of the tenant when that gateway changes messages (rewritten links and repacked "
        "bodies break the sender's DKIM) and to services the organisation relies on; Microsoft: "
        "add only legitimate, required services. Behind a gateway that changes messages and is "
        "not trusted, legitimate mail fails DMARC, which pushes administrators towards SCL -1 "
        "rules and allow lists that weaken filtering far more."
    ),
    remediation=Remediation(
        "Remove every trusted sealer that is neither the gateway in front of the tenant nor a "
        "service the organisation uses and trusts. Behind a gateway that modifies messages, trust "
        "its own sealing domain: the d= of the ARC-Seal header it adds, read from a delivered "
        "message's headers (Mimecast is seen to seal as dkim.mimecast.com). Set-ArcConfig replaces "
        "the whole list, so name every sealer to keep.",
        "Get-ArcConfig | Format-List ArcTrustedSealers\n"
        "# keep only the gateway's sealer and services you rely on, e.g. behind Mimecast:\n"
        "Set-ArcConfig -Identity Default -ArcTrustedSealers 'dkim.mimecast.com'",
    ),
    requires=(KEY,),
    uses=("Get-AcceptedDomain",),
    references=(MS_ARC, MS_SET_ARC, MS_GET_ARC, RFC_ARC, MIMECAST_URL_PROTECT, VIRCOM_ARC),
    mappings=Mappings(attack=("T1685", "T1562.001", "T1684.002", "T1672")),
    legitimate=(
        "The sealing domain of the gateway detected in front of the tenant (from its profile or the "
        "user's profile file, e.g. Mimecast's dkim.mimecast.com) and the sealers of services that "
        "seal only what their own servers verified (Google, Microsoft 365); no trusted sealer at "
        "all behind a gateway that does not modify messages, or with no gateway."
    ),
)
def arc_trusted_sealers(ctx: CheckContext) -> Iterator[Result]:
    configs = ctx.objects(KEY, ArcConfig)
    if not configs and ctx.rejected(KEY):
        # The engine reports the unreadable object; an unread list is not an empty one.
        yield result(Status.NOT_EVALUATED, "gateway ARC sealer", "not evaluated: the ARC config "
                     "could not be read, so whether the gateway's sealer is trusted is unknown",
                     key="gateway")
        return
    if not configs:
        # Microsoft: "If no trusted ARC sealers are configured, the command returns no results."
        yield result(Status.PASS, "trusted ARC sealers",
                     "Get-ArcConfig returned no object, which is how Exchange Online reports that no "
                     "trusted ARC sealers are configured: no outside domain can vouch for "
                     "authentication", EvidenceRef(evidence_path(KEY), "", []), summary=True,
                     key="sealers")
        yield from _gateway_results(ctx, None, ())
        return
    readable = [c for c in configs if c.lists_sealers]
    for config in configs:
        if not config.lists_sealers:
            yield result(Status.NOT_EVALUATED, f"ARC config {config.display_name}",
                         "not evaluated: the export does not contain ArcTrustedSealers (export "
                         "Get-ArcConfig with a current ExchangeOnlineManagement module)",
                         config.ref("ArcTrustedSealers"), key=f"config:{config.source.pointer}")
    if not readable:
        yield result(Status.NOT_EVALUATED, "gateway ARC sealer",
                     "not evaluated: no trusted ARC sealer list could be read, so whether the "
                     "gateway's sealer is trusted is unknown", key="gateway")
        return
    sealers = [TrustedSealer(c, domain, raw) for c in readable for domain, raw in c.trusted_sealers()]
    if not sealers:
        yield result(Status.PASS, "trusted ARC sealers",
                     "no trusted ARC sealers are configured: no outside domain can vouch for "
                     "authentication", *(c.ref("ArcTrustedSealers") for c in readable),
                     summary=True, key="sealers")
    for sealer in sealers:
        yield _sealer_result(ctx, sealer)
    yield from _gateway_results(ctx, readable[0], sealers)


def _sealer_result(ctx: CheckContext, sealer: TrustedSealer) -> Result:
    resource = f"trusted ARC sealer {sealer.domain}"
    gateway = ctx.gateway
    owner = next((p for p in gateway.active if p.seals_as(sealer.domain)), None)
    if owner is not None:
        return result(Status.PASS, resource,
                      f"the ARC sealer of {owner.name}, the gateway in front of this tenant",
                      sealer.ref, key=sealer.domain)
    service = next((s for s in KNOWN_SERVICES if s.domain == sealer.domain), None)
    if service is not None:
        return result(Status.PASS, resource,
                      f"the ARC sealer of {service.service}, which seals only what its own servers "
                      "verified", sealer.ref, key=sealer.domain)
    fix = remove_sealer_command(sealer.config, sealer.domain)
    other = next((p for p in gateway.known if p.seals_as(sealer.domain)), None)
    if other is not None:
        return result(Status.WARN, resource,
                      f"the ARC sealer of {other.name}, which is not detected in front of this tenant "
                      f"(detected: {gateway.names}): a leftover from an earlier gateway? Any mail "
                      f"that reaches the tenant through {other.vendor}'s service, sent by any of its "
                      "customers, can override failed authentication; Microsoft: add only "
                      "legitimate, required services", sealer.ref, severity=Severity.MEDIUM,
                      key=sealer.domain, fix=fix)
    if ctx.available("Get-AcceptedDomain") and ctx.is_internal_address(f"postmaster@{sealer.domain}"):
        return result(Status.WARN, resource,
                      "the organisation's own domain: a sealer is the d= domain of the service that "
                      "seals, never the recipient's, so this entry does nothing for the gateway's "
                      "mail, and any system holding a key in this domain's DNS could seal as it",
                      sealer.ref, severity=Severity.LOW, key=sealer.domain, fix=fix)
    hint = f" If it is the real sealing domain of {gateway.names}, name it in a gateway profile " \
           "file (arc_sealers) to record that." if gateway.detected else ""
    unchecked = "" if ctx.available("Get-AcceptedDomain") else \
        " (the accepted domains were not exported, so whether it is the organisation's own was " \
        "not checked)"
    return result(Status.FAIL, resource,
                  f"{sealer.domain} belongs to no known gateway or service{unchecked}: whoever "
                  "controls it can ARC-seal forged mail, from anywhere and in anyone's name, and "
                  "Exchange Online will accept the sealed dmarc=pass in place of its own failing "
                  f"checks.{hint}", sealer.ref, key=sealer.domain, fix=fix)


def _gateway_results(ctx: CheckContext, config: ArcConfig | None,
                     sealers: Sequence[TrustedSealer]) -> Iterator[Result]:
    gateways = [p for p in ctx.gateway.active if p.deployment != "exchange-online"]
    if not gateways:
        yield result(Status.NOT_EVALUATED, "gateway ARC sealer",
                     "not evaluated: no third-party gateway was detected from connectors, smart "
                     "hosts or MX, so there is no gateway whose sealer should be trusted (name it "
                     "with --gateway NAME or --gateway-file FILE if there is one); the trusted "
                     "sealers themselves are judged above", key="gateway")
        return
    for profile in gateways:
        yield _gateway_result(ctx, profile, config, sealers)


def _gateway_result(ctx: CheckContext, profile: GatewayProfile, config: ArcConfig | None,
                    sealers: Sequence[TrustedSealer]) -> Result:
    resource = f"gateway {profile.name}"
    key = f"gateway:{profile.id}"
    clue = next((c.evidence for c in ctx.gateway.clues if c.profile_id == profile.id), None)
    listed = config.ref("ArcTrustedSealers") if config else EvidenceRef(evidence_path(KEY), "", [])
    evidence = (listed, clue) if clue else (listed,)
    none_listed = "no trusted ARC sealer is configured" if not sealers else \
        "the trusted ARC sealers (" + ", ".join(s.domain for s in sealers) + ") do not include it"
    if profile.deployment == "api":
        return result(Status.PASS, resource,
                      f"{profile.name} works through the API after delivery and relays no mail into "
                      "Exchange Online, so no seal of its own comes before Exchange Online's checks",
                      *evidence, key=key)
    trusted = next((s for s in sealers if profile.seals_as(s.domain)), None)
    if trusted is not None:
        message = f"{profile.name}'s ARC sealer {trusted.domain} is trusted: Exchange Online can use " \
                  "the authentication results recorded before the gateway changed the message"
        if trusted.domain != profile.arc_sealers[0]:
            message += f"; {profile.name} is seen to seal as {profile.arc_sealers[0]}, so check that " \
                       "delivered mail shows arc=pass with oda=1 in ARC-Authentication-Results"
        return result(Status.PASS, resource, message, trusted.ref, *evidence[1:], key=key)
    if profile.modifies_messages is False:
        return result(Status.PASS, resource,
                      f"{profile.name} does not modify messages in transit, so senders' DKIM "
                      "survives it and no ARC trust is needed", *evidence, key=key)
    if profile.modifies_messages is None:
        seal = profile.arc_sealers[0] if profile.arc_sealers else "the d= of the ARC-Seal it adds"
        return result(Status.NOT_EVALUATED, resource,
                      f"not evaluated: whether {profile.name} modifies messages in transit (link "
                      "rewriting, banners) is not settled by its documentation (it can depend on "
                      f"optional features) and cannot be read from Exchange Online; {none_listed}. "
                      f"If it rewrites messages, trust its ARC sealer ({seal})", *evidence, key=key)
    modifies = f"{profile.name} modifies messages in transit (rewritten links, repacked bodies), " \
               "which breaks senders' DKIM"
    if profile.arc_sealers:
        sealer = profile.arc_sealers[0]
        return result(Status.WARN, resource,
                      f"{modifies}, and its ARC sealer {sealer} is not trusted ({none_listed}): "
                      "legitimate mail that relies on DKIM fails DMARC in Exchange Online, which "
                      "pushes administrators towards SCL -1 rules and allow lists",
                      *evidence, severity=Severity.LOW, key=key,
                      fix=add_sealer_command(config, sealer))
    if sealers:
        return result(Status.NOT_EVALUATED, resource,
                      f"not evaluated: {modifies}, and its sealing domain is not recorded, so whether "
                      f"one of the trusted sealers ({', '.join(s.domain for s in sealers)}) is its "
                      "own is unknown; name it in a gateway profile file (arc_sealers)",
                      *evidence, key=key)
    return result(Status.WARN, resource,
                  f"{modifies}, and {none_listed}: trust the d= domain of the ARC-Seal it adds "
                  "(read it from a delivered message's headers)", *evidence,
                  severity=Severity.LOW, key=key)


CHECKS = (arc_trusted_sealers,)
