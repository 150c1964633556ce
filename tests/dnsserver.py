"""A real authoritative DNS server (Knot DNS) for tests, run unprivileged on 127.0.0.1.

Why Knot: it answers like a production server (TXT strings, CNAME chasing, NXDOMAIN vs no-data,
truncation and TCP) and starts in about 20 ms. What it cannot do (timeouts, SERVFAIL or slow
answers for one name, garbage) lives in ``tests/dnsdouble.py``.

Fixtures defined here (import them into ``tests/conftest.py``): ``knot_factory`` (function scope)
and ``knot_session_factory`` (session scope); both call ``require_knot()`` first.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

HOST = "127.0.0.1"
KNOTD_MISSING = "knotd not found: install it with `apt-get install knot` (Debian/Ubuntu)"
# Outside every test zone, so the defaults neither need glue nor add names to the zone.
DEFAULT_SOA = "@ 300 IN SOA ns.knot-test.invalid. hostmaster.knot-test.invalid. 1 3600 600 86400 60"
DEFAULT_NS = "@ 300 IN NS ns.knot-test.invalid."

READY_TIMEOUT = 5.0  # whole start-up, all zones
# One SOA probe. A probe sent before knotd binds is lost (no ICMP error reaches an unconnected UDP
# socket) and costs its whole timeout, so start short and double after each loss (slow CI machines).
POLL_QUERY_TIMEOUT = 0.01
POLL_QUERY_TIMEOUT_MAX = 0.5
POLL_PAUSE = 0.005
STOP_TIMEOUT = 5.0
PORT_ATTEMPTS = 20  # free-port search
START_ATTEMPTS = 3  # another process can take the port between our probe and knotd's bind

# Stopped at interpreter exit if a test forgot to: a stray knotd would outlive the test run.
_RUNNING: weakref.WeakSet[KnotServer] = weakref.WeakSet()


class KnotError(RuntimeError):
    """knotd exited or never served every zone; the message carries knotd's stderr."""


def knotd_path() -> str | None:
    """The knotd on PATH, or the binary named by $KNOTD; None when there is none."""
    override = os.environ.get("KNOTD")
    if override:
        return override if os.access(override, os.X_OK) else None
    return shutil.which("knotd")


def require_knot() -> str:
    """knotd's path; skip the test without it, but fail under CI, where a skip would hide a gap."""
    path = knotd_path()
    if path:
        return path
    message = KNOTD_MISSING
    sbin = Path("/usr/sbin/knotd")
    if os.environ.get("KNOTD"):
        message += f"; KNOTD={os.environ['KNOTD']} is not an executable file"
    elif sbin.exists():  # Debian gives non-root users a PATH without /usr/sbin
        message += f"; {sbin} exists but is not on PATH (add /usr/sbin to PATH or set KNOTD)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 right now (DNS needs both)."""
    for _ in range(PORT_ATTEMPTS):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((HOST, 0))
            port = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((HOST, port))
                except OSError:
                    continue
                return port
    raise KnotError(f"no port free for both UDP and TCP on {HOST} after {PORT_ATTEMPTS} tries")


def zone_text(origin: str, text: str) -> str:
    """The zone file for ``origin``: $ORIGIN and $TTL first, a default SOA and NS when absent."""
    name = dns.name.from_text(origin)
    body = f"$ORIGIN {name.to_text()}\n$TTL 300\n" + text.strip("\n") + "\n"
    present = apex_types(name, body)
    extra = [line for line, rdtype in ((DEFAULT_SOA, "SOA"), (DEFAULT_NS, "NS")) if rdtype not in present]
    # The defaults go after the test's text: a leading "@" line keeps its relative owner.
    return body + "".join(f"$ORIGIN {name.to_text()}\n{line}\n" for line in extra)


_QUOTED_OR_COMMENT = re.compile(r'"(?:\\.|[^"\\])*"|;.*')
_CLASSES = {"IN", "CH", "HS", "CS"}


