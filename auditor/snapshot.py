"""Snapshots: the evidence bundle on disk (a directory or a .zip), its manifest and hashes.

An export folder is turned into the same in-memory snapshot as a stored one, so ``audit``
reads both the same way, and ``import`` only adds writing it out.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from . import __version__
from .dnsevidence import DNS_DIR, DNS_KEY, DomainDns
from .errors import EvidenceError, InputError, SnapshotError
from .evidence import CATALOG, SPECS, Collection, EvidenceStore, State, parse_evidence, spec_for_filename

MANIFEST = "manifest.json"
EXPORT_MANIFEST = "export.json"  # written by the export script: when and from where it ran
SCHEMA_VERSION = 1
EXTRA_DIR = "extra"
DEFAULT_MAX_FILE_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class EvidenceItem:
    """One manifest entry: an evidence file, its hash and its state."""

    key: str
    state: State
    path: str | None = None
    sha256: str | None = None
    size: int | None = None
    source: str | None = None
    collected_at: str | None = None
    error: str | None = None
    objects: int | None = None
    rejected: int | None = None
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "path": self.path,
            "sha256": self.sha256,
            "size": self.size,
            "source": self.source,
            "collected_at": self.collected_at,
            "state": self.state.value,
            "error": self.error,
            "objects": self.objects,
            "rejected": self.rejected,
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EvidenceItem:
        if not isinstance(data, Mapping):
            raise SnapshotError(f"manifest evidence entry is not an object: {data!r}"[:300])
        for name in ("objects", "rejected", "size"):
            if data.get(name) is not None and not isinstance(data.get(name), int):
                raise SnapshotError(f"manifest evidence entry {name} is not a number")
        for name in ("path", "sha256", "error", "source", "collected_at"):
            if data.get(name) is not None and not isinstance(data.get(name), str):
                raise SnapshotError(f"manifest evidence entry {name} is not text")
        try:
            return cls(
                key=str(data["key"]),
                state=State(data["state"]),
                path=data.get("path"),
                sha256=data.get("sha256"),
                size=data.get("size"),
                source=data.get("source"),
                collected_at=data.get("collected_at"),
                error=data.get("error"),
                objects=data.get("objects"),
                rejected=data.get("rejected"),
                warnings=tuple(data.get("warnings") or ()),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise SnapshotError(f"manifest evidence entry is malformed: {exc}") from None


@dataclass(frozen=True, slots=True)
class ExtraFile:
    """A file that is not catalogued evidence: kept and listed, never an error."""

    path: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Snapshot:
    """One snapshot in memory: manifest facts, raw bytes by path, and the parsed evidence."""

    created_at: datetime
    source: Mapping[str, Any]
    items: tuple[EvidenceItem, ...]
    extras: tuple[ExtraFile, ...]
    evidence: EvidenceStore
    # Snapshot path -> contents, or the file to copy them from (files too large to hold).
    blobs: Mapping[str, bytes | Path] = field(repr=False, default_factory=dict)
    tenant: Mapping[str, Any] = field(default_factory=dict)
    tool_version: str = __version__

    @property
    def snapshot_id(self) -> str:
        """A digest of every stored file's path and hash: the same evidence, the same id."""
        pairs = sorted(
            [(i.path, i.sha256) for i in self.items if i.path and i.sha256]
            + [(e.path, e.sha256) for e in self.extras]
        )
        return hashlib.sha256(json.dumps(pairs).encode()).hexdigest()

    def manifest(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "tool": {"name": "mailflow-auditor", "version": self.tool_version},
            "created_at": _iso(self.created_at),
            "snapshot_id": self.snapshot_id,
            "tenant": dict(self.tenant),
            "source": dict(self.source),
            "evidence": [item.to_json() for item in self.items],
            "dns_reason": None if self.evidence.dns else self.evidence.dns_reason,
            "extra": [{"path": e.path, "sha256": e.sha256, "size": e.size} for e in self.extras],
        }
        body["digest"] = manifest_digest(body)
        return body


