"""The opt-in lockdown probe: does Exchange Online accept mail for the tenant from a host that
is not the gateway? Asked over SMTP, stopping before anything is delivered.

One connection per run: EHLO, STARTTLS, EHLO, MAIL FROM, RCPT TO, then RSET and QUIT. DATA is
sent only with ``send_canary`` and only when the recipient was accepted: one plain, labelled
message to the dedicated test mailbox. Every step has its own timeout and the run one more. The
transcript (timestamps, commands, replies, the TLS session) is the evidence PROBE-001 judges, and
:func:`classify` reads it the same way for the command's own summary.

Nothing here runs at import time; :func:`run_probe` is the only function that touches the network.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import json
import re
import ssl
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from . import __version__
from .errors import InputError
from .evidence import SPECS, EvidenceStore, parse_evidence
from .models import ProbeStep, ProbeTranscript
from .netutil import split_host_port
from .snapshot import MANIFEST, EvidenceItem, ExtraFile, Snapshot, manifest_digest, verify_snapshot

PROBE_KEY = "Probe-SMTP"
EXO_ENDPOINT_SUFFIX = ".mail.protection.outlook.com"
SMTP_PORT = 25
STEP_TIMEOUT = 30.0  # seconds for one command's reply (RFC 5321 suggests minutes; EXO answers fast)
TOTAL_TIMEOUT = 120.0  # seconds for the whole conversation
MAX_LINE = 4096  # bytes in one reply line
MAX_REPLY_LINES = 64
CANARY_HEADER = "X-Mailflow-Auditor-Canary"

# The verdicts, in the words PROBE-001 and the command print.
LOCKED = "locked by connector"
DIRECT_SEND_ONLY = "direct-send block only"
ENVELOPE_ACCEPTED = "envelope accepted"
INCONCLUSIVE = "inconclusive"

# Stages before DATA: only their replies say how Exchange Online treats the connection.
ENVELOPE_STAGES = ("greeting", "EHLO", "STARTTLS", "EHLO after TLS", "MAIL", "RCPT")

_LOCAL_PART = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}$")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"^(?=.{{1,253}}$)(?:{_LABEL}\.)+{_LABEL}$")
_ENHANCED = re.compile(r"^\d{3}[ -]([245])\.(\d{1,3})\.(\d{1,3})(?!\d)")
_REPLY_LINE = re.compile(r"^(\d{3})([ -])(.*)$")


# --- what the user gives: validated before any connection --------------------------------------


def check_domain(text: str, what: str = "domain") -> str:
    """A DNS domain name (lower case, no trailing dot), or InputError."""
    name = text.strip().rstrip(".").lower()
    if not _DOMAIN.match(name):
        raise InputError(f"{what} {text!r} is not a domain name")
    return name


def check_address(text: str, what: str) -> str:
    """An SMTP address safe to put between angle brackets: printable ASCII, no spaces, no line
    breaks (nothing that could end the command and start another), or InputError."""
    local, at, domain = text.rpartition("@")
    if not at or not _LOCAL_PART.match(local) or ".." in local or local.startswith(".") \
            or local.endswith(".") or not _DOMAIN.match(domain):
        raise InputError(f"{what} {text!r} is not a plain email address (local@domain, ASCII, "
                         "no spaces or line breaks)")
    return f"{local}@{domain.lower()}"


def check_helo(text: str) -> str:
    """The name the probe gives in EHLO: a host name or an address literal like [192.0.2.1]."""
    if text.startswith("[") and text.endswith("]"):
        try:
            ipaddress.ip_address(text[1:-1].removeprefix("IPv6:"))
        except ValueError:
            raise InputError(f"--helo {text!r} is not an address literal") from None
        return text
    return check_domain(text, "--helo")


def endpoint_for(domain: str) -> str:
    """The tenant's Exchange Online endpoint for a domain: its name with dots replaced by dashes,
    under mail.protection.outlook.com (contoso.com -> contoso-com.mail.protection.outlook.com).

    Microsoft calls the first label the "MX token" and shows it in the admin center; for a
    name that already holds a dash it is not derived this way (dashes are dropped and a suffix
    added), so such a domain needs ``--host``. The tenant's own Microsoft domains
    (``contoso.onmicrosoft.com`` and the hybrid ``contoso.mail.onmicrosoft.com``) have the tenant
    name as their token: contoso.mail.protection.outlook.com."""
    lowered = domain.lower().rstrip(".")
    for suffix in (".mail.onmicrosoft.com", ".onmicrosoft.com"):
        tenant = lowered.removesuffix(suffix)
        if tenant != lowered and tenant and "." not in tenant:
            return tenant + EXO_ENDPOINT_SUFFIX
    if "-" in domain:
        raise InputError(f"{domain} contains a dash, so its Exchange Online host (the MX token "
                         "shown under Settings > Domains in the Microsoft 365 admin center) "
                         "cannot be derived from the name: give it with --host")
    return domain.replace(".", "-") + EXO_ENDPOINT_SUFFIX


def parse_host(text: str) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT`` or ``[IPv6]:PORT`` -> (host, port)."""
    host, port = split_host_port(text, SMTP_PORT, "--host")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        host = check_domain(host, "--host")
    return host, port


