"""DKIM-001: the Microsoft 365 signing config cross-checked with the selectors recorded in DNS.

Every case is judged from recorded answers only (``DomainDns``); nothing asks a DNS server.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

from auditor.context import AuditContext
from auditor.dnsevidence import DomainDns
from auditor.dnsmodel import DnsAnswer, DnsStatus, answer, txt_record
from auditor.engine import Finding, Severity, Status, run_check
from auditor.evidence import SPECS, EvidenceStore, parse_evidence
from auditor.gateways import GatewayProfile, builtin_profiles, resolve_gateway
from checks import dkim

from ..conftest import accepted

AS_OF = datetime(2026, 11, 25, tzinfo=UTC)
DOMAIN = "contoso.example"
RESOURCE = f"domain {DOMAIN}"
TENANT = "contoso.onmicrosoft.com"
TARGET1 = f"selector1-contoso-example._domainkey.{TENANT}"
TARGET2 = f"selector2-contoso-example._domainkey.{TENANT}"
OTHER_TENANT = "selector1-contoso-example._domainkey.oldtenant.onmicrosoft.com"
FOREIGN = "contoso.dkim.newsletters.example"
SPF = "v=spf1 include:spf.protection.outlook.com -all"
KEY = "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAtestkeyAB"
OUTBOUND = {"Name": "Mimecast outbound", "Enabled": True, "RecipientDomains": ["*"],
            "SmartHosts": ["us-smtp-o365-outbound-1.mimecast.com"], "IsTransportRuleScoped": False}
Files = dict[str, Any]


def config(domain: str = DOMAIN, **overrides: Any) -> dict[str, Any]:
    """A signing config as Get-DkimSigningConfig writes it: enabled, 2048-bit, selector2 active."""
    dashed = domain.replace(".", "-")
    base = {"Domain": domain, "Name": domain, "Identity": domain, "Enabled": True, "Status": "Valid",
            "Selector1CNAME": f"selector1-{dashed}._domainkey.{TENANT}",
            "Selector2CNAME": f"selector2-{dashed}._domainkey.{TENANT}",
            "Selector1KeySize": 2048, "Selector2KeySize": 2048,
            "RotateOnDate": "2025-01-27T09:20:11.0000000+00:00",
            "SelectorBeforeRotateOnDate": "selector1", "SelectorAfterRotateOnDate": "selector2"}
    base.update(overrides)
    return base


def key_txt(name: str, text: str = KEY, *aliases: str) -> DnsAnswer:
    return answer(name, "TXT", DnsStatus.OK, txt_record(text), cname=aliases)


def alias(label: str, target: str, domain: str = DOMAIN) -> list[DnsAnswer]:
    """A selector published as a CNAME (what the collector asks), and the key reached through it."""
    name = f"{label}._domainkey.{domain}"
    return [answer(name, "CNAME", DnsStatus.OK, f"{target}."), key_txt(name, KEY, name)]


def gone(label: str) -> list[DnsAnswer]:
    """A selector that is not in DNS at all."""
    name = f"{label}._domainkey.{DOMAIN}"
    return [answer(name, "CNAME", DnsStatus.NXDOMAIN), answer(name, "TXT", DnsStatus.NXDOMAIN)]


def recording(*overrides: DnsAnswer, spf: str = SPF) -> DomainDns:
    """Both CNAMEs to the tenant's targets plus an SPF record; the first answer to a query wins."""
    answers = [*overrides, *alias("selector1", TARGET1), *alias("selector2", TARGET2),
               answer(DOMAIN, "TXT", DnsStatus.OK, txt_record(spf))]
    return DomainDns.build(DOMAIN, answers, f"dns/{DOMAIN}.json")


