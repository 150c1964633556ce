"""ARC-001: trusted ARC sealers vouch only for the gateway in front of the tenant and known services."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from auditor.engine import Finding, Severity, Status

from ..conftest import DOC_GATEWAY, accepted, audit, connector, findings_for, mimecast_us_ranges

MakeExport = Callable[..., Path]
ARC = "exo/Get-ArcConfig.json"
MIMECAST = "gateway Mimecast Email Security, Cloud Gateway"
_ABSENT = object()


def _arc(sealers: Any = _ABSENT) -> list[dict[str, Any]]:
    config: dict[str, Any] = {"Identity": "Default"}
    if sealers is not _ABSENT:
        config["ArcTrustedSealers"] = sealers
    return [config]


def _run(make_export: MakeExport, arc: Any, *, mimecast: bool = True,
         gateway_file: Path | None = None, **files: Any) -> list[Finding]:
    export: dict[str, Any] = {"Get-ArcConfig": arc} if arc is not _ABSENT else {}
    if mimecast:
        export["Get-InboundConnector"] = [connector(Name="Mimecast Inbound",
                                                    SenderIPAddresses=mimecast_us_ranges())]
    export.update(files)
    return findings_for(audit(make_export(export), gateway_file=gateway_file), "ARC-001")


def _by_resource(findings: list[Finding]) -> dict[str, Finding]:
    found = {f.resource: f for f in findings}
    assert len(found) == len(findings), [(f.status, f.resource) for f in findings]
    return found


def _profile(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "own-gateway.toml"
    path.write_text(DOC_GATEWAY.replace("[[ip_ranges]]", extra + "\n[[ip_ranges]]"))
    return path


def test_mimecast_behind_mimecast_with_its_sealer_trusted_passes(make_export: MakeExport) -> None:
    """The vendor's own sealer is exactly what Microsoft's ARC guidance asks for."""
    found = _by_resource(_run(make_export, _arc("dkim.mimecast.com")))
    assert set(found) == {"trusted ARC sealer dkim.mimecast.com", MIMECAST}
    assert all(f.status is Status.PASS for f in found.values())
    assert "oda=1" not in found[MIMECAST].message


def test_mimecast_com_counts_as_mimecast_but_the_seen_domain_is_named(make_export: MakeExport) -> None:
    """Microsoft's page shows d=mimecast.com, while Mimecast is seen sealing as dkim.mimecast.com."""
    found = _by_resource(_run(make_export, _arc("mimecast.com")))
    assert found["trusted ARC sealer mimecast.com"].status is Status.PASS
    gateway = found[MIMECAST]
    assert gateway.status is Status.PASS
    assert "dkim.mimecast.com" in gateway.message and "oda=1" in gateway.message


def test_unknown_sealer_fails_high_with_a_fix_that_removes_only_it(make_export: MakeExport) -> None:
    """An attacker's sealer beside the gateway's: whoever holds it can seal forged mail as passing."""
    found = _by_resource(_run(make_export, _arc("dkim.mimecast.com,Relay.Attacker.Example")))
    bad = found["trusted ARC sealer relay.attacker.example"]
    assert bad.status is Status.FAIL
    assert bad.severity is Severity.HIGH
    assert "forged mail" in bad.message
    assert "gateway profile file" in bad.message
    assert bad.evidence[0].file == ARC and bad.evidence[0].pointer == "/0/ArcTrustedSealers"
    assert bad.evidence[0].observed == "dkim.mimecast.com,Relay.Attacker.Example"
    assert "$_ -ne 'relay.attacker.example'" in bad.fix
    assert "Set-ArcConfig -Identity 'Default' -ArcTrustedSealers $keep" in bad.fix
    assert found["trusted ARC sealer dkim.mimecast.com"].status is Status.PASS
    assert found[MIMECAST].status is Status.PASS


