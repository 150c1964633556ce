"""Gateway profiles: shipped data is valid and sourced; detection reads content, not names."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from auditor.dnsevidence import DomainDns
from auditor.dnsmodel import DnsStatus, answer
from auditor.errors import ProfileError
from auditor.evidence import SPECS, EvidenceStore, parse_evidence
from auditor.gateways import (
    PATTERN_FIELDS,
    GatewayResolver,
    builtin_profiles,
    find_profile,
    load_profile_file,
    resolve_gateway,
)
from auditor.netutil import IpRange

from ..conftest import connector, mimecast_us_ranges

PROFILES = builtin_profiles()
REQUIRED = {"mimecast", "proofpoint-essentials", "proofpoint-enterprise", "barracuda", "cisco",
            "sophos", "trendmicro", "broadcom", "hornetsecurity", "exchange-online"}


def _store(**files: list[dict]) -> EvidenceStore:
    import json

    return EvidenceStore({key: parse_evidence(SPECS[key], json.dumps(value).encode())
                          for key, value in files.items()})


def test_every_required_gateway_ships_a_profile() -> None:
    assert {p.id for p in PROFILES} >= REQUIRED


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.id)
def test_every_shipped_fact_has_a_source_and_a_date(profile) -> None:
    for group in profile.range_groups:
        assert group.provenance.url and group.provenance.url.startswith("https://")
        assert group.provenance.as_of is not None
    for name in PATTERN_FIELDS:
        if getattr(profile, name):
            assert profile.sources[name].url and profile.sources[name].as_of


def test_mimecast_ships_every_region() -> None:
    mimecast = find_profile(PROFILES, "mimecast")
    regions = {g.region for g in mimecast.range_groups}
    assert {"us", "eu", "de", "au", "ca", "za"} <= regions
    for host in ("us-smtp-inbound-1.mimecast.com", "de-smtp-inbound-2.mimecast.com",
                 "za-smtp-inbound-1.mimecast.co.za"):
        assert mimecast.matches_mx(host)
    assert mimecast.matches_certificate("*.mimecast.com")


def test_detects_mimecast_from_its_connector_ranges() -> None:
    store = _store(**{"Get-InboundConnector": [connector(SenderIPAddresses=mimecast_us_ranges())]})
    context = resolve_gateway(store, PROFILES)
    assert [p.id for p in context.active] == ["mimecast"]
    assert context.mode == "auto"
    assert context.clues[0].evidence.pointer == "/0/SenderIPAddresses"


def test_detects_mimecast_from_its_outbound_smart_host() -> None:
    store = _store(**{"Get-OutboundConnector": [
        {"Name": "Out", "Enabled": True, "SmartHosts": ["us-smtp-o365-outbound-1.mimecast.com"]}]})
    assert [p.id for p in resolve_gateway(store, PROFILES).active] == ["mimecast"]


def test_names_of_rules_and_connectors_prove_nothing() -> None:
    store = _store(**{"Get-InboundConnector": [connector(Name="Mimecast Inbound",
                                                         SenderIPAddresses=["192.0.2.0/24"])]})
    assert resolve_gateway(store, PROFILES).active == ()


def test_allow_list_ranges_alone_are_only_a_hint() -> None:
    store = _store(**{"Get-HostedConnectionFilterPolicy": [
        {"Name": "Default", "IPAllowList": mimecast_us_ranges()[:1]}]})
    context = resolve_gateway(store, PROFILES)
    assert context.active == ()
    assert context.hints() and context.hints()[0].strength == "weak"


def test_forcing_a_gateway_by_name_or_alias() -> None:
    context = resolve_gateway(EvidenceStore({}), PROFILES, forced="mimecast-us")
    assert [p.id for p in context.active] == ["mimecast"] and context.mode == "forced"


def test_an_unknown_gateway_name_lists_the_known_ones() -> None:
    with pytest.raises(ProfileError, match=r"known gateways: .*mimecast"):
        resolve_gateway(EvidenceStore({}), PROFILES, forced="nope")


def test_a_user_profile_file_becomes_the_gateway(doc_gateway: Path) -> None:
    profile = load_profile_file(doc_gateway)
    context = resolve_gateway(EvidenceStore({}), PROFILES, user_profile=profile)
    assert context.mode == "file" and context.active == (profile,)
    assert context.covers(IpRange.parse("198.51.100.7"))
    assert not context.covers(IpRange.parse("203.0.113.200"))


def test_exchange_online_ranges_are_recognised_as_microsoft() -> None:
    context = resolve_gateway(EvidenceStore({}), PROFILES)
    owner = context.owner(IpRange.parse("40.107.0.0/16"))
    assert owner is not None and owner.deployment == "exchange-online"


@pytest.mark.parametrize(("text", "message"), [
    ("schema_version = 2\nid='x'\nname='n'\nvendor='v'\n", "schema_version"),
    ("schema_version = 1\nid='X Y'\nname='n'\nvendor='v'\n", "id must be"),
    ("schema_version = 1\nid='x'\nname='n'\nvendor='v'\ncolour='red'\n", "unknown keys"),
    ("schema_version = 1\nid='x'\nname='n'\nvendor='v'\n[[ip_ranges]]\ncidrs=['300.1.1.1/8']\n",
     "ip_ranges"),
    ("not toml at all [", "not valid TOML"),
])
def test_a_broken_user_profile_is_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "p.toml"
    path.write_text(text)
    with pytest.raises(ProfileError, match=message):
        load_profile_file(path)


def test_shipped_profiles_need_sources(make_export: Callable[..., Path]) -> None:
    from auditor.gateways import parse_profile

    data = {"schema_version": 1, "id": "x", "name": "n", "vendor": "v",
            "mx_patterns": ["mx.example"]}
    with pytest.raises(ProfileError, match=r"mx_patterns has no \[sources.mx_patterns\]"):
        parse_profile(data, "builtin:x.toml", strict=True)


@pytest.mark.parametrize(("domain", "owner"), [
    ("mas.barracudanetworks.com", "barracuda"),
    ("journaling.mxrecord.io", "cloudflare"),
    ("journaling.mailstream-eu1.mxrecord.io", "cloudflare"),
    ("mail.cmd.cisco.com", "cisco"),
    ("us-smtp-journal-1.mimecast.com", "mimecast"),
    ("us.earchive.cloud", "proofpoint-essentials"),
])
def test_shipped_archive_domains_name_their_vendor(domain: str, owner: str) -> None:
    context = resolve_gateway(EvidenceStore({}), PROFILES)
    found = context.archive_owner(domain)
    assert found is not None and found.id == owner


@pytest.mark.parametrize("domain", ["exfil.example", "mimecast.com.exfil.example",
                                    "barracudanetworks.com", "mxrecord.io"])
def test_other_domains_are_no_known_archive(domain: str) -> None:
    assert resolve_gateway(EvidenceStore({}), PROFILES).archive_owner(domain) is None


def test_a_user_profile_documents_its_own_archive(tmp_path: Path) -> None:
    path = tmp_path / "archive.toml"
    path.write_text('schema_version = 1\nid = "vault"\nname = "Vault"\nvendor = "Fabrikam"\n'
                    'archive_domains = ["*.vault.fabrikam.example"]\n')
    profile = load_profile_file(path)
    context = resolve_gateway(EvidenceStore({}), PROFILES, user_profile=profile)
    owner = context.archive_owner("contoso.vault.fabrikam.example")
    assert owner is not None and owner.id == "vault"


@pytest.mark.parametrize("pattern", ["*", "*.com", "*.*", "example", "arch ive.example", "a.*"])
def test_an_archive_pattern_that_could_match_anything_is_refused(tmp_path: Path, pattern: str) -> None:
    path = tmp_path / "archive.toml"
    path.write_text('schema_version = 1\nid = "x"\nname = "n"\nvendor = "v"\n'
                    f'archive_domains = ["{pattern}"]\n')
    with pytest.raises(ProfileError, match="archive_domains"):
        load_profile_file(path)


def test_shipped_archive_domains_need_a_source() -> None:
    from auditor.gateways import parse_profile

    data = {"schema_version": 1, "id": "x", "name": "n", "vendor": "v",
            "archive_domains": ["journal.archive.example"]}
    with pytest.raises(ProfileError, match=r"archive_domains has no \[sources.archive_domains\]"):
        parse_profile(data, "builtin:x.toml", strict=True)


def test_mimecast_names_its_arc_sealer_and_modifies_messages() -> None:
    """ARC-001 judges Mimecast tenants by these two facts."""
    mimecast = find_profile(PROFILES, "mimecast")
    assert mimecast.arc_sealers[0] == "dkim.mimecast.com"
    assert mimecast.seals_as("DKIM.Mimecast.com.") and not mimecast.seals_as("evil-mimecast.com")
    assert mimecast.modifies_messages is True
    assert mimecast.sources["modifies_messages"].url


def test_a_user_profile_states_its_arc_sealer(tmp_path: Path) -> None:
    path = tmp_path / "relay.toml"
    path.write_text('schema_version = 1\nid = "relay"\nname = "Relay"\nvendor = "Fabrikam"\n'
                    'arc_sealers = ["ARC.Relay.Example."]\nmodifies_messages = false\n')
    profile = load_profile_file(path)
    assert profile.arc_sealers == ("arc.relay.example",)
    assert profile.modifies_messages is False


@pytest.mark.parametrize(("line", "message"), [
    ('arc_sealers = ["*.relay.example"]', "arc_sealers"),
    ('arc_sealers = ["example"]', "arc_sealers"),
    ('modifies_messages = "yes"', "modifies_messages must be true or false"),
])
def test_a_bad_arc_fact_is_refused(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "relay.toml"
    path.write_text(f'schema_version = 1\nid = "x"\nname = "n"\nvendor = "v"\n{line}\n')
    with pytest.raises(ProfileError, match=message):
        load_profile_file(path)


def test_shipped_modifies_messages_needs_a_source() -> None:
    from auditor.gateways import parse_profile

    data = {"schema_version": 1, "id": "x", "name": "n", "vendor": "v", "modifies_messages": True}
    with pytest.raises(ProfileError, match=r"modifies_messages has no \[sources.modifies_messages\]"):
        parse_profile(data, "builtin:x.toml", strict=True)


def _mx_store(domain: str, *hosts: str) -> EvidenceStore:
    records = [f"{10 * (i + 1)} {host}." for i, host in enumerate(hosts)]
    dd = DomainDns.build(domain, [answer(domain, "MX", DnsStatus.OK, *records)], f"dns/{domain}.json")
    return EvidenceStore({}, dns={domain: dd})


def test_one_resolver_judges_each_store_by_its_own_mx() -> None:
    """A resolver reused for many stores (bulk) remembers what each MX host names, never what
    another store had: each domain gets its own gateway and its own clues."""
    resolver = GatewayResolver(PROFILES)
    mimecast = find_profile(PROFILES, "mimecast").name
    stores = [_mx_store("a.example", "us-smtp-inbound-1.mimecast.com"),
              _mx_store("b.example", "mx.b.example"),
              _mx_store("c.example", "c-example.mail.protection.outlook.com"),
              _mx_store("d.example", "de-smtp-inbound-2.mimecast.com")]
    for _ in range(2):  # the second time from what the resolver remembered
        contexts = [resolver.resolve(store) for store in stores]
        assert [[p.id for p in c.active] for c in contexts] == [["mimecast"], [], [], ["mimecast"]]
        assert [[c.description for c in context.clues] for context in contexts] == [
            [f"MX of a.example is us-smtp-inbound-1.mimecast.com, a {mimecast} host"], [], [],
            [f"MX of d.example is de-smtp-inbound-2.mimecast.com, a {mimecast} host"]]
        assert [c.evidence.file for c in contexts[3].clues] == ["dns/d.example.json"]
        assert contexts[0].covers(IpRange.parse(mimecast_us_ranges()[0]))
        assert not contexts[1].covers(IpRange.parse(mimecast_us_ranges()[0]))
    for store in stores:
        reused, alone = resolver.resolve(store), resolve_gateway(store, PROFILES)
        assert (reused.mode, reused.active, reused.clues) == (alone.mode, alone.active, alone.clues)


def test_a_resolver_with_a_user_profile_or_a_forced_name_keeps_them() -> None:
    store = _mx_store("a.example", "us-smtp-inbound-1.mimecast.com")
    forced = GatewayResolver(PROFILES).resolve(store, forced="proofpoint-essentials")
    assert [p.id for p in forced.active] == ["proofpoint-essentials"] and forced.mode == "forced"
    assert [c.profile_id for c in forced.clues] == ["mimecast"]
    auto = GatewayResolver(PROFILES).resolve(store, forced="auto")
    assert [p.id for p in auto.active] == ["mimecast"] and auto.mode == "auto"
