"""analyse() (the static SPF audit) and check_host() cases the RFC 7208 suite does not cover."""

from __future__ import annotations

import time

import pytest

from auditor.dnsmodel import DnsAnswer, DnsQuery, DnsStatus, answer, txt_record
from auditor.spf import SpfResult, SpfTree, analyse, check_host, resolve, resolve_async


class FakeDns:
    """name -> {type: [rdata]}; records the queries asked. A type mapped to None times out."""

    def __init__(self, zone: dict[str, dict[str, list[str] | None]]) -> None:
        self.zone = {name.lower(): rrsets for name, rrsets in zone.items()}
        self.asked: list[DnsQuery] = []

    def __call__(self, query: DnsQuery) -> DnsAnswer:
        self.asked.append(query)
        rrsets = self.zone.get(query.name)
        if rrsets is None:
            return answer(query.name, query.rdtype, DnsStatus.NXDOMAIN)
        records = rrsets.get(query.rdtype, [])
        if records is None:
            return answer(query.name, query.rdtype, DnsStatus.TIMEOUT)
        return answer(query.name, query.rdtype, DnsStatus.OK if records else DnsStatus.NODATA, *records)


def spf(*strings: str | bytes) -> dict[str, list[str] | None]:
    return {"TXT": [txt_record(*strings)]}


def run_analyse(zone: dict[str, dict[str, list[str] | None]], domain: str = "example.com") -> SpfTree:
    return resolve(analyse(domain), FakeDns(zone))


def messages(tree: SpfTree, severity: str | None = None) -> str:
    return "\n".join(p.message for p in tree.problems if severity is None or p.severity == severity)


# --------------------------------------------------------------------------------------------
# analyse()


def test_networks_keep_the_walks_order_and_runs_of_a_shared_include_share_their_terms() -> None:
    """Networks come in the order the walk meets them (an include's between the terms around
    it); a record read for two trees gives both the same terms, each with its own chain."""
    zone = {
        "a.example": spf("v=spf1 ip4:192.0.2.1 ip4:192.0.2.2 include:shared.example ip6:2001:db8::/32 -all"),
        "b.example": spf("v=spf1 include:shared.example -all"),
        "shared.example": spf("v=spf1 ip4:198.51.100.0/24 ?ip4:203.0.113.0/24 ~all"),
    }
    first, second = run_analyse(zone, "a.example"), run_analyse(zone, "b.example")
    assert [(n.network, n.qualifier, n.chain) for n in first.networks] == [
        ("192.0.2.1/32", "+", ("a.example",)), ("192.0.2.2/32", "+", ("a.example",)),
        ("198.51.100.0/24", "+", ("a.example", "shared.example")),
        ("203.0.113.0/24", "?", ("a.example", "shared.example")),
        ("2001:db8::/32", "+", ("a.example",))]
    assert [len(run.terms) for run in first.network_runs] == [2, 2, 1]
    assert first.network_runs[1].terms is second.network_runs[0].terms
    assert second.network_runs[0].chain == ("b.example", "shared.example")


def test_simple_tree_collects_networks_targets_and_all() -> None:
    tree = run_analyse({
        "example.com": {"TXT": [txt_record("v=spf1 ip4:192.0.2.0/24 include:_spf.example.net mx -all")],
                        "MX": ["10 mail.example.com."]},
        "_spf.example.net": spf("v=spf1 ip6:2001:db8::/32 ~all"),
    })
    assert tree.result == "ok", tree.problems
    assert (tree.all_term, tree.all_qualifier, tree.all_domain) == ("-all", "-", "example.com")
    assert tree.lookups == 2 and tree.void_lookups == 0
    nets = {(n.network, n.chain) for n in tree.networks}
    assert nets == {("192.0.2.0/24", ("example.com",)),
                    ("2001:db8::/32", ("example.com", "_spf.example.net"))}
    assert {(t.kind, t.target) for t in tree.targets} == {("include", "_spf.example.net"),
                                                          ("mx", "example.com")}
    assert tree.address_targets == ("mail.example.com",)  # what a collector must also fetch


def test_include_loop_is_permerror_with_the_loop_named() -> None:
    tree = run_analyse({
        "example.com": spf("v=spf1 include:a.example.net -all"),
        "a.example.net": spf("v=spf1 include:b.example.net ~all"),
        "b.example.net": spf("v=spf1 include:a.example.net ~all"),
    })
    assert tree.result == "permerror"
    loop = next(p for p in tree.problems if "loop" in p.message)
    assert "a.example.net -> b.example.net -> a.example.net" in loop.message
    assert loop.chain == ("example.com", "a.example.net", "b.example.net")