def test_a_listed_sealer_points_at_its_own_item(make_export: MakeExport) -> None:
    found = _by_resource(_run(make_export, _arc(["dkim.mimecast.com", "seal.example.net"])))
    bad = found["trusted ARC sealer seal.example.net"]
    assert bad.status is Status.FAIL
    assert bad.evidence[0].pointer == "/0/ArcTrustedSealers/1"


def test_fix_quotes_the_domain_for_powershell(make_export: MakeExport) -> None:
    found = _by_resource(_run(make_export, _arc("o'brien.example")))
    assert "'o''brien.example'" in found["trusted ARC sealer o'brien.example"].fix


@pytest.mark.parametrize("domain", ["google.com", "microsoft.com"])
def test_services_that_seal_what_they_verified_pass(make_export: MakeExport, domain: str) -> None:
    found = _by_resource(_run(make_export, _arc(f"dkim.mimecast.com,{domain}")))
    assert found[f"trusted ARC sealer {domain}"].status is Status.PASS


def test_another_gateways_sealer_is_a_leftover_warning(make_export: MakeExport) -> None:
    """Proofpoint's sealer in a Mimecast tenant: a real vendor, but not one in the mail path."""
    found = _by_resource(_run(make_export, _arc("dkim.mimecast.com,pphosted.com")))
    leftover = found["trusted ARC sealer pphosted.com"]
    assert leftover.status is Status.WARN
    assert leftover.severity is Severity.MEDIUM
    assert "Proofpoint" in leftover.message and leftover.fix


def test_the_organisations_own_domain_is_a_low_warning(make_export: MakeExport) -> None:
    """Microsoft lists this as the usual mistake: only holders of the domain's keys could seal."""
    found = _by_resource(_run(make_export, _arc("dkim.mimecast.com,contoso.com"),
                              **{"Get-AcceptedDomain": accepted("contoso.com")}))
    own = found["trusted ARC sealer contoso.com"]
    assert own.status is Status.WARN
    assert own.severity is Severity.LOW


def test_without_accepted_domains_an_unknown_sealer_says_what_was_not_checked(
        make_export: MakeExport) -> None:
    found = _by_resource(_run(make_export, _arc("contoso.com")))
    unknown = found["trusted ARC sealer contoso.com"]
    assert unknown.status is Status.FAIL
    assert "accepted domains were not exported" in unknown.message


@pytest.mark.parametrize("sealers", [None, ""])
def test_modifying_gateway_without_its_sealer_warns_low(make_export: MakeExport, sealers: Any) -> None:
    """Mimecast rewrites messages: without its sealer, DKIM-reliant mail fails DMARC."""
    found = _by_resource(_run(make_export, _arc(sealers)))
    assert found["trusted ARC sealers"].status is Status.PASS
    gateway = found[MIMECAST]
    assert gateway.status is Status.WARN
    assert gateway.severity is Severity.LOW
    assert "+ 'dkim.mimecast.com'" in gateway.fix
    assert gateway.evidence[0].pointer == "/0/ArcTrustedSealers"
    assert any(e.file == "exo/Get-InboundConnector.json" for e in gateway.evidence)


def test_no_object_is_how_exchange_reports_no_sealers(make_export: MakeExport) -> None:
    """Microsoft: "If no trusted ARC sealers are configured, the command returns no results"."""
    found = _by_resource(_run(make_export, []))
    assert found["trusted ARC sealers"].status is Status.PASS
    assert "returned no object" in found["trusted ARC sealers"].message
    assert found[MIMECAST].status is Status.WARN


def test_missing_evidence_is_not_evaluated(make_export: MakeExport) -> None:
    findings = _run(make_export, _ABSENT)
    assert [(f.status, f.resource) for f in findings] == [(Status.NOT_EVALUATED, "Get-ArcConfig")]


def test_unreadable_file_is_not_evaluated(make_export: MakeExport) -> None:
    findings = _run(make_export, b"{not json")
    assert [f.status for f in findings] == [Status.NOT_EVALUATED]


def test_absent_property_is_not_evaluated(make_export: MakeExport) -> None:
    found = _by_resource(_run(make_export, _arc()))
    assert {f.status for f in found.values()} == {Status.NOT_EVALUATED}
    assert "does not contain ArcTrustedSealers" in found["ARC config Default"].message