def run(*recordings: DomainDns, configs: list[dict[str, Any]] | None = None, files: Files | None = None,
        gateway: str | None = None, profiles: tuple[GatewayProfile, ...] | None = None,
        as_of: datetime = AS_OF) -> list[Finding]:
    merged: Files = {"Get-AcceptedDomain": accepted(DOMAIN, TENANT),
                     "Get-DkimSigningConfig": [config()] if configs is None else configs, **(files or {})}
    collections = {key: parse_evidence(SPECS[key], json.dumps(value).encode())
                   for key, value in merged.items() if value is not None}
    evidence = EvidenceStore(collections, dns={d.domain: d for d in recordings})
    gw = resolve_gateway(evidence, profiles or builtin_profiles(), forced=gateway)
    return run_check(dkim.dkim_signing, AuditContext(evidence, gw, as_of))


def only(findings: list[Finding]) -> Finding:
    assert len(findings) == 1, [(f.status, f.resource, f.message) for f in findings]
    return findings[0]


def cited(finding: Finding) -> list[tuple[str, str]]:
    return [(e.file, e.pointer) for e in finding.evidence]


def pointer(dd: DomainDns, name: str, rdtype: str) -> tuple[str, str]:
    index = [(a.query.name, a.query.rdtype) for a in dd.answers].index((name, rdtype))
    return dd.file, f"/answers/{index}"


def profile_with_selectors(*selectors: str) -> GatewayProfile:
    mimecast = next(p for p in builtin_profiles() if p.id == "mimecast")
    return dataclasses.replace(mimecast, dkim_selectors=selectors)


# --- legitimate setups ------------------------------------------------------------------------

def test_enabled_with_both_cnames_to_the_configs_targets_passes() -> None:
    dd = recording()
    found = only(run(dd))
    assert (found.status, found.resource) == (Status.PASS, RESOURCE), found.message
    assert TARGET1 in found.message and TARGET2 in found.message
    assert pointer(dd, f"selector1._domainkey.{DOMAIN}", "CNAME") in cited(found)


def test_the_newer_dkim_mail_microsoft_targets_pass_when_the_config_names_them() -> None:
    """Domains added since May 2025 point at *.dkim.mail.microsoft; the config is the reference."""
    new1 = "selector1-contoso-example._domainkey.contoso.n-v1.dkim.mail.microsoft"
    new2 = "selector2-contoso-example._domainkey.contoso.n-v1.dkim.mail.microsoft"
    dd = recording(*alias("selector1", new1), *alias("selector2", new2))
    assert only(run(dd, configs=[config(Selector1CNAME=new1, Selector2CNAME=new2)])).status is Status.PASS


def test_target_read_from_a_two_hop_alias_chain_of_an_older_recording_passes() -> None:
    """Recorded before the CNAME lookup existed: the second owner of the TXT alias chain is the target."""
    name1, name2 = f"selector1._domainkey.{DOMAIN}", f"selector2._domainkey.{DOMAIN}"
    dd = DomainDns.build(DOMAIN, [key_txt(name1, KEY, name1, TARGET1),
                                  key_txt(name2, KEY, name2, TARGET2)], f"dns/{DOMAIN}.json")
    assert only(run(dd)).status is Status.PASS


def test_onmicrosoft_domains_are_not_judged() -> None:
    """Microsoft signs the initial domain itself; only the custom domain is a resource."""
    findings = run(recording(), configs=[config(), config(TENANT, Enabled=False)])
    assert [f.resource for f in findings] == [RESOURCE]


def test_a_tenant_with_only_its_initial_domain_passes_as_a_summary() -> None:
    found = only(run(files={"Get-AcceptedDomain": accepted(TENANT)}))
    assert (found.status, found.resource) == (Status.PASS, "accepted domains")


def test_disabled_but_the_gateway_signs_all_outbound_mail_with_a_published_selector_passes() -> None:
    selector = f"hse1._domainkey.{DOMAIN}"
    dd = recording(key_txt(selector))
    found = only(run(dd, configs=[config(Enabled=False)], files={"Get-OutboundConnector": [OUTBOUND]},
                     gateway="mimecast", profiles=(profile_with_selectors("hse1", "hse2"),)))
    assert found.status is Status.PASS, found.message
    assert "hse1" in found.message
    assert pointer(dd, selector, "TXT") in cited(found)