@dataclass(frozen=True)
class ProbeRequest:
    """One probe, validated: the recipient must be in the probed domain."""

    domain: str
    recipient: str
    mail_from: str
    helo: str
    host: str
    port: int = SMTP_PORT
    send_canary: bool = False
    tls: ssl.SSLContext | None = None  # None: the system's trust store; host names always checked
    step_timeout: float = STEP_TIMEOUT
    total_timeout: float = TOTAL_TIMEOUT

    def __post_init__(self) -> None:
        if self.recipient.rpartition("@")[2] != self.domain:
            raise InputError(f"--rcpt {self.recipient} is not in the probed domain {self.domain}")


# --- the SMTP conversation ------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """One SMTP reply: its code and text lines."""

    code: int
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    @property
    def positive(self) -> bool:
        return 200 <= self.code < 400


class _Stop(Exception):
    """The conversation ends here (the reason is already in the transcript)."""


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def _read_reply(reader: asyncio.StreamReader) -> Reply:
    lines: list[str] = []
    code: str | None = None
    while len(lines) < MAX_REPLY_LINES:
        raw = await reader.readuntil(b"\n")
        line = raw.decode("ascii", errors="replace").rstrip("\r\n")
        match = _REPLY_LINE.match(line)
        if match is None or (code is not None and match.group(1) != code):
            raise ValueError(f"not an SMTP reply line: {line[:200]!r}")
        code = match.group(1)
        lines.append(line)
        if match.group(2) == " ":
            return Reply(int(code), tuple(lines))
    raise ValueError(f"the reply has more than {MAX_REPLY_LINES} lines")


def _name(parts: Any) -> str | None:
    """An X.509 name as ssl.getpeercert() gives it, as ``CN=..., O=...``."""
    short = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU",
             "countryName": "C", "stateOrProvinceName": "ST", "localityName": "L"}
    if not parts:
        return None
    return ", ".join(f"{short.get(k, k)}={v}" for rdn in parts for k, v in rdn)


def canary_message(request: ProbeRequest, canary_id: str, when: datetime) -> str:
    """The one message --send-canary sends: plain text, labelled in subject, header and body."""
    lines = [
        f"From: <{request.mail_from}>",
        f"To: <{request.recipient}>",
        f"Subject: mailflow-auditor canary {canary_id}",
        f"Date: {format_datetime(when)}",
        f"Message-ID: <{canary_id}@{request.helo.strip('[]')}>",
        f"{CANARY_HEADER}: {canary_id}",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        "This is a mailflow-auditor canary, sent by an authorised lockdown probe straight to",
        "Exchange Online, around the mail gateway. If it reached this mailbox, mail from outside",
        "can bypass the gateway. It carries no link or attachment and can be deleted.",
        "",
        f"Canary id: {canary_id}",
    ]
    return "".join(("." + line if line.startswith(".") else line) + "\r\n" for line in lines)