def test_eleven_lookups_across_nested_includes() -> None:
    zone = {
        "example.com": spf("v=spf1 include:a.example.net include:b.example.net -all"),  # 2
        "a.example.net": spf("v=spf1 a:h1.example.net a:h2.example.net include:c.example.net ?all"),  # 3
        "b.example.net": spf("v=spf1 exists:h3.example.net a:h4.example.net ~all"),  # 2
        "c.example.net": spf(  # 4
            "v=spf1 a:h5.example.net a:h6.example.net a:h7.example.net a:h8.example.net"),
    }
    for i in range(1, 9):
        zone[f"h{i}.example.net"] = {"A": ["192.0.2.1"]}
    tree = run_analyse(zone)
    assert tree.lookups == 11
    assert tree.result == "permerror"
    assert "11 DNS-querying terms" in (tree.problem or "")
    # One fewer and the tree is fine.
    zone["c.example.net"] = spf("v=spf1 a:h5.example.net a:h6.example.net a:h7.example.net")
    tree = run_analyse(zone)
    assert (tree.lookups, tree.result) == (10, "ok")


def test_three_void_lookups() -> None:
    tree = run_analyse({
        "example.com": spf("v=spf1 a:gone1.example.com mx:gone2.example.com a:gone3.example.com -all"),
    })
    assert tree.void_lookups == 3
    assert tree.result == "permerror"
    assert "3 void lookups" in (tree.problem or "")


def test_two_spf_records() -> None:
    tree = run_analyse({"example.com": {"TXT": [txt_record("v=spf1 -all"), txt_record("v=spf1 mx -all")]}})
    assert tree.result == "permerror"
    assert "2 SPF records" in (tree.problem or "")


@pytest.mark.parametrize(("record", "qualifier", "needle"), [
    ("v=spf1 ip4:192.0.2.0/24 +all", "+", "every host"),
    ("v=spf1 ip4:192.0.2.0/24 ?all", "?", "neutral"),
])
def test_permissive_all_is_reported(record: str, qualifier: str, needle: str) -> None:
    tree = run_analyse({"example.com": spf(record)})
    assert tree.result == "ok"
    assert tree.all_qualifier == qualifier
    assert needle in messages(tree, "warning")


def test_redirect_chain_gives_the_final_all() -> None:
    tree = run_analyse({
        "example.com": spf("v=spf1 ip4:192.0.2.0/24 redirect=r1.example.net"),
        "r1.example.net": spf("v=spf1 redirect=r2.example.net"),
        "r2.example.net": spf("v=spf1 ip4:198.51.100.0/24 -all"),
    })
    assert tree.result == "ok", tree.problems
    assert (tree.all_term, tree.all_domain) == ("-all", "r2.example.net")
    assert tree.lookups == 2
    assert [t.target for t in tree.targets if t.kind == "redirect"] == ["r1.example.net", "r2.example.net"]
    assert ("198.51.100.0/24", ("example.com", "r1.example.net", "r2.example.net")) in {
        (n.network, n.chain) for n in tree.networks}


def test_redirect_ignored_next_to_all() -> None:
    tree = run_analyse({"example.com": spf("v=spf1 redirect=other.example.net ~all")})
    assert tree.lookups == 0
    assert "ignored" in messages(tree, "warning")


def _long_record() -> tuple[str, list[str]]:
    terms = [f"ip4:198.51.{i // 250}.{i % 250}" for i in range(250)]
    record = "v=spf1 " + " ".join(terms) + " -all"
    assert len(record) > 4000
    return record, [record[i : i + 255] for i in range(0, len(record), 255)]


def test_4000_byte_record_split_in_strings() -> None:
    record, strings = _long_record()
    assert len(strings) > 15
    tree = run_analyse({"example.com": spf(*strings)})
    assert tree.result == "ok", tree.problems
    assert tree.record == record
    assert len(tree.networks) == 250
    assert "bytes" in messages(tree, "warning")  # 3.4: too large for a 512-byte answer


def test_strings_glued_without_space_are_explained() -> None:
    tree = run_analyse({"example.com": spf("v=spf1 ip4:192.0.2.1", "include:_spf.example.net -all"),
                        "_spf.example.net": spf("v=spf1 -all")})
    assert tree.result == "permerror"
    assert "joined without a space" in (tree.problem or "")


def test_record_published_in_separate_txt_records() -> None:
    tree = run_analyse({"example.com": {"TXT": [txt_record("v=spf1 ip4:192.0.2.1"),
                                                txt_record("include:_spf.example.net -all")]}})
    assert "separate record" in messages(tree, "warning")