def test_a_gateway_selector_matching_the_profiles_pattern_counts_when_recorded() -> None:
    dd = recording(key_txt(f"mimecast20240101._domainkey.{DOMAIN}"))
    found = only(run(dd, configs=[config(Enabled=False)], files={"Get-OutboundConnector": [OUTBOUND]},
                     gateway="mimecast"))
    assert found.status is Status.PASS, found.message


def test_domain_whose_spf_authorises_nobody_needs_no_signing() -> None:
    dd = DomainDns.build(DOMAIN, [answer(DOMAIN, "TXT", DnsStatus.OK, txt_record("v=spf1 -all"))],
                         f"dns/{DOMAIN}.json")
    found = only(run(dd, configs=[]))
    assert found.status is Status.PASS
    assert "sends no mail" in found.message


# --- bypasses and misconfigurations -----------------------------------------------------------

def test_cname_to_a_zone_an_outsider_controls_fails_high() -> None:
    """Whoever runs the target zone picks the key receivers trust for the domain's selector1."""
    dd = recording(*alias("selector1", FOREIGN))
    found = only(run(dd))
    assert (found.status, found.severity) == (Status.FAIL, Severity.HIGH)
    assert f"points to {FOREIGN}, not to {TARGET1}" in found.message
    assert "passes DKIM and DMARC" in found.message
    assert pointer(dd, f"selector1._domainkey.{DOMAIN}", "CNAME") in cited(found)
    assert ("exo/Get-DkimSigningConfig.json", "/0/Selector1CNAME") in cited(found)


def test_cname_to_an_outsider_fails_even_while_signing_is_disabled_or_the_domain_is_parked() -> None:
    dd = recording(*alias("selector2", FOREIGN), spf="v=spf1 -all")
    found = only(run(dd, configs=[config(Enabled=False)]))
    assert (found.status, found.severity) == (Status.FAIL, Severity.HIGH)


def test_cname_to_another_tenants_key_fails_medium() -> None:
    """A key Microsoft holds for someone else: signatures fail, but nobody else can sign."""
    found = only(run(recording(*alias("selector1", OTHER_TENANT))))
    assert (found.status, found.severity) == (Status.FAIL, Severity.MEDIUM)
    assert f"points to {OTHER_TENANT}" in found.message and "another domain or tenant" in found.message


def test_cname_into_the_tenants_own_domain_fails_medium() -> None:
    """The tenant controls that name: no outsider signs, but the config's target is not asked for."""
    own = f"selector1._domainkey.{TENANT.removesuffix('.onmicrosoft.com')}-mail.example"
    findings = run(recording(*alias("selector1", own)),
                   files={"Get-AcceptedDomain": accepted(DOMAIN, TENANT, "contoso-mail.example")})
    found = only([f for f in findings if f.resource == RESOURCE])
    assert (found.status, found.severity) == (Status.FAIL, Severity.MEDIUM)
    assert "the tenant's own DNS" in found.message


def test_alias_chain_of_an_older_recording_to_another_target_fails() -> None:
    name = f"selector1._domainkey.{DOMAIN}"
    dd = DomainDns.build(DOMAIN, [key_txt(name, KEY, name, FOREIGN), *alias("selector2", TARGET2)],
                         f"dns/{DOMAIN}.json")
    found = only(run(dd))
    assert (found.status, found.severity) == (Status.FAIL, Severity.HIGH)


def test_signing_disabled_without_a_signing_gateway_fails_with_the_enable_command() -> None:
    found = only(run(recording(), configs=[config(Enabled=False)]))
    assert (found.status, found.severity) == (Status.FAIL, Severity.MEDIUM)
    assert "Enabled False" in found.message and "onmicrosoft.com" in found.message
    assert found.fix == "Set-DkimSigningConfig -Identity 'contoso.example' -Enabled $true"
    assert ("exo/Get-DkimSigningConfig.json", "/0/Enabled") in cited(found)