class _Session:
    """One connection's conversation and its transcript."""

    def __init__(self, request: ProbeRequest, clock: Callable[[], datetime]) -> None:
        self.request = request
        self.clock = clock
        self.steps: list[dict[str, Any]] = []
        self.facts: dict[str, Any] = {}
        self.error: tuple[str, str] | None = None
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    def fail(self, stage: str, reason: str) -> _Stop:
        self.error = (stage, reason)
        return _Stop(reason)

    async def exchange(self, stage: str, command: str | None, *, payload: str | None = None,
                       best_effort: bool = False) -> Reply | None:
        """Send a command (or the message, ``payload``) and read the reply, recording both."""
        assert self.reader is not None and self.writer is not None
        sent = command if payload is None else f"<message, {len(payload)} bytes>"
        if command is not None and any(c in command for c in "\r\n\0"):
            raise ValueError(f"refusing to send a command with a line break: {command!r}")
        step: dict[str, Any] = {"At": _iso(self.clock()), "Stage": stage, "Command": sent,
                                "Code": None, "Reply": None}
        self.steps.append(step)
        timeout = self.request.step_timeout
        try:
            if payload is not None:
                self.writer.write(payload.encode("ascii") + b".\r\n")
            elif command is not None:
                self.writer.write(command.encode("ascii") + b"\r\n")
            await asyncio.wait_for(self.writer.drain(), timeout)
            reply = await asyncio.wait_for(_read_reply(self.reader), timeout)
        except TimeoutError:
            reason = f"no reply within {timeout:g} s"
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            reason = f"the server closed the connection ({type(exc).__name__})"
        except (asyncio.LimitOverrunError, ValueError) as exc:
            reason = f"unreadable reply: {exc}"
        else:
            step["Code"], step["Reply"] = reply.code, reply.text
            return reply
        step["Error"] = reason
        if best_effort:
            return None
        raise self.fail(stage, reason)

    async def connect(self) -> None:
        request = self.request
        step: dict[str, Any] = {"At": _iso(self.clock()), "Stage": "connect",
                                "Command": f"connect {request.host}:{request.port}", "Code": None,
                                "Reply": None}
        self.steps.append(step)
        try:
            self.reader, self.writer = await asyncio.wait_for(
                asyncio.open_connection(request.host, request.port, limit=MAX_LINE),
                request.step_timeout)
        except TimeoutError:
            step["Error"] = (f"no connection to {request.host}:{request.port} within "
                             f"{request.step_timeout:g} s (is outbound port 25 blocked here?)")
            raise self.fail("connect", step["Error"]) from None
        except OSError as exc:
            step["Error"] = f"cannot connect to {request.host}:{request.port}: {exc.strerror or exc}"
            raise self.fail("connect", step["Error"]) from None
        peer = self.writer.get_extra_info("peername")
        self.facts["PeerAddress"] = step["Peer"] = f"{peer[0]}:{peer[1]}" if peer else None

    async def expect(self, stage: str, command: str | None, *, codes: range) -> Reply:
        reply = await self.exchange(stage, command)
        assert reply is not None
        if reply.code not in codes:
            await self.exchange("QUIT", "QUIT", best_effort=True)
            raise _Stop(f"{stage} was refused")
        return reply

    async def start_tls(self) -> None:
        assert self.writer is not None
        context = self.request.tls or ssl.create_default_context()
        try:
            await asyncio.wait_for(self.writer.start_tls(context, server_hostname=self.request.host),
                                   self.request.step_timeout)
        except TimeoutError:
            raise self.fail("TLS", f"no TLS handshake within {self.request.step_timeout:g} s") from None
        except (ssl.SSLError, ConnectionError, OSError) as exc:
            raise self.fail("TLS", f"TLS handshake failed: {exc}") from None
        tls = self.writer.get_extra_info("ssl_object")
        peer = tls.getpeercert() or {}
        cipher = tls.cipher()
        self.facts.update(TlsVersion=tls.version(), TlsCipher=cipher[0] if cipher else None,
                          TlsPeerSubject=_name(peer.get("subject")),
                          TlsPeerIssuer=_name(peer.get("issuer")))

    async def converse(self) -> None:
        request = self.request
        await self.connect()
        await self.expect("greeting", None, codes=range(220, 221))
        ehlo = await self.expect("EHLO", f"EHLO {request.helo}", codes=range(250, 251))
        if not any(line[4:].strip().upper() == "STARTTLS" for line in ehlo.lines[1:]):
            await self.exchange("QUIT", "QUIT", best_effort=True)
            raise self.fail("STARTTLS", "the server does not offer STARTTLS (Exchange Online "
                            "always does): nothing was sent in clear")
        await self.expect("STARTTLS", "STARTTLS", codes=range(220, 221))
        await self.start_tls()
        await self.expect("EHLO after TLS", f"EHLO {request.helo}", codes=range(250, 251))
        await self.expect("MAIL", f"MAIL FROM:<{request.mail_from}>", codes=range(250, 251))
        rcpt = await self.exchange("RCPT", f"RCPT TO:<{request.recipient}>")
        assert rcpt is not None
        if 200 <= rcpt.code < 300 and request.send_canary:
            await self.send_canary()
        else:
            await self.exchange("RSET", "RSET", best_effort=True)
        await self.exchange("QUIT", "QUIT", best_effort=True)

    async def send_canary(self) -> None:
        """DATA and one labelled message to the accepted recipient (only with --send-canary)."""
        canary_id = f"mfa-{uuid.uuid4()}"
        self.facts["CanaryId"] = canary_id
        data = await self.exchange("DATA", "DATA")
        assert data is not None
        if data.code != 354:
            await self.exchange("RSET", "RSET", best_effort=True)
            return
        message = canary_message(self.request, canary_id, self.clock())
        self.facts["CanaryMessage"] = message
        await self.exchange("MESSAGE", None, payload=message)

    async def close(self) -> None:
        if self.writer is None:
            return
        self.writer.close()
        with contextlib.suppress(TimeoutError, ConnectionError, ssl.SSLError, OSError):
            await asyncio.wait_for(self.writer.wait_closed(), 2)