def test_fifty_deep_include_chain_is_bounded() -> None:
    zone = {f"l{i}.example.net": spf(f"v=spf1 include:l{i + 1}.example.net -all") for i in range(50)}
    zone["l50.example.net"] = spf("v=spf1 -all")
    zone["example.com"] = spf("v=spf1 include:l0.example.net -all")
    dns = FakeDns(zone)
    started = time.perf_counter()
    tree = resolve(analyse("example.com"), dns)
    assert time.perf_counter() - started < 1.0
    assert tree.result == "permerror"
    assert len(dns.asked) <= 15
    assert "deeper than 10" in messages(tree, "permerror")


def test_non_ascii_record() -> None:
    tree = run_analyse({"example.com": spf("v=spf1 a:\u00efgarbage.example.net -all".encode())})
    assert tree.result == "permerror"
    assert "non-ASCII" in (tree.problem or "")


def test_no_record_and_temporary_failure() -> None:
    assert run_analyse({"example.com": {"TXT": [txt_record("hello")]}}).result == "none"
    assert run_analyse({"example.com": {"TXT": None}}).result == "temperror"
    assert run_analyse({}, "[192.0.2.1]").result == "none"


def test_include_of_domain_without_spf() -> None:
    tree = run_analyse({"example.com": spf("v=spf1 include:nothing.example.net -all")})
    assert tree.result == "permerror"
    problem = next(p for p in tree.problems if p.severity == "permerror")
    assert problem.chain == ("example.com", "nothing.example.net")


def test_message_dependent_targets_are_not_resolved() -> None:
    dns = FakeDns({"example.com": spf("v=spf1 exists:%{ir}.%{l1r-}._spf.%{d} a:%{d2} ptr -all")})
    tree = resolve(analyse("example.com"), dns)
    kinds = {(t.kind, t.target) for t in tree.targets}
    assert ("macro", "%{ir}.%{l1r-}._spf.%{d}") in kinds
    assert ("a", "example.com") in kinds  # %{d2} needs only the domain
    assert ("ptr", "example.com") in kinds
    assert all("%" not in q.name for q in dns.asked)
    assert tree.lookups == 3


# --------------------------------------------------------------------------------------------
# check_host() beyond the suite


def check(zone: dict[str, dict[str, list[str] | None]], ip: str, sender: str = "user@example.com",
          receiver: str = "unknown", now: int | None = None) -> tuple[SpfResult, FakeDns]:
    dns = FakeDns(zone)
    domain = sender.rpartition("@")[2]
    return resolve(check_host(ip, domain, sender, receiver=receiver, now=now), dns), dns


IPV6_ZONE: dict[str, dict[str, list[str] | None]] = {
    "example.com": {"TXT": [txt_record(
        "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8:1::/48 a:mail.example.com//64 -all")]},
    "mail.example.com": {"A": ["198.51.100.7"], "AAAA": ["2001:db8:2::25"]},
}


@pytest.mark.parametrize(("ip", "result", "mechanism"), [
    ("2001:db8:1:ffff::1", "pass", "ip6:2001:db8:1::/48"),
    ("2001:db8:2::1234", "pass", "a:mail.example.com//64"),  # AAAA with the ip6 CIDR length
    ("2001:db8:3::1", "fail", "-all"),
    ("::ffff:192.0.2.9", "pass", "ip4:192.0.2.0/24"),  # IPv4-mapped counts as IPv4 (5)
    ("198.51.100.7", "pass", "a:mail.example.com//64"),  # IPv4 keeps the default /32
    ("198.51.100.8", "fail", "-all"),
])
def test_ipv6_sender(ip: str, result: str, mechanism: str) -> None:
    outcome, dns = check(IPV6_ZONE, ip)
    assert (outcome.result, outcome.mechanism) == (result, mechanism), outcome.trace
    rdtypes = {q.rdtype for q in dns.asked if q.name == "mail.example.com"}
    assert rdtypes <= ({"AAAA"} if ":" in ip and not ip.startswith("::ffff:") else {"A"})


def test_macros_in_exists_ipv4_and_ipv6() -> None:
    record = "v=spf1 exists:%{ir}.%{l1+-}.%{v}._spf.%{d2} -all"
    zone = {
        "example.com": {"TXT": [txt_record(record)]},
        "9.2.0.192.jack.in-addr._spf.example.com": {"A": ["127.0.0.2"]},
    }
    outcome, dns = check(zone, "192.0.2.9", "jill+jack@example.com")
    assert outcome.result == "pass", outcome.trace
    assert DnsQuery.of("9.2.0.192.jack.in-addr._spf.example.com", "A") in dns.asked
    outcome, dns = check(zone, "2001:db8::1", "jill-jack@example.com")
    assert outcome.result == "fail"
    nibbles = "1." + "0." * 23 + "8.b.d.0.1.0.0.2"
    assert DnsQuery.of(f"{nibbles}.jack.ip6._spf.example.com", "A") in dns.asked