def test_no_signing_config_fails_and_cites_the_accepted_domain() -> None:
    """An empty but collected Get-DkimSigningConfig is read truthfully: nothing signs as the domain."""
    found = only(run(recording(), configs=[]))
    assert found.status is Status.FAIL
    assert "no DKIM signing config" in found.message
    assert found.fix.startswith("New-DkimSigningConfig -DomainName 'contoso.example' -KeySize 2048")
    assert ("exo/Get-AcceptedDomain.json", "/0/DomainName") in cited(found)


def test_disabled_while_the_gateway_outbound_connector_is_off_fails() -> None:
    dd = recording(key_txt(f"mimecast20240101._domainkey.{DOMAIN}"))
    found = only(run(dd, configs=[config(Enabled=False)],
                     files={"Get-OutboundConnector": [{**OUTBOUND, "Enabled": False}]}, gateway="mimecast"))
    assert found.status is Status.FAIL


def test_disabled_behind_a_gateway_whose_selectors_are_only_patterns_warns_low() -> None:
    """mimecast* cannot be asked of DNS: the gateway's signing is not assumed, only left to confirm."""
    found = only(run(recording(), configs=[config(Enabled=False)],
                     files={"Get-OutboundConnector": [OUTBOUND]}, gateway="mimecast"))
    assert (found.status, found.severity) == (Status.WARN, Severity.LOW)
    assert "mimecast*" in found.message and "cannot be asked" in found.message
    assert ("exo/Get-OutboundConnector.json", "/0/SmartHosts") in cited(found)


def test_disabled_and_the_gateways_documented_selectors_absent_warns_medium() -> None:
    dd = recording(answer(f"mc1._domainkey.{DOMAIN}", "TXT", DnsStatus.NXDOMAIN))
    found = only(run(dd, configs=[config(Enabled=False)], files={"Get-OutboundConnector": [OUTBOUND]},
                     gateway="mimecast", profiles=(profile_with_selectors("mc1"),)))
    assert (found.status, found.severity) == (Status.WARN, Severity.MEDIUM)
    assert "none of its DKIM selectors (mc1)" in found.message


def test_missing_active_selector_fails_medium() -> None:
    name = f"selector2._domainkey.{DOMAIN}"
    found = only(run(recording(*gone("selector2"))))
    assert (found.status, found.severity) == (Status.FAIL, Severity.MEDIUM)
    assert f"{name} does not exist in DNS" in found.message
    assert "the selector Microsoft signs with now" in found.message
    assert ("exo/Get-DkimSigningConfig.json", "/0/Selector2CNAME") in cited(found)


def test_missing_inactive_selector_fails_low_until_the_next_rotation() -> None:
    found = only(run(recording(*gone("selector1"))))
    assert (found.status, found.severity) == (Status.FAIL, Severity.LOW)
    assert "next key rotation" in found.message


def test_the_active_selector_follows_the_rotation_date() -> None:
    """Before RotateOnDate Microsoft still signs with SelectorBeforeRotateOnDate (selector1)."""
    found = only(run(recording(*gone("selector1")), as_of=datetime(2025, 1, 1, tzinfo=UTC)))
    assert (found.status, found.severity) == (Status.FAIL, Severity.MEDIUM)


def test_alias_to_a_revoked_key_fails() -> None:
    name = f"selector2._domainkey.{DOMAIN}"
    found = only(run(recording(key_txt(name, "v=DKIM1; k=rsa; p=", name))))
    assert found.status is Status.FAIL
    assert "publishes no DKIM key" in found.message


def test_broken_cname_while_the_gateway_signs_only_warns() -> None:
    dd = recording(*gone("selector2"), key_txt(f"mimecast20240101._domainkey.{DOMAIN}"))
    found = only(run(dd, files={"Get-OutboundConnector": [OUTBOUND]}, gateway="mimecast"))
    assert (found.status, found.severity) == (Status.WARN, Severity.LOW)


def test_key_published_as_txt_instead_of_the_cname_warns() -> None:
    name = f"selector1._domainkey.{DOMAIN}"
    found = only(run(recording(answer(name, "CNAME", DnsStatus.NODATA), key_txt(name))))
    assert (found.status, found.severity) == (Status.WARN, Severity.LOW)
    assert "TXT key of its own" in found.message


