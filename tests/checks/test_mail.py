"""MAIL-001: delivered messages that reached a mailbox without passing the gateway."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import accepted, audit, findings_for, statuses

MIMECAST_IP = "205.139.110.30"  # inside Mimecast's published US range 205.139.110.0/24
OUTSIDE_IP = "192.0.2.77"


def message(message_id: str, *, cip: str | None, helo: str, stamps: tuple[str, ...] = (),
            auth_as: str = "Anonymous", direction: str = "INB", **overrides: Any) -> dict[str, Any]:
    """One row of Mailbox-MessageHeaders as auditor.mailbox writes it."""
    hop = (f"from {helo} ({cip or '203.0.113.9'}) by BL0PEPF00012345.mail.protection.outlook.com "
           "(10.167.16.20) with Microsoft SMTP Server (version=TLS1_3) id 15.20.8000.10 via Frontend "
           "Transport; Thu, 20 Aug 2026 09:59:57 +0000")
    row: dict[str, Any] = {
        "Mailbox": "alex.wilber@contoso.com",
        "InternetMessageId": message_id,
        "DateTimeReceived": "2026-08-20T09:59:58+00:00",
        "Sender": "billing@fabrikam.com",
        "Received": [
            "from BL0PEPF00012345.namprd03.prod.outlook.com (2603:10b6:208:1::10) by "
            "SA1PR03MB0001.namprd03.prod.outlook.com with HTTPS; Thu, 20 Aug 2026 09:59:58 +0000",
            hop,
            f"from mail.fabrikam.com (192.0.2.200) by {helo}; Thu, 20 Aug 2026 09:59:56 +0000",
        ],
        "AntispamReport": (f"CIP:{cip};CTRY:US;LANG:en;SCL:1;SRV:;IPV:NLI;SFV:NSPM;H:{helo};"
                           f"PTR:{helo};CAT:NONE;SFS:;DIR:{direction};") if cip else None,
        "AuthenticationResults": "spf=pass smtp.mailfrom=fabrikam.com; dkim=pass header.d=fabrikam.com",
        "OrganizationAuthAs": auth_as,
        "MessageDirectionality": "Incoming",
        "HeaderNames": ["Received", "Received", "Received", "X-Forefront-Antispam-Report",
                        "Authentication-Results", "X-MS-Exchange-Organization-AuthAs", *stamps],
    }
    row.update(overrides)
    return row


def export(make_export: Callable[..., Path], *rows: dict[str, Any]) -> Path:
    return make_export({"Get-AcceptedDomain": accepted("contoso.com"),
                        "Mailbox-MessageHeaders": {"value": list(rows)}})


def test_a_message_handed_over_by_an_outside_ip_fails_with_its_id_date_sender_and_hop(
        make_export: Callable[..., Path]) -> None:
    folder = export(make_export,
                    message("<direct@attacker.example>", cip=OUTSIDE_IP, helo="mail.attacker.example"),
                    message("<ok@fabrikam.com>", cip=MIMECAST_IP, helo="us-smtp-delivery-1.mimecast.com",
                            stamps=("X-MC-Unique",)))
    found = findings_for(audit(folder, gateway="mimecast"), "MAIL-001")
    failed = [f for f in found if f.status.value == "fail"]
    assert len(failed) == 1
    bypass = failed[0]
    assert bypass.resource == "message <direct@attacker.example> in mailbox alex.wilber@contoso.com"
    assert bypass.severity.value == "critical"
    for part in (OUTSIDE_IP, "2026-08-20T09:59:58", "billing@fabrikam.com", "mail.attacker.example",
                 "Received: from mail.attacker.example (192.0.2.77) by BL0PEPF00012345"):
        assert part in bypass.message
    assert bypass.evidence[0].file == "mailbox/Mailbox-MessageHeaders.json"
    assert bypass.evidence[0].pointer == "/value/0/Received/1"  # the hop Exchange Online wrote
    assert {e.pointer for e in bypass.evidence} >= {"/value/0/AntispamReport",
                                                    "/value/0/InternetMessageId"}
    assert ("pass", "mailbox alex.wilber@contoso.com") in statuses(found)


def test_mail_delivered_through_mimecast_with_its_stamps_passes(make_export: Callable[..., Path]) -> None:
    folder = export(make_export, *(message(f"<m{i}@fabrikam.com>", cip=MIMECAST_IP,
                                           helo="us-smtp-delivery-1.mimecast.com",
                                           stamps=("X-MC-Unique", "X-Mimecast-Spam-Score"))
                                   for i in range(3)))
    found = findings_for(audit(folder, gateway="mimecast"), "MAIL-001")
    assert statuses(found) == {("pass", "mailbox alex.wilber@contoso.com")}
    assert "3 through Mimecast" in found[0].message


def test_under_enhanced_filtering_the_entry_hop_not_cip_says_who_connected(
        make_export: Callable[..., Path]) -> None:
    """With Enhanced Filtering, CIP names the sender before the skip-listed gateway hop."""
    through = message("<ef@fabrikam.com>", cip=OUTSIDE_IP, helo="us-smtp-delivery-1.mimecast.com",
                      stamps=("X-MC-Unique", "X-MS-Exchange-SkipListedInternetSender"))
    through["Received"][1] = through["Received"][1].replace(OUTSIDE_IP, MIMECAST_IP)
    unreadable = message("<ef2@fabrikam.com>", cip=OUTSIDE_IP, helo="us-smtp-delivery-1.mimecast.com",
                         stamps=("X-MS-Exchange-SkipListedInternetSender",), Received=["garbled"])
    found = findings_for(audit(export(make_export, through, unreadable), gateway="mimecast"), "MAIL-001")
    gap_resource = "message <ef2@fabrikam.com> in mailbox alex.wilber@contoso.com"
    assert statuses(found) == {("pass", "mailbox alex.wilber@contoso.com"),
                               ("not_evaluated", gap_resource)}
    gap = next(f for f in found if f.status.value == "not_evaluated")
    assert "skip-listed hop" in gap.message


def test_internal_mail_is_not_inbound(make_export: Callable[..., Path]) -> None:
    """Mail between colleagues never passes the gateway and must not be called a bypass."""
    folder = export(make_export,
                    message("<int@contoso.com>", cip="10.1.2.3", helo="internal.contoso.com",
                            auth_as="Internal", direction="INT", Sender="megan.bowen@contoso.com"))
    found = findings_for(audit(folder, gateway="mimecast"), "MAIL-001")
    assert statuses(found) == {("pass", "mailbox alex.wilber@contoso.com")}
    assert "1 internal (not inbound)" in found[0].message


def test_missing_headers_evidence_is_not_evaluated(make_export: Callable[..., Path]) -> None:
    folder = make_export({"Get-AcceptedDomain": accepted("contoso.com")})
    found = findings_for(audit(folder, gateway="mimecast"), "MAIL-001")
    assert [f.status.value for f in found] == ["not_evaluated"]
    assert "Mailbox-MessageHeaders" in found[0].message


def test_unparseable_headers_make_that_message_not_evaluated(make_export: Callable[..., Path]) -> None:
    broken = message("<odd@fabrikam.com>", cip=None, helo="x", Received=["garbage"], AntispamReport=None)
    folder = export(make_export, broken)
    found = findings_for(audit(folder, gateway="mimecast"), "MAIL-001")
    assert statuses(found) == {("not_evaluated", "message <odd@fabrikam.com> in mailbox "
                                                 "alex.wilber@contoso.com")}
    assert "do not say who connected" in found[0].message


def test_a_mailbox_that_could_not_be_read_is_not_evaluated_and_an_empty_inbox_is_no_pass(
        make_export: Callable[..., Path]) -> None:
    folder = export(make_export,
                    {"Mailbox": "adele.vance@contoso.com", "CollectionState": "denied",
                     "CollectionError": "ErrorImpersonateUserDenied"},
                    {"Mailbox": "info@contoso.com", "CollectionState": "empty",
                     "CollectionError": "the inbox holds no messages"})
    found = findings_for(audit(folder, gateway="mimecast"), "MAIL-001")
    assert statuses(found) == {("not_evaluated", "mailbox adele.vance@contoso.com"),
                               ("not_evaluated", "delivered mail")}


def test_cisco_with_customer_specific_ips_is_recognised_by_host_and_stamps(
        make_export: Callable[..., Path]) -> None:
    folder = export(make_export, message("<c@fabrikam.com>", cip="192.0.2.10",
                                         helo="esa1.hc1234-56.iphmx.com", stamps=("X-IronPort-AV",)))
    found = findings_for(audit(folder, gateway="cisco"), "MAIL-001")
    assert statuses(found) == {("pass", "mailbox alex.wilber@contoso.com")}
    assert "its IPs are per customer" in found[0].message


def test_gateway_host_and_stamps_from_an_ip_outside_its_published_ranges_is_a_warning(
        make_export: Callable[..., Path]) -> None:
    folder = export(make_export, message("<w@fabrikam.com>", cip=OUTSIDE_IP,
                                         helo="us-smtp-delivery-9.mimecast.com", stamps=("X-MC-Unique",)))
    found = findings_for(audit(folder, gateway="mimecast"), "MAIL-001")
    warned = [f for f in found if f.status.value == "warn"]
    assert len(warned) == 1 and "not in its shipped ranges" in warned[0].message


def test_without_a_known_gateway_the_check_is_not_evaluated(make_export: Callable[..., Path]) -> None:
    folder = export(make_export, message("<x@fabrikam.com>", cip=OUTSIDE_IP, helo="mail.example"))
    found = findings_for(audit(folder), "MAIL-001")
    assert [(f.status.value, f.resource) for f in found] == [("not_evaluated", "gateway")]


# --- headers read through Microsoft Graph -----------------------------------------------------

def test_headers_read_through_graph_are_judged_alike_and_the_summary_names_the_api(
        make_export: Callable[..., Path]) -> None:
    """The rows are the same whichever API read them; only the provenance note differs."""
    direct = message("<direct@attacker.example>", cip=OUTSIDE_IP, helo="mail.attacker.example",
                     CollectedThrough="graph")
    fine = message("<ok@fabrikam.com>", cip=MIMECAST_IP, helo="us-smtp-delivery-1.mimecast.com",
                   stamps=("X-MC-Unique",), CollectedThrough="graph")
    found = findings_for(audit(export(make_export, direct, fine), gateway="mimecast"), "MAIL-001")
    assert statuses(found) == {
        ("fail", "message <direct@attacker.example> in mailbox alex.wilber@contoso.com"),
        ("pass", "mailbox alex.wilber@contoso.com")}
    summary = next(f for f in found if f.status.value == "pass")
    assert summary.message.startswith("of the sampled messages (read through Microsoft Graph): 1 through")


def test_headers_read_over_ews_or_unmarked_carry_no_graph_note(make_export: Callable[..., Path]) -> None:
    rows = [message("<ok@fabrikam.com>", cip=MIMECAST_IP, helo="us-smtp-delivery-1.mimecast.com",
                    stamps=("X-MC-Unique",), CollectedThrough="ews"),
            message("<old@fabrikam.com>", cip=MIMECAST_IP, helo="us-smtp-delivery-1.mimecast.com",
                    stamps=("X-MC-Unique",), Mailbox="megan.bowen@contoso.com")]
    found = findings_for(audit(export(make_export, *rows), gateway="mimecast"), "MAIL-001")
    assert {f.status.value for f in found} == {"pass"} and len(found) == 2
    assert all("Microsoft Graph" not in f.message for f in found)


def test_a_graph_message_without_any_header_is_not_evaluated_and_says_why_graph_may_omit_them(
        make_export: Callable[..., Path]) -> None:
    bare = message("<bare@fabrikam.com>", cip=None, helo="x", Received=[], HeaderNames=[],
                   CollectedThrough="graph")
    [finding] = findings_for(audit(export(make_export, bare), gateway="mimecast"), "MAIL-001")
    assert finding.status.value == "not_evaluated"
    assert "Microsoft Graph returned no internetMessageHeaders" in finding.message
    assert "Mail.ReadBasic.All" in finding.message