async def run_probe(request: ProbeRequest, *, clock: Callable[[], datetime] = _now) -> dict[str, Any]:
    """Run one probe over one connection and return its transcript (the evidence record).

    Never raises for what the network or the server does: a refused connection, a timeout or a
    failed handshake ends the conversation and is recorded in ``Error`` and ``ErrorStage``."""
    session = _Session(request, clock)
    started = clock()
    try:
        async with asyncio.timeout(request.total_timeout):
            await session.converse()
    except _Stop:
        pass
    except TimeoutError:
        stage = session.steps[-1]["Stage"] if session.steps else "connect"
        session.error = (stage, f"the probe did not finish within {request.total_timeout:g} s")
    finally:
        await session.close()
    return {
        "Tool": f"mailflow-auditor {__version__}",
        "Domain": request.domain,
        "Host": request.host,
        "Port": request.port,
        "PeerAddress": session.facts.get("PeerAddress"),
        "HeloName": request.helo,
        "MailFrom": request.mail_from,
        "Recipient": request.recipient,
        "SendCanary": request.send_canary,
        "CanaryId": session.facts.get("CanaryId"),
        "StartedAt": _iso(started),
        "FinishedAt": _iso(clock()),
        "TlsVersion": session.facts.get("TlsVersion"),
        "TlsCipher": session.facts.get("TlsCipher"),
        "TlsPeerSubject": session.facts.get("TlsPeerSubject"),
        "TlsPeerIssuer": session.facts.get("TlsPeerIssuer"),
        "Error": session.error[1] if session.error else None,
        "ErrorStage": session.error[0] if session.error else None,
        "Steps": session.steps,
        "CanaryMessage": session.facts.get("CanaryMessage"),
    }


# --- reading a transcript (pure: PROBE-001 and the command share it) -------------------------


def enhanced_code(reply: str | None) -> tuple[int, int, int] | None:
    """The enhanced status code (RFC 3463) at the start of a reply: ``550 5.7.51 ...`` ->
    (5, 7, 51); None when the reply has none."""
    match = _ENHANCED.match(reply or "")
    return (int(match.group(1)), int(match.group(2)), int(match.group(3))) if match else None


def reputation_block(code: tuple[int, int, int] | None) -> bool:
    """Exchange Online refusing the probe's source rather than judging the tenant: 4.7.500-699
    and 4.7.850-899 (throttled, "try again later"), 5.7.500-699 (banned sender or sending IP,
    5.7.606-649 among them) and 5.7.700-899 (a banned or suspicious source)."""
    if code is None or code[1] != 7:
        return False
    return 500 <= code[2] <= 899 if code[0] in (4, 5) else False


@dataclass(frozen=True)
class Outcome:
    """What a transcript says: the verdict, why, the deciding step, and the canary's fate."""

    verdict: str
    reason: str
    step: ProbeStep | None = None
    canary: ProbeStep | None = None  # the reply at the end of the canary message, if one was sent