def test_unreadable_value_is_never_a_pass(make_export: MakeExport) -> None:
    findings = _run(make_export, _arc({"Value": "dkim.mimecast.com"}))
    assert not [f for f in findings if f.status is Status.PASS]
    assert any(f.status is Status.NOT_EVALUATED and f.resource == "Default" for f in findings)
    # An unread list is not an empty one: the gateway part is not judged (no "missing" warning).
    assert {(f.resource, f.status) for f in findings if f.resource != "Default"} == {
        ("gateway ARC sealer", Status.NOT_EVALUATED)}


def test_no_gateway_detected_is_said_not_passed(make_export: MakeExport) -> None:
    found = _by_resource(_run(make_export, _arc("seal.example.net"), mimecast=False))
    assert found["gateway ARC sealer"].status is Status.NOT_EVALUATED
    assert "no third-party gateway was detected" in found["gateway ARC sealer"].message
    unknown = found["trusted ARC sealer seal.example.net"]
    assert unknown.status is Status.FAIL
    assert "gateway profile file" not in unknown.message


def test_a_users_profile_names_its_gateways_sealer(make_export: MakeExport, tmp_path: Path) -> None:
    profile = _profile(tmp_path, 'arc_sealers = ["Seal.Gateway.Example"]\nmodifies_messages = true')
    found = _by_resource(_run(make_export, _arc("seal.gateway.example"), mimecast=False,
                              gateway_file=profile))
    assert found["trusted ARC sealer seal.gateway.example"].status is Status.PASS
    assert found["gateway Documentation gateway"].status is Status.PASS


def test_a_users_modifying_gateway_without_its_sealer_warns(
        make_export: MakeExport, tmp_path: Path) -> None:
    profile = _profile(tmp_path, 'arc_sealers = ["seal.gateway.example"]\nmodifies_messages = true')
    found = _by_resource(_run(make_export, _arc(None), mimecast=False, gateway_file=profile))
    gateway = found["gateway Documentation gateway"]
    assert gateway.status is Status.WARN
    assert "+ 'seal.gateway.example'" in gateway.fix


def test_gateway_that_does_not_modify_needs_no_sealer(make_export: MakeExport, tmp_path: Path) -> None:
    profile = _profile(tmp_path, "modifies_messages = false")
    found = _by_resource(_run(make_export, _arc(None), mimecast=False, gateway_file=profile))
    assert found["gateway Documentation gateway"].status is Status.PASS


def test_unknown_whether_gateway_modifies_is_not_evaluated(
        make_export: MakeExport, doc_gateway: Path) -> None:
    """An optional rewriting feature the evidence cannot show: neither a pass nor a warning."""
    found = _by_resource(_run(make_export, _arc(None), mimecast=False, gateway_file=doc_gateway))
    assert found["gateway Documentation gateway"].status is Status.NOT_EVALUATED


def test_modifying_gateway_with_unrecorded_sealer(make_export: MakeExport, tmp_path: Path) -> None:
    """Without the gateway's d= domain, a trusted entry may be its own: say so rather than guess."""
    profile = _profile(tmp_path, "modifies_messages = true")
    found = _by_resource(_run(make_export, _arc("seal.example.net"), mimecast=False,
                              gateway_file=profile))
    assert found["gateway Documentation gateway"].status is Status.NOT_EVALUATED
    found = _by_resource(_run(make_export, _arc(None), mimecast=False, gateway_file=profile))
    gateway = found["gateway Documentation gateway"]
    assert gateway.status is Status.WARN and not gateway.fix


def test_api_only_gateway_relays_nothing_to_seal(make_export: MakeExport, tmp_path: Path) -> None:
    profile = _profile(tmp_path, 'deployment = "api"')
    found = _by_resource(_run(make_export, _arc(None), mimecast=False, gateway_file=profile))
    assert found["gateway Documentation gateway"].status is Status.PASS