def apex_types(origin: dns.name.Name, text: str) -> set[str]:
    """Which of SOA and NS the zone text has at its apex.

    A line scan, not dnspython's zone parser: that takes seconds for a 10,000-domain zone. It
    follows $ORIGIN, blank (repeated) owners and parentheses; knotd judges everything else.
    """
    found: set[str] = set()
    current, depth = origin, 0
    owner: tuple[str, dns.name.Name] = ("@", origin)  # as written, and the $ORIGIN it is relative to
    for raw in text.splitlines():
        line = _QUOTED_OR_COMMENT.sub('""', raw)
        continuation = depth > 0
        depth = max(depth + line.count("(") - line.count(")"), 0)
        tokens = line.replace("(", " ").replace(")", " ").split()
        if continuation or not tokens:
            continue
        if tokens[0].upper() == "$ORIGIN" and len(tokens) > 1:
            with contextlib.suppress(dns.exception.DNSException):
                current = dns.name.from_text(tokens[1], origin=current)
            continue
        if tokens[0].startswith("$"):
            continue
        if not raw[:1].isspace():
            owner, tokens = (tokens[0], current), tokens[1:]
        while tokens and (tokens[0][:1].isdigit() or tokens[0].upper() in _CLASSES):
            tokens = tokens[1:]  # TTL and class, either order
        if tokens and tokens[0].upper() in ("SOA", "NS") and _is(owner, origin):
            found.add(tokens[0].upper())
    return found


def _is(owner: tuple[str, dns.name.Name], name: dns.name.Name) -> bool:
    text, relative_to = owner
    try:
        return (relative_to if text == "@" else dns.name.from_text(text, origin=relative_to)) == name
    except dns.exception.DNSException:
        return False


def knot_conf(directory: Path, port: int, origins: list[str]) -> str:
    """knotd's configuration: foreground, loopback only, one worker each, no write-back."""
    zones = "".join(f"  - domain: {origin}\n" for origin in origins)
    return f"""\
server:
    listen: {HOST}@{port}
    rundir: "{directory}"
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
log:
  - target: stderr
    any: warning
database:
    storage: "{directory / 'db'}"
template:
  - id: default
    storage: "{directory / 'zones'}"
    file: "%s.zone"
    zonefile-sync: -1
    journal-content: none
zone:
{zones}"""


