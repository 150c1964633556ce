"""One audit: a snapshot, the gateway in front of it, the checks, and the report they make."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from . import __version__
from .context import AuditContext, AuditSettings
from .engine import Finding, PluginProblem, Registry, Severity, Status, run_checks
from .gateways import GatewayContext, GatewayProfile, builtin_profiles, resolve_gateway
from .snapshot import Snapshot

REPORT_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Report:
    """One audit of a snapshot: its findings, the gateway they were judged against, and any
    plugin that failed to load."""

    snapshot: Snapshot
    gateway: GatewayContext
    findings: tuple[Finding, ...]
    registry: Registry
    generated_at: datetime
    problems: tuple[PluginProblem, ...] = field(default=())

    @property
    def incomplete(self) -> bool:
        return any(f.status.is_incomplete for f in self.findings) or bool(self.problems)

    def worst(self, threshold: Severity) -> list[Finding]:
        """Findings (fail or warn) at or above ``threshold``."""
        return [f for f in self.findings
                if f.status.is_finding and f.severity.rank >= threshold.rank]

    def counts(self) -> dict[str, Any]:
        by_status = Counter(f.status.value for f in self.findings)
        by_severity = Counter(f.severity.value for f in self.findings if f.status.is_finding)
        return {
            "by_status": {s.value: by_status.get(s.value, 0) for s in Status},
            "by_severity": {s.value: by_severity.get(s.value, 0) for s in Severity},
        }

    def to_json(self) -> dict[str, Any]:
        """The JSON report (a contract: fields are only ever added)."""
        meta = {c.id: c.meta for c in self.registry.checks}
        snap = self.snapshot
        return {
            "schema_version": REPORT_SCHEMA_VERSION,
            "tool": {"name": "mailflow-auditor", "version": __version__},
            "generated_at": _iso(self.generated_at),
            "snapshot": {
                "id": snap.snapshot_id,
                "created_at": _iso(snap.created_at),
                "source": dict(snap.source),
                "tenant": dict(snap.tenant),
                "evidence": [
                    {"key": i.key, "path": i.path, "sha256": i.sha256, "state": i.state.value,
                     "error": i.error, "objects": i.objects, "rejected": i.rejected,
                     "warnings": list(i.warnings)}
                    for i in snap.items
                ],
                "extra": [{"path": e.path, "sha256": e.sha256} for e in snap.extras],
            },
            "gateway": _gateway_json(self.gateway),
            "summary": self.counts(),
            "problems": [{"source": p.source, "message": p.message} for p in self.problems],
            "findings": [finding_json(f, meta.get(f.check_id)) for f in self.findings],
        }


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _profile_json(profile: GatewayProfile) -> dict[str, Any]:
    return {
        "id": profile.id,
        "name": profile.name,
        "origin": profile.origin,
        "ranges": [
            {"region": g.region, "cidrs": [r.text for r in g.ranges], "source": g.provenance.url,
             "as_of": g.provenance.as_of.isoformat() if g.provenance.as_of else None}
            for g in profile.range_groups
        ],
    }


def _gateway_json(gateway: GatewayContext) -> dict[str, Any]:
    return {
        "mode": gateway.mode,
        "active": [_profile_json(p) for p in gateway.active],
        "clues": [
            {"profile": c.profile_id, "strength": c.strength, "description": c.description,
             "evidence": _ref_json(c.evidence)}
            for c in gateway.clues
        ],
    }


def _ref_json(ref: Any) -> dict[str, Any]:
    return {"source": ref.file, "pointer": ref.pointer, "property": ref.property,
            "observed": ref.observed, "note": ref.note}


def finding_json(finding: Finding, meta: Any) -> dict[str, Any]:
    """One finding in the JSON contract (shared by the tenant and the bulk reports)."""
    return {
        "check_id": finding.check_id,
        "title": finding.title,
        "severity": finding.severity.value,
        "status": finding.status.value,
        "resource": finding.resource,
        "message": finding.message,
        "evidence": [_ref_json(e) for e in finding.evidence],
        "remediation": ({"text": meta.remediation.text, "powershell": meta.remediation.powershell}
                        if meta else None),
        "references": [{"title": r.title, "url": r.url} for r in meta.references] if meta else [],
        "mappings": ({"attack": list(meta.mappings.attack), "cis": list(meta.mappings.cis),
                      "scuba": list(meta.mappings.scuba)} if meta else {}),
        "fingerprint": finding.fingerprint,
        "fix": finding.fix or None,
        "related": list(finding.related),
        "verdict": finding.verdict or None,
    }


def run_audit(
    snapshot: Snapshot,
    registry: Registry,
    *,
    gateway: str | None = None,
    user_profile: GatewayProfile | None = None,
    profiles: tuple[GatewayProfile, ...] | None = None,
    debug: bool = False,
    settings: AuditSettings | None = None,
) -> Report:
    """Resolve the gateway, run every registered check, and collect the report."""
    known = profiles if profiles is not None else builtin_profiles()
    context = AuditContext(
        evidence=snapshot.evidence,
        gateway=resolve_gateway(snapshot.evidence, known, forced=gateway, user_profile=user_profile),
        as_of=snapshot.created_at,
        settings=settings or AuditSettings(),
    )
    findings = run_checks(registry.checks, context, debug=debug)
    return Report(
        snapshot=snapshot,
        gateway=context.gateway,
        findings=tuple(findings),
        registry=registry,
        generated_at=datetime.now(UTC),
        problems=registry.problems,
    )