def test_1024_bit_key_warns_with_the_rotate_command() -> None:
    found = only(run(recording(), configs=[config(Selector1KeySize=1024)]))
    assert (found.status, found.severity) == (Status.WARN, Severity.LOW)
    assert "selector1 1024 bits" in found.message
    assert found.fix == "Rotate-DkimSigningConfig -Identity 'contoso.example' -KeySize 2048"
    assert ("exo/Get-DkimSigningConfig.json", "/0/Selector1KeySize") in cited(found)


# --- evidence missing or unreadable -------------------------------------------------------------

def test_signing_config_not_collected_is_not_evaluated() -> None:
    found = only(run(recording(), files={"Get-DkimSigningConfig": None}))
    assert (found.status, found.resource) == (Status.NOT_EVALUATED, "Get-DkimSigningConfig")


def test_empty_accepted_domains_are_not_evaluated() -> None:
    """Every tenant has its initial domain: an empty list is an incomplete export, not a pass."""
    found = only(run(files={"Get-AcceptedDomain": []}))
    assert found.status is Status.NOT_EVALUATED
    assert "incomplete" in found.message


def test_enabled_without_recorded_dns_is_not_evaluated() -> None:
    found = only(run())
    assert found.status is Status.NOT_EVALUATED
    assert "no DNS answers were recorded" in found.message


def test_disabled_without_recorded_dns_and_no_gateway_still_fails_and_says_what_was_not_checked() -> None:
    """Whether Microsoft signs needs no DNS; only a parked domain's SPF could have excused it."""
    found = only(run(configs=[config(Enabled=False)]))
    assert found.status is Status.FAIL
    assert "whether it sends mail at all was not checked" in found.message


def test_cname_lookup_failure_is_not_evaluated() -> None:
    name = f"selector1._domainkey.{DOMAIN}"
    found = only(run(recording(answer(name, "CNAME", DnsStatus.SERVFAIL,
                                      detail="the server failed (SERVFAIL)"))))
    assert found.status is Status.NOT_EVALUATED
    assert "CNAME lookup of selector1._domainkey.contoso.example failed (servfail" in found.message


def test_key_lookup_failure_behind_a_matching_cname_is_not_evaluated() -> None:
    name = f"selector2._domainkey.{DOMAIN}"
    found = only(run(recording(answer(name, "TXT", DnsStatus.TIMEOUT, detail="no answer within 3 s"))))
    assert found.status is Status.NOT_EVALUATED
    assert "TXT lookup" in found.message


def test_alias_whose_target_was_not_recorded_is_not_evaluated() -> None:
    """An older recording shows an alias but not where it points: no pass on half the evidence."""
    names = [f"selector{n}._domainkey.{DOMAIN}" for n in (1, 2)]
    dd = DomainDns.build(DOMAIN, [key_txt(n, KEY, n) for n in names], f"dns/{DOMAIN}.json")
    found = only(run(dd))
    assert found.status is Status.NOT_EVALUATED
    assert "its target was not recorded" in found.message


def test_enabled_absent_is_not_evaluated() -> None:
    cfg = config()
    del cfg["Enabled"]
    found = only(run(recording(), configs=[cfg]))
    assert found.status is Status.NOT_EVALUATED
    assert "Enabled is absent" in found.message


def test_an_unreadable_signing_config_is_reported_and_never_passed() -> None:
    """The engine reports the object it could not read; the domain is not passed for want of it."""
    findings = run(recording(), configs=[config(Selector1KeySize="large")])
    unread = [f for f in findings if f.resource == DOMAIN]
    assert [f.status for f in unread] == [Status.NOT_EVALUATED]
    assert "Selector1KeySize" in unread[0].message
    assert Status.PASS not in {f.status for f in findings}
    # Nor is it failed as a domain with no signing config: the config exists but was not read.
    judged = [f for f in findings if f.resource == f"domain {DOMAIN}"]
    assert [f.status for f in judged] == [Status.NOT_EVALUATED]
    assert "could not be read" in judged[0].message