class KnotServer:
    """One knotd serving the given zones on 127.0.0.1 at a free port, in a temporary directory."""

    def __init__(self, zones: dict[str, str] | None = None, *, knotd: str | None = None,
                 ready_timeout: float = READY_TIMEOUT) -> None:
        self._zones = zones
        self._knotd = knotd
        self.ready_timeout = ready_timeout
        self.directory: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.port: int | None = None
        self.origins: list[str] = []
        self.startup_seconds: float | None = None  # from spawning knotd to every zone answering

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) to send queries to."""
        if self.port is None or self.process is None:
            raise KnotError("KnotServer is not running: call start() first")
        return (HOST, self.port)

    @property
    def stderr_path(self) -> Path | None:
        return None if self.directory is None else self.directory / "knotd.stderr"

    def stderr(self) -> str:
        """What knotd has logged so far (warnings and errors)."""
        path = self.stderr_path
        if path is None or not path.exists():
            return ""
        return path.read_text(errors="replace")

    def start(self, zones: dict[str, str] | None = None) -> KnotServer:
        """Write the zones and configuration, start knotd and wait until every zone answers."""
        if self.process is not None:
            raise KnotError("KnotServer already started")
        zones = self._zones if zones is None else zones
        if not zones:
            raise ValueError("KnotServer needs at least one zone")
        knotd = self._knotd or knotd_path()
        if knotd is None:
            raise KnotError(KNOTD_MISSING)
        origins = []
        for origin in zones:
            name = dns.name.from_text(origin)
            if name == dns.name.root:
                raise ValueError("the root zone is not supported")
            origins.append(name.to_text(omit_final_dot=True).lower())
        if len(set(origins)) != len(origins):
            raise ValueError(f"duplicate zone origins: {sorted(zones)}")

        self.directory = Path(tempfile.mkdtemp(prefix="knot-"))
        (self.directory / "db").mkdir()
        (self.directory / "zones").mkdir()
        for origin, text in zip(origins, zones.values(), strict=True):
            (self.directory / "zones" / f"{origin}.zone").write_text(zone_text(origin, text))
        self.origins = origins
        _RUNNING.add(self)
        try:
            for _ in range(START_ATTEMPTS):
                if self._spawn(knotd):
                    return self
            raise KnotError(f"another process took knotd's port {START_ATTEMPTS} times:\n{self.stderr()}")
        except BaseException:
            self.stop()
            raise

    def _spawn(self, knotd: str) -> bool:
        """One start at a fresh port; False when only the port was taken (try again)."""
        assert self.directory is not None
        self.port = free_port()
        conf = self.directory / "knot.conf"
        conf.write_text(knot_conf(self.directory, self.port, self.origins))
        stderr_path = self.directory / "knotd.stderr"
        started = time.monotonic()
        with stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen([knotd, "-c", str(conf)], stdin=subprocess.DEVNULL,
                                            stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            self._wait_ready(started)
        except KnotError:
            if "address already in use" in self.stderr():
                self._terminate()
                return False
            raise
        self.startup_seconds = time.monotonic() - started
        return True

    def _wait_ready(self, started: float) -> None:
        """Poll an SOA query per zone over UDP until each answers; stop early if knotd gives up."""
        assert self.process is not None and self.port is not None
        deadline = started + self.ready_timeout
        pending = list(self.origins)
        probe_timeout = POLL_QUERY_TIMEOUT
        while pending:
            if self.process.poll() is not None:
                raise KnotError(f"knotd exited with status {self.process.returncode} before "
                                f"serving {', '.join(pending)}:\n{self.stderr()}")
            log = self.stderr()
            failed = [o for o in pending if f"[{o}.] zone event 'load' failed" in log]
            if failed:
                raise KnotError(f"knotd could not load {', '.join(failed)}:\n{log}")
            if time.monotonic() >= deadline:
                raise KnotError(f"knotd did not serve {', '.join(pending)} within "
                                f"{self.ready_timeout} s:\n{log}")
            timeout = min(probe_timeout, max(deadline - time.monotonic(), 0.001))
            ready = self._answers(pending[0], timeout)
            if ready:
                pending.pop(0)
                continue
            if ready is None:  # lost: not bound yet, or a slow machine
                probe_timeout = min(probe_timeout * 2, POLL_QUERY_TIMEOUT_MAX)
            time.sleep(POLL_PAUSE)

    def _answers(self, origin: str, timeout: float) -> bool | None:
        """True when the zone's SOA comes back, False for another answer, None for no answer."""
        assert self.port is not None
        query = dns.message.make_query(f"{origin}.", dns.rdatatype.SOA)
        try:
            reply = dns.query.udp(query, HOST, port=self.port, timeout=timeout)
        except dns.exception.Timeout:
            return None
        except (dns.exception.DNSException, OSError):
            return False
        return reply.rcode() == dns.rcode.NOERROR and bool(reply.answer)

    def _terminate(self) -> None:
        """SIGTERM, a bounded wait, then SIGKILL (and a bounded wait to reap)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)

    def stop(self) -> None:
        """Stop knotd and remove its directory; safe to call twice."""
        try:
            self._terminate()
        finally:
            _RUNNING.discard(self)
            if self.directory is not None:
                shutil.rmtree(self.directory, ignore_errors=True)
                self.directory = None
            self.port = None

    def __enter__(self) -> KnotServer:
        if self.process is None and self._zones:
            self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


@atexit.register
def _stop_leftovers() -> None:
    for server in list(_RUNNING):
        server.stop()


KnotFactory = Callable[[dict[str, str]], KnotServer]


def _factory() -> Iterator[KnotFactory]:
    knotd = require_knot()
    servers: list[KnotServer] = []

    def make(zones: dict[str, str]) -> KnotServer:
        server = KnotServer(knotd=knotd)
        servers.append(server)
        return server.start(zones)

    try:
        yield make
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def knot_factory() -> Iterator[KnotFactory]:
    """``knot_factory(zones) -> KnotServer`` (started); every server is stopped after the test."""
    yield from _factory()


@pytest.fixture(scope="session")
def knot_session_factory() -> Iterator[KnotFactory]:
    """Like ``knot_factory`` but servers live for the whole session: for zones tests only read."""
    yield from _factory()