def test_explanation_with_macros_and_exp_only_letters() -> None:
    zone = {
        "example.com": {"TXT": [txt_record("v=spf1 -all exp=why.%{d}")]},
        "why.example.com": {"TXT": [txt_record("%{c} may not send for %{o} at %{t} (seen by %{r})")]},
    }
    outcome, _ = check(zone, "2001:db8::1", receiver="mx.example.org", now=1700000000)
    assert outcome.explanation == (
        "2001:db8::1 may not send for example.com at 1700000000 (seen by mx.example.org)")


def test_errors_name_the_include_chain() -> None:
    zone = {
        "example.com": {"TXT": [txt_record("v=spf1 include:a.example.net -all")]},
        "a.example.net": {"TXT": [txt_record("v=spf1 include:b.example.net ~all")]},
        "b.example.net": {"TXT": [txt_record("v=spf1 a:broken.example.net ~all")]},
        "broken.example.net": {"A": None},
    }
    outcome, _ = check(zone, "192.0.2.1")
    assert outcome.result == "temperror"
    chain = "example.com include:a.example.net -> a.example.net include:b.example.net"
    assert chain in (outcome.problem or "")
    assert any("b.example.net" in step for step in outcome.trace)
    assert outcome.lookups == 3


def test_generator_protocol_and_async_driver() -> None:
    gen = check_host("192.0.2.1", "example.com", "a@example.com")
    first = next(gen)
    assert first == DnsQuery.of("example.com", "TXT")
    with pytest.raises(StopIteration) as stop:
        gen.send(answer("example.com", "TXT", DnsStatus.OK, txt_record("v=spf1 ip4:192.0.2.1 -all")))
    assert stop.value.value.result == "pass"


async def test_resolve_async() -> None:
    dns = FakeDns({"example.com": {"TXT": [txt_record("v=spf1 mx -all")], "MX": ["0 mx.example.com."]},
                   "mx.example.com": {"A": ["192.0.2.25"]}})

    async def lookup(query: DnsQuery) -> DnsAnswer:
        return dns(query)

    outcome = await resolve_async(check_host("192.0.2.25", "example.com", "a@example.com"), lookup)
    assert (outcome.result, outcome.mechanism, outcome.lookups) == ("pass", "mx", 1)
    tree = await resolve_async(analyse("example.com"), lookup)
    assert tree.result == "ok"


def _never_called(query: DnsQuery) -> DnsAnswer:  # pragma: no cover
    raise AssertionError(query)


def test_invalid_domain_needs_no_dns() -> None:
    outcome = resolve(check_host("192.0.2.1", "localhost", "user@localhost"), _never_called)
    assert outcome.result == "none"


def test_a_record_shared_by_several_trees_tells_each_its_own_chain() -> None:
    """A record is read once per distinct answer (domains share includes), but each tree that
    includes it gets its problems and networks with its own chain, and its own via-dependent
    problems (an include of a name without SPF; +all reached through an include)."""
    shared = "v=spf1 ip4:192.0.2.1 badterm +all " + "ip4:198.51.100.1 " * 30
    zone = {
        "a.example": spf("v=spf1 include:shared.example -all"),
        "b.example": spf("v=spf1 include:mid.example -all"),
        "mid.example": spf("v=spf1 include:shared.example include:nospf.example ~all"),
        "shared.example": spf(*(shared[i:i + 200] for i in range(0, len(shared), 200))),
        "nospf.example": {"TXT": [txt_record("not spf")]},
    }
    trees = {name: run_analyse(zone, name) for name in ("a.example", "b.example", "a.example")}
    chains = {name: {p.chain for p in tree.problems if "shared.example" in p.message}
              for name, tree in trees.items()}
    assert chains == {"a.example": {("a.example", "shared.example")},
                      "b.example": {("b.example", "mid.example", "shared.example")}}
    assert "+all' makes a.example include:shared.example match every host" in messages(trees["a.example"])
    assert "mid.example include:shared.example match every host" in messages(trees["b.example"])
    assert "mid.example include:nospf.example: nospf.example has no SPF record" in messages(
        trees["b.example"], "permerror")
    assert {n.chain for n in trees["b.example"].networks if n.network == "192.0.2.1/32"} == {
        ("b.example", "mid.example", "shared.example")}
    assert messages(trees["a.example"]).count("badterm") == 1
