"""The tenant corpus: realistic export folders, each with the exact findings the audit must make.

Each ``tests/corpus/<tenant>/`` is an export folder (``Get-*.json``, ``export.json``, recorded
DNS under ``dns/``) with a README saying what is planted and what is legitimate, and
``expected.json``: the sorted ``[check_id, status, resource]`` triples of the audit. An optional
``options.json`` holds what the auditor would be told on the command line:
``{"gateway": NAME, "gateway_file": FILE, "changed_within": DAYS}`` (FILE relative to the tenant).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any

from auditor.audit import Report, run_audit
from auditor.context import AuditSettings
from auditor.engine import Registry, discover
from auditor.gateways import load_profile_file
from auditor.snapshot import open_source

CORPUS = Path(__file__).resolve().parent
EXPECTED = "expected.json"
OPTIONS = "options.json"
OPTION_KEYS = {"gateway", "gateway_file", "changed_within"}

Triple = tuple[str, str, str]


def tenant_folders(names: Iterable[str] = ()) -> list[Path]:
    """Every tenant folder (one with an export.json), or only the ones named."""
    wanted = set(names)
    folders = sorted(p for p in CORPUS.iterdir() if (p / "export.json").is_file())
    unknown = wanted - {p.name for p in folders}
    if unknown:
        raise SystemExit(f"no such tenant: {', '.join(sorted(unknown))}")
    return [p for p in folders if not wanted or p.name in wanted]


def options(folder: Path) -> dict[str, Any]:
    path = folder / OPTIONS
    if not path.is_file():
        return {}
    found = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(found, dict) or set(found) - OPTION_KEYS:
        raise ValueError(f"{path}: only {sorted(OPTION_KEYS)} are understood")
    return found


def audit_tenant(folder: Path, registry: Registry | None = None) -> Report:
    """Audit one tenant offline (its recorded DNS), as ``mailflow-audit audit FOLDER`` would."""
    chosen = options(folder)
    profile = load_profile_file(folder / chosen["gateway_file"]) if "gateway_file" in chosen else None
    settings = AuditSettings(changed_within=timedelta(days=int(chosen.get("changed_within", 30))))
    return run_audit(open_source(folder), registry or discover(), gateway=chosen.get("gateway"),
                     user_profile=profile, settings=settings)


def triples(report: Report) -> list[Triple]:
    return sorted({(f.check_id, f.status.value, f.resource) for f in report.findings})


def load_expected(folder: Path) -> list[Triple] | None:
    path = folder / EXPECTED
    if not path.is_file():
        return None
    return sorted(tuple(item) for item in json.loads(path.read_text(encoding="utf-8")))  # type: ignore[misc]


def dump_expected(found: Iterable[Triple]) -> str:
    """One triple per line, sorted, so that a diff of the file reads as a diff of findings."""
    lines = [json.dumps(list(t), ensure_ascii=False) for t in sorted(found)]
    return "[\n" + ",\n".join(f"  {line}" for line in lines) + "\n]\n"