def manifest_digest(manifest: Mapping[str, Any]) -> str:
    """sha256 of the manifest's canonical JSON without its own digest field."""
    body = {k: v for k, v in manifest.items() if k != "digest"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _digest(data: bytes | Path) -> str:
    """sha256 of contents held in memory or streamed from a file."""
    if isinstance(data, bytes):
        return _sha256(data)
    digest = hashlib.sha256()
    with data.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _tenant_facts(evidence: EvidenceStore) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    for org in evidence.usable("Get-OrganizationConfig"):
        facts["organization"] = getattr(org, "Name", None)
        facts["display_name"] = getattr(org, "DisplayName", None)
        break
    for domain in evidence.usable("Get-AcceptedDomain"):
        if getattr(domain, "InitialDomain", False):
            facts["initial_domain"] = getattr(domain, "DomainName", None)
    return facts


def _item_for(key: str, collection: Collection[Any], data: bytes, path: str, source: str,
              collected_at: str | None) -> EvidenceItem:
    return EvidenceItem(
        key=key,
        state=collection.state,
        path=path,
        sha256=_sha256(data),
        size=len(data),
        source=source,
        collected_at=collected_at,
        error=collection.reason,
        objects=len(collection.items) if collection.state.usable else None,
        rejected=len(collection.rejected) if collection.state.usable else None,
        warnings=collection.warnings,
    )


def import_export_folder(folder: Path, *, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> Snapshot:
    """Read an export folder (one ``<Cmdlet>.json`` per cmdlet) into a snapshot in memory."""
    if not folder.exists():
        raise InputError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder (expected an export folder or a snapshot)")
    blobs: dict[str, bytes | Path] = {}
    collections: dict[str, Collection[Any]] = {}
    items: dict[str, EvidenceItem] = {}
    extras: list[ExtraFile] = []
    dns_items: list[EvidenceItem] = []
    dns: dict[str, DomainDns] = {}
    newest: float | None = None
    for entry in sorted(folder.rglob("*")):
        if not entry.is_file():
            continue
        relative = entry.relative_to(folder).as_posix()
        stat = entry.stat()
        newest = stat.st_mtime if newest is None else max(newest, stat.st_mtime)
        spec = spec_for_filename(entry.name) if "/" not in relative else None
        collected = _iso(datetime.fromtimestamp(stat.st_mtime, tz=UTC))
        if (relative.startswith(f"{DNS_DIR}/") and relative.count("/") == 1
                and relative.endswith(".json") and stat.st_size <= max_file_bytes):
            data = entry.read_bytes()
            blobs[relative] = data
            item, recorded = _dns_item(relative, data, f"export folder file {relative}")
            dns_items.append(item)
            if recorded is not None:
                dns[recorded.domain] = recorded
            continue
        if spec is not None and spec.key in collections:
            raise InputError(f"{folder}: two files hold {spec.filename} (names differ only in case)")
        if spec is None:
            path = f"{EXTRA_DIR}/{relative}"
            data_or_path: bytes | Path = entry if stat.st_size > max_file_bytes else entry.read_bytes()
            blobs[path] = data_or_path
            extras.append(ExtraFile(path=path, sha256=_digest(data_or_path), size=stat.st_size))
            continue
        if stat.st_size > max_file_bytes:
            reason = (f"{stat.st_size} bytes is above the {max_file_bytes}-byte limit, so it was "
                      "kept but not read (raise the limit with --max-file-size, or export fewer "
                      "properties)")
            collections[spec.key] = Collection(key=spec.key, state=State.ERROR, reason=reason)
            blobs[spec.path] = entry
            items[spec.key] = EvidenceItem(
                key=spec.key, state=State.ERROR, path=spec.path, sha256=_digest(entry),
                size=stat.st_size, source=f"export folder file {relative}", collected_at=collected,
                error=reason)
            continue
        data = entry.read_bytes()
        collection = parse_evidence(spec, data)
        collections[spec.key] = collection
        blobs[spec.path] = data
        items[spec.key] = _item_for(spec.key, collection, data, spec.path,
                                    f"export folder file {relative}", collected)
    if not items and not extras and not dns_items:
        raise InputError(f"{folder}: the folder is empty")
    export_manifest = blobs.get(f"{EXTRA_DIR}/{EXPORT_MANIFEST}")
    export_data = export_manifest if isinstance(export_manifest, bytes) else None
    if not items and not _export_statuses(export_data):
        raise InputError(
            f"{folder}: no export file found (expected files such as Get-TransportRule.json)"
        )
    exported_at = _export_time(export_data)
    if exported_at is not None:
        stamp = _iso(exported_at)
        items = {key: replace(item, collected_at=stamp) if item.path else item
                 for key, item in items.items()}
    for key, (state, reason) in _export_statuses(export_data).items():
        item, collection = _apply_status(key, state, reason, items.get(key), collections.get(key))
        items[key], collections[key] = item, collection
        if exported_at is not None and item.collected_at is None:
            items[key] = replace(item, collected_at=_iso(exported_at))
    for spec in CATALOG:
        if spec.key not in items:
            reason = f"{spec.filename} is not in the export folder"
            items[spec.key] = EvidenceItem(key=spec.key, state=State.MISSING, error=reason)
            collections[spec.key] = Collection(key=spec.key, state=State.MISSING, reason=reason)
    evidence = EvidenceStore(collections, dns=dns)
    created = exported_at or datetime.fromtimestamp(newest or 0, tz=UTC)
    return Snapshot(
        created_at=created,
        source={"kind": "export-folder", "name": folder.resolve().name},
        items=tuple(items[spec.key] for spec in CATALOG) + tuple(dns_items),
        extras=tuple(extras),
        evidence=evidence,
        blobs=blobs,
        tenant=_tenant_facts(evidence),
    )


def _dns_item(path: str, data: bytes, source: str) -> tuple[EvidenceItem, DomainDns | None]:
    """The manifest entry of a recorded DNS file, and its answers when it can be read."""
    try:
        recorded = DomainDns.from_bytes(data, path)
    except EvidenceError as exc:
        key = f"{DNS_KEY}:{PurePosixPath(path).stem}"
        return EvidenceItem(key=key, state=State.ERROR, path=path, sha256=_sha256(data),
                            size=len(data), source=source, error=exc.reason), None
    failed = sum(1 for a in recorded.answers if a.status.temporary)
    warnings = (f"{failed} lookup(s) failed (timeout, SERVFAIL or error)",) if failed else ()
    return EvidenceItem(key=f"{DNS_KEY}:{recorded.domain}", state=State.OK, path=path,
                        sha256=_sha256(data), size=len(data), source=source,
                        collected_at=recorded.collected_at, objects=len(recorded.answers),
                        rejected=0, warnings=warnings), recorded


def with_dns(snapshot: Snapshot, recorded: Iterable[DomainDns], *, reason: str | None = None) -> Snapshot:
    """The snapshot with freshly collected DNS evidence added (or why there is none)."""
    blobs = dict(snapshot.blobs)
    items = list(snapshot.items)
    dns = dict(snapshot.evidence.dns)
    for domain in recorded:
        data = domain.to_bytes()
        blobs[domain.file] = data
        item, parsed = _dns_item(domain.file, data, "live DNS lookups")
        items = [i for i in items if i.key != item.key] + [item]
        if parsed is not None:
            dns[parsed.domain] = parsed
    evidence = replace(snapshot.evidence, dns=dns,
                       dns_reason=reason or snapshot.evidence.dns_reason)
    return replace(snapshot, blobs=blobs, items=tuple(items), evidence=evidence)


def _export_time(data: bytes | None) -> datetime | None:
    """``collected_at`` from the export script's export.json, so that auditing the same
    export folder twice (or after a copy changed file times) gives the same result."""
    if data is None:
        return None
    try:
        value = json.loads(data.decode("utf-8-sig")).get("collected_at")
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except (ValueError, AttributeError, UnicodeDecodeError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _export_statuses(data: bytes | None) -> dict[str, tuple[State, str | None]]:
    """Per-item states that export.json records (``cmdlets: {key: {status, error}}``): how the
    export script and live collection say an item was denied, failed or is incomplete."""
    if data is None:
        return {}
    try:
        entries = json.loads(data.decode("utf-8-sig")).get("cmdlets")
    except (ValueError, AttributeError, UnicodeDecodeError):
        return {}
    found: dict[str, tuple[State, str | None]] = {}
    for key, entry in (entries.items() if isinstance(entries, dict) else ()):
        spec = spec_for_filename(f"{key}.json")
        if spec is None or not isinstance(entry, dict):
            continue
        try:
            state = State(str(entry.get("status", "")).lower())
        except ValueError:
            continue
        error = entry.get("error")
        found[spec.key] = (state, str(error) if error else None)
    return found


def _apply_status(key: str, state: State, reason: str | None, item: EvidenceItem | None,
                  collection: Collection[Any] | None) -> tuple[EvidenceItem, Collection[Any]]:
    """An item as export.json describes it: a recorded failure replaces the file's absence
    (or its contents); a recorded ``partial`` marks readable contents incomplete."""
    filename = SPECS[key].filename
    if item is None or collection is None or item.path is None:
        if state.usable:
            state, reason = State.MISSING, (f"export.json records {key} as {state.value} but "
                                            f"{filename} is not in the export folder")
        reason = reason or f"export.json records {key} as {state.value}"
        return (EvidenceItem(key=key, state=state, source="export.json", error=reason),
                Collection(key=key, state=state, reason=reason))
    if state is State.OK or not collection.state.usable:
        return item, collection
    if state is State.PARTIAL:
        reason = reason or f"export.json records {key} as incomplete"
        return (replace(item, state=State.PARTIAL, error=reason),
                replace(collection, state=State.PARTIAL, reason=reason))
    reason = reason or f"export.json records {key} as {state.value}"
    return (replace(item, state=state, error=reason, objects=None, rejected=None),
            Collection(key=key, state=state, reason=reason))


def write_snapshot(snapshot: Snapshot, out: Path) -> None:
    """Write a snapshot as a directory, or as a zip archive when ``out`` ends in ``.zip``."""
    manifest = json.dumps(snapshot.manifest(), indent=2, ensure_ascii=False).encode()
    if out.suffix.lower() == ".zip":
        if out.exists():
            raise InputError(f"{out}: already exists; choose a new name")
        out.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for path, data in sorted(snapshot.blobs.items()):
                if isinstance(data, Path):
                    archive.write(data, path)
                else:
                    archive.writestr(path, data)
            archive.writestr(MANIFEST, manifest)
        return
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out}: already exists and is not empty; choose a new folder")
    for path, data in snapshot.blobs.items():
        target = out / PurePosixPath(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, Path):
            shutil.copyfile(data, target)
        else:
            target.write_bytes(data)
    (out / MANIFEST).write_bytes(manifest)


class _Store:
    """Read access to a stored snapshot's files, directory or zip alike."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._zip: zipfile.ZipFile | None = None
        if root.is_file():
            try:
                self._zip = zipfile.ZipFile(root)
            except zipfile.BadZipFile:
                raise SnapshotError(f"{root}: not a snapshot folder or zip archive") from None

    def files(self) -> list[str]:
        if self._zip is not None:
            return sorted(n for n in self._zip.namelist() if not n.endswith("/"))
        return sorted(
            p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file()
        )

    def read(self, path: str) -> bytes | None:
        if ".." in PurePosixPath(path).parts or PurePosixPath(path).is_absolute():
            raise SnapshotError(f"manifest names a path outside the snapshot: {path!r}")
        if self._zip is not None:
            try:
                return self._zip.read(path)
            except KeyError:
                return None
        target = self.root / PurePosixPath(path)
        return target.read_bytes() if target.is_file() else None


def is_snapshot(path: Path) -> bool:
    if path.is_dir():
        return (path / MANIFEST).is_file()
    return path.is_file() and zipfile.is_zipfile(path)


def _read_manifest(store: _Store) -> dict[str, Any]:
    raw = store.read(MANIFEST)
    if raw is None:
        raise SnapshotError(f"{store.root}: no {MANIFEST}")
    try:
        manifest = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SnapshotError(f"{store.root}: {MANIFEST} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("evidence"), list):
        raise SnapshotError(f"{store.root}: {MANIFEST} has no evidence list")
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise SnapshotError(
            f"{store.root}: snapshot schema_version {version!r} is not supported "
            f"(this tool reads {SCHEMA_VERSION})"
        )
    return manifest


def load_snapshot(path: Path) -> Snapshot:
    """Open a stored snapshot and parse its evidence; files are hashed against the manifest.

    A file whose hash no longer matches is treated as evidence in error, never trusted.
    """
    store = _Store(path)
    manifest = _read_manifest(store)
    items: list[EvidenceItem] = []
    collections: dict[str, Collection[Any]] = {}
    blobs: dict[str, bytes | Path] = {}
    dns: dict[str, DomainDns] = {}
    for entry in manifest["evidence"]:
        item = EvidenceItem.from_json(entry)
        spec = SPECS.get(item.key)
        if item.key.startswith(f"{DNS_KEY}:") and item.path and item.state.usable:
            data = store.read(item.path)
            if data is None or _sha256(data) != item.sha256:
                items.append(replace(item, state=State.ERROR,
                                     error=f"{item.path} is missing or changed after collection"))
                continue
            blobs[item.path] = data
            dns_item, recorded = _dns_item(item.path, data, item.source or "snapshot")
            items.append(replace(dns_item, collected_at=item.collected_at))
            if recorded is not None:
                dns[recorded.domain] = recorded
            continue
        if spec is None:
            items.append(item)
            continue
        if not item.state.usable or item.path is None:
            collections[item.key] = Collection(key=item.key, state=item.state,
                                               reason=item.error or f"{item.key} was not collected")
            items.append(item)
            continue
        data = store.read(item.path)
        if data is None:
            reason = f"{item.path} is listed in the manifest but missing from the snapshot"
        elif _sha256(data) != item.sha256:
            reason = f"{item.path} does not match its manifest hash (changed after collection)"
        else:
            reason = None
        if reason is not None:
            collections[item.key] = Collection(key=item.key, state=State.ERROR, reason=reason)
            items.append(EvidenceItem(key=item.key, state=State.ERROR, path=item.path,
                                      sha256=item.sha256, error=reason))
            continue
        assert data is not None
        collection = parse_evidence(spec, data)
        if item.state is State.PARTIAL and collection.state is State.OK:
            collection = Collection(key=item.key, state=State.PARTIAL, items=collection.items,
                                    rejected=collection.rejected, reason=item.error,
                                    warnings=collection.warnings)
        collections[item.key] = collection
        blobs[item.path] = data
        items.append(item)
    for spec in CATALOG:
        if spec.key not in collections:
            collections[spec.key] = Collection(key=spec.key, state=State.MISSING,
                                               reason=f"{spec.key} is not in the snapshot")
    extras = []
    for extra in manifest.get("extra") or []:
        if not (isinstance(extra, dict) and isinstance(extra.get("path"), str)
                and isinstance(extra.get("sha256"), str) and isinstance(extra.get("size", 0), int)):
            raise SnapshotError(f"{path}: manifest extra entry is malformed: {extra!r}"[:300])
        extras.append(ExtraFile(path=extra["path"], sha256=extra["sha256"], size=extra.get("size", 0)))
    try:
        created = datetime.fromisoformat(str(manifest.get("created_at")).replace("Z", "+00:00"))
    except ValueError:
        raise SnapshotError(f"{path}: manifest created_at is not a date") from None
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    for name in ("tool", "source", "tenant"):
        if not isinstance(manifest.get(name) or {}, dict):
            raise SnapshotError(f"{path}: manifest {name} must be an object")
    tool = manifest.get("tool") or {}
    return Snapshot(
        created_at=created,
        source=manifest.get("source") or {},
        items=tuple(items),
        extras=tuple(extras),
        evidence=EvidenceStore(collections, dns=dns,
                               dns_reason=str(manifest.get("dns_reason") or
                                              "DNS was not collected for this snapshot")),
        blobs=blobs,
        tenant=manifest.get("tenant") or {},
        tool_version=str(tool.get("version", "unknown")),
    )


def open_source(path: Path, *, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> Snapshot:
    """Open what ``audit`` was given: a snapshot (folder or zip) or an export folder."""
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if is_snapshot(path):
        return load_snapshot(path)
    return import_export_folder(path, max_file_bytes=max_file_bytes)


@dataclass(frozen=True, slots=True)
class Verification:
    """What ``verify`` found: every changed, missing and added file, and manifest problems."""

    changed: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    added: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    checked: int = 0

    @property
    def ok(self) -> bool:
        return not (self.changed or self.missing or self.added or self.problems)


def verify_snapshot(path: Path) -> Verification:
    """Recompute every hash of a stored snapshot and compare with its manifest."""
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if not is_snapshot(path):
        raise SnapshotError(f"{path}: not a snapshot (no {MANIFEST})")
    store = _Store(path)
    manifest = _read_manifest(store)
    problems: list[str] = []
    if manifest.get("digest") != manifest_digest(manifest):
        problems.append(f"{MANIFEST} was edited after it was written (its digest does not match)")
    expected: dict[str, str] = {}
    for entry in manifest["evidence"]:
        item = EvidenceItem.from_json(entry)
        if item.path and item.sha256:
            expected[item.path] = item.sha256
    for extra in manifest.get("extra") or []:
        if isinstance(extra, dict) and extra.get("path") and extra.get("sha256"):
            expected[str(extra["path"])] = str(extra["sha256"])
    present = set(store.files()) - {MANIFEST}
    changed, missing = [], []
    for file_path, digest in sorted(expected.items()):
        data = store.read(file_path)
        if data is None:
            missing.append(file_path)
        elif _sha256(data) != digest:
            changed.append(file_path)
    added = sorted(present - set(expected))
    return Verification(
        changed=tuple(changed),
        missing=tuple(missing),
        added=tuple(added),
        problems=tuple(problems),
        checked=len(expected),
    )