def classify(transcript: ProbeTranscript, *, sender_internal: bool) -> Outcome:
    """The verdict of one probe. ``sender_internal``: whether MAIL FROM is in an accepted domain
    (5.7.68 means a Direct Send block only then). Raises ValueError for unreadable steps."""
    steps = transcript.steps()
    envelope = [s for s in steps if s.stage in ENVELOPE_STAGES and s.reply is not None]
    for step in envelope:
        code = enhanced_code(step.reply)
        if code == (5, 7, 51):
            return Outcome(LOCKED, "Exchange Online refused the recipient because a Partner "
                           "connector restricts mail for the domain to certain IP addresses or a "
                           "certificate (5.7.51 TenantInboundAttribution)", step)
        if code == (5, 7, 68):
            if sender_internal:
                return Outcome(DIRECT_SEND_ONLY, "Exchange Online refused the tenant's own sender "
                               "domain from an unknown host (5.7.68, RejectDirectSend); a sender "
                               "from any other domain is not refused this way", step)
            return Outcome(INCONCLUSIVE, "5.7.68 (Direct Send) came back although MAIL FROM is "
                           "not an accepted domain: not an answer this probe can judge", step)
        if reputation_block(code):
            return Outcome(INCONCLUSIVE, "Exchange Online refused or throttled the probe's source "
                           "(reputation or rate limit), before judging the tenant: run the probe "
                           "from a host with a clean reputation", step)
    rcpt = next((s for s in reversed(envelope) if s.stage == "RCPT"), None)
    if rcpt is not None and rcpt.code is not None and 200 <= rcpt.code < 300:
        canary = next((s for s in steps if s.stage == "MESSAGE"), None)
        return Outcome(ENVELOPE_ACCEPTED, "Exchange Online accepted the envelope (MAIL FROM and "
                       "RCPT TO) from a host that is not the gateway", rcpt, canary)
    if transcript.Error:
        stage = transcript.ErrorStage or "?"
        failed = next((s for s in reversed(steps) if s.stage == stage), None)
        return Outcome(INCONCLUSIVE, f"the probe stopped at {stage}: {transcript.Error}", failed)
    refused = next((s for s in reversed(envelope) if s.code is not None and s.code >= 400), None)
    if refused is not None and refused.stage == "RCPT" and enhanced_code(refused.reply) == (5, 4, 1):
        return Outcome(INCONCLUSIVE, "Exchange Online does not know the recipient (5.4.1, "
                       "Directory-Based Edge Blocking): probe an existing test mailbox", refused)
    if refused is not None:
        return Outcome(INCONCLUSIVE, f"{refused.stage} was refused with a reply that tells "
                       "neither a lock (5.7.51), a Direct Send block (5.7.68) nor acceptance",
                       refused)
    return Outcome(INCONCLUSIVE, "the transcript ends before RCPT TO was answered",
                   steps[-1] if steps else None)


# --- storing the transcript -------------------------------------------------------------------


def read_transcript(data: bytes) -> ProbeTranscript:
    """The first record of a Probe-SMTP file as PROBE-001 will read it (InputError otherwise)."""
    collection = parse_evidence(SPECS[PROBE_KEY], data)
    if not collection.state.usable or not collection.items:
        reason = collection.reason or (collection.rejected[0].reason if collection.rejected
                                       else "no record")
        raise InputError(f"the probe transcript cannot be read back: {reason}")
    return collection.items[0]


def encode(records: list[dict[str, Any]]) -> bytes:
    return (json.dumps(records, indent=2, ensure_ascii=False) + "\n").encode()


