"""Time the demo audit and an audit of a large synthetic tenant.

    python benchmarks/audit_synthetic.py [--rules 300] [--connectors 50] [--domains 5000] [--repeat 5]

The synthetic tenant is written as an export folder (300 transport rules, 50 inbound and
outbound connectors, 5,000 accepted domains by default) and audited end to end: read and
parse, detect the gateway, run every check, render JSON, Markdown and HTML. Each phase's
median over the repeats is printed. Issue #2 names no peer tool, so only our figures print.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from auditor.audit import Report, run_audit
from auditor.cli import demo_folder
from auditor.engine import discover
from auditor.gateways import builtin_profiles, find_profile
from auditor.snapshot import open_source
from reports.render import render


def mimecast_ranges() -> list[str]:
    profile = find_profile(builtin_profiles(), "mimecast")
    return [r.text for g in profile.range_groups if g.region == "us" for r in g.ranges]


def synthetic_export(folder: Path, rules: int, connectors: int, domains: int) -> None:
    gateway = mimecast_ranges()
    names = [f"client{i:05d}.example" for i in range(domains)]
    accepted = [{"DomainName": n, "DomainType": "Authoritative", "Default": i == 0,
                 "InitialDomain": False, "MatchSubDomains": i % 10 == 0}
                for i, n in enumerate(names)]
    inbound = []
    for i in range(connectors):
        inbound.append({
            "Name": f"Inbound {i}", "Enabled": i % 7 != 0, "ConnectorType": "Partner",
            "SenderDomains": ["smtp:*;1"] if i % 3 == 0 else [f"smtp:partner{i}.example;1"],
            "SenderIPAddresses": gateway if i % 2 == 0 else [f"192.0.2.{i}"],
            "RestrictDomainsToIPAddresses": i % 4 == 0, "RestrictDomainsToCertificate": False,
            "AssociatedAcceptedDomains": names[i * 50:(i + 1) * 50] if i % 5 == 1 else [],
            "TlsSenderCertificateName": "*.mimecast.com" if i % 6 == 0 else None,
            "WhenChanged": "2025-06-01T10:00:00Z",
        })
    outbound = [{"Name": f"Outbound {i}", "Enabled": True,
                 "SmartHosts": ["us-smtp-o365-outbound-1.mimecast.com" if i % 2 else f"relay{i}.example"],
                 "RecipientDomains": ["*"], "IsTransportRuleScoped": i % 2 == 0}
                for i in range(connectors)]
    transport = []
    for i in range(rules):
        rule: dict[str, Any] = {"Name": f"Rule {i}", "Priority": i,
                                "State": "Disabled" if i % 11 == 0 else "Enabled",
                                "Mode": "Audit" if i % 13 == 0 else "Enforce"}
        kind = i % 5
        if kind == 0:
            rule.update(SenderIpRanges=gateway, SetSCL="-1",
                        Conditions=["Microsoft.Exchange.MessagingPolicies.Rules.Tasks.SenderIpRangesPredicate"])
        elif kind == 1:
            rule.update(SenderDomainIs=[names[i % domains]], SetSCL=-1,
                        Conditions=["Microsoft.Exchange.MessagingPolicies.Rules.Tasks.SenderDomainIsPredicate"])
        elif kind == 2:
            rule.update(FromMemberOf=[f"group{i}@{names[0]}"], BlindCopyTo=[f"archive{i}@records.example"],
                        Conditions=["Microsoft.Exchange.MessagingPolicies.Rules.Tasks.FromMemberOfPredicate"])
        elif kind == 3:
            rule.update(FromScope="NotInOrganization", RejectMessageReasonText="Use the gateway",
                        ExceptIfSenderIpRanges=gateway,
                        Conditions=["Microsoft.Exchange.MessagingPolicies.Rules.Tasks.FromScopePredicate"])
        else:
            rule.update(SubjectContainsWords=["invoice"], SetHeaderName="X-Tag", SetHeaderValue="1",
                        Conditions=["Microsoft.Exchange.MessagingPolicies.Rules.Tasks.SubjectContainsPredicate"])
        transport.append(rule)
    files = {
        "Get-AcceptedDomain": accepted,
        "Get-InboundConnector": inbound,
        "Get-OutboundConnector": outbound,
        "Get-TransportRule": transport,
        "Get-OrganizationConfig": {"Name": "synthetic.onmicrosoft.com", "RejectDirectSend": False},
        "Get-HostedConnectionFilterPolicy": [
            {"Name": "Default", "IPAllowList": [*gateway[:3], "10.0.0.0/8"]}],
    }
    for key, value in files.items():
        (folder / f"{key}.json").write_text(json.dumps(value), encoding="utf-8")


def timed(repeat: int, func: Callable[[], Any]) -> tuple[float, Any]:
    samples, value = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        value = func()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples), value


def measure(label: str, path: Path, repeat: int) -> None:
    registry = discover()
    load_s, snapshot = timed(repeat, lambda: open_source(path))
    audit_s, report = timed(repeat, lambda: run_audit(snapshot, registry))
    assert isinstance(report, Report)
    data = report.to_json()
    render_s, _ = timed(repeat, lambda: [render(data, f) for f in ("json", "md", "html")])
    total = load_s + audit_s + render_s
    print(f"{label}: {len(report.findings)} findings; read+parse {load_s * 1000:.1f} ms, "
          f"checks {audit_s * 1000:.1f} ms, render json+md+html {render_s * 1000:.1f} ms, "
          f"total {total * 1000:.1f} ms (median of {repeat})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=300)
    parser.add_argument("--connectors", type=int, default=50)
    parser.add_argument("--domains", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    measure("demo tenant", demo_folder(), args.repeat)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        synthetic_export(folder, args.rules, args.connectors, args.domains)
        measure(f"synthetic tenant ({args.rules} rules, {args.connectors} connectors, "
                f"{args.domains} domains)", folder, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