def _merged(old: bytes | None, record: dict[str, Any]) -> list[dict[str, Any]]:
    """Earlier probes of other domains, plus this one (it supersedes one of the same domain)."""
    records: list[dict[str, Any]] = []
    if old is not None:
        try:
            loaded = json.loads(old.decode("utf-8-sig"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"the snapshot's {PROBE_KEY} file is not JSON ({exc}); "
                             "remove it or probe into a copy") from None
        records = [r for r in (loaded if isinstance(loaded, list) else [loaded])
                   if not (isinstance(r, dict) and r.get("Domain") == record["Domain"])]
    return [*records, record]


def check_snapshot(folder: Path) -> None:
    """InputError unless ``folder`` is a snapshot folder that verifies now (checked before the
    probe connects, and again before its manifest is re-hashed: that would bless any change)."""
    if not (folder / MANIFEST).is_file():
        raise InputError(f"{folder}: not a snapshot folder (no {MANIFEST}); a .zip snapshot must "
                         "be unpacked first, an export folder takes --out FOLDER/Probe-SMTP.json")
    if not verify_snapshot(folder).ok:
        raise InputError(f"{folder}: the snapshot does not verify (run `mailflow-audit verify`); "
                         "refusing to re-hash its manifest")


def add_to_snapshot(folder: Path, record: dict[str, Any]) -> bytes:
    """Write the transcript into a snapshot folder and re-hash its manifest, so ``verify`` passes."""
    check_snapshot(folder)
    manifest = json.loads((folder / MANIFEST).read_bytes())
    spec = SPECS[PROBE_KEY]
    target = folder / spec.path
    data = encode(_merged(target.read_bytes() if target.is_file() else None, record))
    collection = parse_evidence(spec, data)
    item = EvidenceItem(key=PROBE_KEY, state=collection.state, path=spec.path,
                        sha256=hashlib.sha256(data).hexdigest(), size=len(data),
                        source="mailflow-audit probe",
                        collected_at=record["FinishedAt"], error=collection.reason,
                        objects=len(collection.items), rejected=len(collection.rejected),
                        warnings=collection.warnings)
    entries = [e for e in manifest["evidence"] if not (isinstance(e, dict) and e.get("key") == PROBE_KEY)]
    manifest["evidence"] = [*entries, item.to_json()]
    items = tuple(EvidenceItem.from_json(e) for e in manifest["evidence"])
    extras = tuple(ExtraFile(str(e["path"]), str(e["sha256"]), int(e.get("size") or 0))
                   for e in manifest.get("extra") or [])
    manifest["snapshot_id"] = Snapshot(created_at=_now(), source={}, items=items, extras=extras,
                                       evidence=EvidenceStore()).snapshot_id
    manifest["digest"] = manifest_digest(manifest)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    (folder / MANIFEST).write_bytes(json.dumps(manifest, indent=2, ensure_ascii=False).encode())
    return data


# --- what the command prints -------------------------------------------------------------------


def transcript_lines(record: dict[str, Any]) -> list[str]:
    """The conversation, one line per step (the first line of each reply)."""
    lines = []
    for step in record.get("Steps") or []:
        connected = f"connected to {step['Peer']}" if step.get("Peer") else None
        answer = (step.get("Reply") or step.get("Error") or connected or "(no reply)").splitlines()[0]
        command = f"{step['Command']} -> " if step.get("Command") else ""
        lines.append(f"{step.get('At')} {step.get('Stage')}: {command}{answer}")
    if record.get("TlsVersion"):
        lines.append(f"TLS {record['TlsVersion']} {record.get('TlsCipher')}, server certificate "
                     f"{record.get('TlsPeerSubject')}")
    if record.get("Error"):
        lines.append(f"stopped at {record.get('ErrorStage')}: {record['Error']}")
    return lines


def summary(record: dict[str, Any]) -> tuple[str, str]:
    """PROBE-001's verdict from the transcript alone (status, text): without the tenant's
    configuration the probed domain stands for its accepted domains, and a transport-rule lock
    cannot be seen, so an accepted envelope is reported as exposed with that caveat."""
    transcript = read_transcript(encode([record]))
    domain = str(record["Domain"])
    sender_domain = str(record["MailFrom"]).rpartition("@")[2]
    outcome = classify(transcript, sender_internal=sender_domain == domain
                       or sender_domain.endswith("." + domain))
    answer = f" ({_first(outcome.step.reply)})" if outcome.step and outcome.step.reply else ""
    text = f"SMTP probe to {domain}: {outcome.verdict}: {outcome.reason}{answer}"
    if outcome.verdict == LOCKED:
        return "pass", text
    if outcome.verdict == INCONCLUSIVE:
        return "not_evaluated", text
    if outcome.verdict == DIRECT_SEND_ONLY:
        return "warn", text + "; a connector lock is still missing"
    canary = outcome.canary
    if canary is not None and canary.code is not None and canary.code >= 500:
        return "warn", text + f"; the canary was refused after DATA ({_first(canary.reply)})"
    return "fail", text + ("; exposed unless a transport rule rejects such mail after DATA (audit a "
                           "snapshot holding this transcript to see the tenant's rules)")


def _first(reply: str | None) -> str:
    return (reply or "").splitlines()[0][:200] if reply else ""
