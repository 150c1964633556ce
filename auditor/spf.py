"""SPF (RFC 7208): ``check_host()`` and a static audit of a domain's record tree, written sans-I/O.

Nothing here talks to the network. ``check_host`` and ``analyse`` are generators: they yield a
``DnsQuery`` whenever they need DNS and expect the matching ``DnsAnswer`` to be sent back. The same
code therefore runs over recorded answers (offline audits, tests; ``resolve``) and over a live
resolver (the collector; ``resolve_async``), and checks stay free of I/O.

Section numbers in comments refer to RFC 7208.
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, NamedTuple, TypeVar
from urllib.parse import quote

import dns.exception
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from auditor.dnsmodel import DnsAnswer, DnsQuery, DnsStatus, txt_strings
from auditor.frozen import built_directly

__all__ = [
    "SpfNetwork",
    "SpfNetworks",
    "SpfProblem",
    "SpfResult",
    "SpfTarget",
    "SpfTree",
    "analyse",
    "check_host",
    "initial_domain_ok",
    "resolve",
    "resolve_async",
]

T = TypeVar("T")
Resolution = Generator[DnsQuery, DnsAnswer, T]

ResultCode = Literal["pass", "fail", "softfail", "neutral", "none", "permerror", "temperror"]
TreeResult = Literal["ok", "none", "permerror", "temperror"]
Severity = Literal["permerror", "temperror", "warning"]

MAX_DNS_TERMS = 10  # 4.6.4: include, a, mx, ptr, exists, redirect
MAX_VOID_LOOKUPS = 2  # 4.6.4: "SHOULD limit void lookups to two"
MAX_MX_NAMES = 10  # 4.6.4: at most 10 address lookups per mx, else permerror
MAX_PTR_NAMES = 10  # 4.6.4: at most 10 PTR names checked, the rest ignored
MAX_DEPTH = 16  # defensive only: the term limit stops include/redirect loops first
MAX_TREE_RECORDS = 64  # analyse: records fetched at most (each beyond the first costs a lookup)
RECORD_SIZE_HINT = 450  # 3.4: keep records small enough for a 512-byte UDP answer

_IP = ipaddress.IPv4Address | ipaddress.IPv6Address
_Net = ipaddress.IPv4Network | ipaddress.IPv6Network

_QUALIFIER_RESULT: dict[str, ResultCode] = {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral"}
_DNS_MECHANISMS = frozenset({"include", "a", "mx", "ptr", "exists"})
_MECHANISMS = _DNS_MECHANISMS | {"all", "ip4", "ip6"}
_MACRO_LETTERS = "slodipvhcrt"
_EXP_ONLY_LETTERS = "crt"  # 7.2: c, r and t are allowed only in explanation text

# ABNF of section 12, ASCII only (never \w or \d: they match non-ASCII characters).
_NAME = r"[A-Za-z][A-Za-z0-9_.\-]*"
_MODIFIER_RE = re.compile(rf"({_NAME})=(.*)", re.DOTALL)
_MECHANISM_RE = re.compile(r"([+\-~?]?)([A-Za-z][A-Za-z0-9]*)(.*)", re.DOTALL)
_CIDR4 = r"/(0|[1-9][0-9]?)"  # ip4-cidr-length: no leading zeros (the suite's cidr4-032)
_CIDR6 = r"/(0|[1-9][0-9]{0,2})"
_A_MX_ARGS_RE = re.compile(rf"(?::(.+?))?(?:{_CIDR4})?(?:/{_CIDR6})?", re.DOTALL)
_PTR_ARGS_RE = re.compile(r"(?::(.+))?", re.DOTALL)
_QNUM = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
_IP4_ARGS_RE = re.compile(rf":({_QNUM}\.{_QNUM}\.{_QNUM}\.{_QNUM})(?:{_CIDR4})?")
_IP6_ARGS_RE = re.compile(rf":([0-9A-Fa-f:.]+)(?:{_CIDR6})?")
_TOPLABEL = r"(?:[A-Za-z0-9]*[A-Za-z][A-Za-z0-9]*|[A-Za-z0-9]+-[A-Za-z0-9\-]*[A-Za-z0-9])"
_DOMAIN_END_RE = re.compile(rf"\.{_TOPLABEL}\.?\Z")
_TOPLABEL_RE = re.compile(_TOPLABEL)
_MACRO_EXPAND_RE = re.compile(r"%\{([A-Za-z])([0-9]*)([rR]?)([.\-+,/_=]*)\}")
_ESCAPES = {"%": "%", "_": " ", "-": "%20"}  # 7.1: %% %_ %-


# ---------------------------------------------------------------------------------------------
# Public results


@dataclass(frozen=True, slots=True)
class SpfResult:
    """Outcome of ``check_host()`` with enough context to explain it in a report."""

    result: ResultCode
    explanation: str | None = None  # from exp= on a fail; None means "use your default"
    mechanism: str | None = None  # the term that decided the result
    problem: str | None = None  # why permerror / temperror
    lookups: int = 0  # DNS-querying terms evaluated (4.6.4)
    void_lookups: int = 0
    trace: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SpfNetwork:
    """An ip4/ip6 network found in the tree, with the chain of domains that includes it (from
    the top domain to ``domain``, both included)."""

    network: str
    qualifier: str
    domain: str
    chain: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SpfNetworks:
    """A run of ip4/ip6 terms of one record, in the record's order, with the chain of domains
    that includes it (from the top domain to ``domain``, both included). ``terms`` (network,
    qualifier) are those of the record as read once: every tree that includes the record shares
    them (in bulk, thousands of trees)."""

    domain: str
    chain: tuple[str, ...]
    terms: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class SpfTarget:
    """A name the tree points at: include, redirect, a, mx, exists, ptr, exp, or macro.

    ``macro`` marks terms whose target depends on the message (sender, HELO or IP): they
    cannot be resolved without a connection and were not followed.
    """

    kind: str
    target: str
    term: str
    domain: str
    chain: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SpfProblem:
    """Something wrong in the tree. ``permerror``/``temperror`` would break evaluation."""

    severity: Severity
    message: str
    chain: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SpfTree:
    """Static view of a domain's whole SPF tree, independent of any connecting IP."""

    domain: str
    result: TreeResult
    problem: str | None
    record: str | None
    all_term: str | None  # the all term that ends evaluation (after redirect), e.g. "-all"
    all_qualifier: str | None
    all_domain: str | None  # the domain whose record carries it
    lookups: int  # DNS-querying terms if no term matched (what "too many lookups" tools report)
    void_lookups: int
    network_runs: tuple[SpfNetworks, ...]  # every ip4/ip6 network, in the order the walk met them
    targets: tuple[SpfTarget, ...]
    problems: tuple[SpfProblem, ...]
    records: tuple[tuple[str, str], ...]  # (domain, record) for every record read
    # Names whose A/AAAA records check_host() may need for some client IP: the a targets and the
    # hosts of mx targets (first 10). A collector fetches these so that offline evaluation works.
    address_targets: tuple[str, ...] = ()

    @property
    def networks(self) -> tuple[SpfNetwork, ...]:
        """Each ip4/ip6 network on its own, in the order the walk met them."""
        return tuple(SpfNetwork(network, qualifier, run.domain, run.chain)
                     for run in self.network_runs for network, qualifier in run.terms)


# (Positional builders of the results of the audit walk: a bulk run makes hundreds of thousands.)
_new_networks = built_directly(SpfNetworks)
_new_target = built_directly(SpfTarget)
_new_problem = built_directly(SpfProblem)
_new_tree = built_directly(SpfTree)


# ---------------------------------------------------------------------------------------------
# Drivers


def _cached_query(cache: dict[DnsQuery, DnsAnswer], name: str, rdtype: str) -> Resolution[DnsAnswer]:
    """Ask once per evaluation: a name queried again is answered from ``cache``."""
    q = DnsQuery.of(name, rdtype)
    cached = cache.get(q)
    if cached is not None:
        return cached
    ans = yield q
    if not isinstance(ans, DnsAnswer):
        raise TypeError(f"expected a DnsAnswer for {q}, got {type(ans).__name__}")
    cache[q] = ans
    return ans


def resolve(gen: Resolution[T], lookup: Callable[[DnsQuery], DnsAnswer]) -> T:
    """Run a sans-I/O evaluation synchronously, answering each query with ``lookup``."""
    try:
        query = next(gen)
        while True:
            query = gen.send(lookup(query))
    except StopIteration as stop:
        return stop.value


async def resolve_async(gen: Resolution[T], lookup: Callable[[DnsQuery], Awaitable[DnsAnswer]]) -> T:
    """Run a sans-I/O evaluation over an asynchronous resolver."""
    try:
        query = next(gen)
    except StopIteration as stop:
        return stop.value
    while True:
        ans = await lookup(query)  # outside the try: a StopIteration from lookup is not ours
        try:
            query = gen.send(ans)
        except StopIteration as stop:
            return stop.value


# ---------------------------------------------------------------------------------------------
# Syntax (sections 4.5, 4.6, 5, 6, 7 and the ABNF of section 12)


class _SyntaxProblem(ValueError):
    """A record, term or macro that does not follow the ABNF: always permerror."""


@dataclass(frozen=True, slots=True)
class _Token:
    """One piece of a macro-string: literal text, an escape (%% %_ %-) or a %{...} macro."""

    kind: Literal["lit", "esc", "macro"]
    text: str
    letter: str = ""
    digits: int | None = None
    reverse: bool = False
    delimiters: str = ""


@dataclass(frozen=True, slots=True)
class _Term:
    """One mechanism or modifier of a record, parsed once however many records share it."""

    text: str
    name: str  # lower-case mechanism or modifier name
    modifier: bool
    qualifier: str = "+"
    spec: tuple[_Token, ...] | None = None  # domain-spec (None: the current domain)
    arg: str | None = None  # the domain-spec as written
    network: _Net | None = None
    network_text: str = ""  # str(network), kept: terms are parsed once and read by every domain
    cidr4: int = 32
    cidr6: int = 128


@dataclass(frozen=True, slots=True)
class _Record:
    """An SPF record parsed: its mechanisms in order and its modifiers."""

    text: str
    mechanisms: tuple[_Term, ...]
    redirect: _Term | None
    exp: _Term | None
    unknown: tuple[_Term, ...]

    @property
    def all_term(self) -> _Term | None:
        return next((m for m in self.mechanisms if m.name == "all"), None)


def _parse_macro_string(text: str, *, explanation: bool) -> tuple[_Token, ...]:
    """Tokenise a macro-string (7.1); ``explanation`` allows SP and the c/r/t letters."""
    tokens: list[_Token] = []
    literal: list[str] = []

    def flush() -> None:
        if literal:
            tokens.append(_Token("lit", "".join(literal)))
            literal.clear()

    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "%":
            nxt = text[i + 1 : i + 2]
            if nxt in _ESCAPES:
                flush()
                tokens.append(_Token("esc", _ESCAPES[nxt]))
                i += 2
                continue
            m = _MACRO_EXPAND_RE.match(text, i)
            if m is None:
                # 7.1: a "%" not followed by "{", "%", "-" or "_" is a syntax error.
                raise _SyntaxProblem(f"invalid macro at {text[i:i + 12]!r}")
            letter, digits, reverse, delimiters = m.groups()
            if letter.lower() not in _MACRO_LETTERS:
                raise _SyntaxProblem(f"unknown macro letter in {m.group(0)!r}")
            if letter.lower() in _EXP_ONLY_LETTERS and not explanation:
                raise _SyntaxProblem(f"macro {m.group(0)!r} is allowed only in explanation text (7.2)")
            if digits and int(digits) == 0:
                raise _SyntaxProblem(f"macro {m.group(0)!r}: the digit transformer must be nonzero (7.3)")
            flush()
            tokens.append(_Token("macro", m.group(0), letter, int(digits) if digits else None,
                                 bool(reverse), delimiters))
            i = m.end()
            continue
        if "!" <= ch <= "~" or (explanation and ch == " "):
            literal.append(ch)
            i += 1
            continue
        raise _SyntaxProblem(f"invalid character {ch!r}")
    flush()
    return tuple(tokens)


def _parse_domain_spec(text: str) -> tuple[_Token, ...]:
    """domain-spec = macro-string domain-end; domain-end = ("." toplabel ["."]) / macro-expand."""
    if not text:
        raise _SyntaxProblem("empty domain-spec")
    tokens = _parse_macro_string(text, explanation=False)
    if tokens[-1].kind == "lit" and not _DOMAIN_END_RE.search(tokens[-1].text):
        raise _SyntaxProblem(f"{text!r} does not end in a valid top-level label or a macro (7.1)")
    return tokens


@lru_cache(maxsize=1 << 16)  # terms are immutable; domains share includes; errors are not cached
def _parse_term(text: str) -> _Term:
    """Parse one directive or modifier (4.6.1, 5, 6)."""
    m = _MODIFIER_RE.fullmatch(text)
    if m:
        name, value = m.group(1).lower(), m.group(2)
        if name in ("redirect", "exp"):
            # Known modifiers are not "greedy" unknown-modifiers: bad syntax is permerror.
            return _Term(text, name, True, spec=_parse_domain_spec(value), arg=value)
        _parse_macro_string(value, explanation=True)  # A/3: unknown modifiers need valid macros
        return _Term(text, name, True)
    m = _MECHANISM_RE.fullmatch(text)
    if m is None:
        raise _SyntaxProblem(f"invalid term {text!r}")
    qualifier, name, rest = m.group(1) or "+", m.group(2).lower(), m.group(3)
    if name not in _MECHANISMS:
        raise _SyntaxProblem(f"unknown mechanism {text!r}")
    bad = _SyntaxProblem(f"invalid {name} mechanism {text!r}")
    if name == "all":
        if rest:
            raise bad
        return _Term(text, name, False, qualifier)
    if name in ("include", "exists"):
        if not rest.startswith(":"):
            raise bad
        return _Term(text, name, False, qualifier, spec=_parse_domain_spec(rest[1:]), arg=rest[1:])
    if name in ("a", "mx"):
        args = _A_MX_ARGS_RE.fullmatch(rest)
        if args is None:
            raise bad
        spec_text, c4, c6 = args.groups()
        cidr4, cidr6 = int(c4 or 32), int(c6 or 128)
        if cidr4 > 32 or cidr6 > 128:
            raise _SyntaxProblem(f"invalid CIDR length in {text!r}")
        spec = _parse_domain_spec(spec_text) if spec_text is not None else None
        return _Term(text, name, False, qualifier, spec=spec, arg=spec_text, cidr4=cidr4, cidr6=cidr6)
    if name == "ptr":
        args = _PTR_ARGS_RE.fullmatch(rest)
        if args is None:
            raise bad
        spec = _parse_domain_spec(args.group(1)) if args.group(1) is not None else None
        return _Term(text, name, False, qualifier, spec=spec, arg=args.group(1))
    if name == "ip4":
        args = _IP4_ARGS_RE.fullmatch(rest)
        if args is None or int(args.group(2) or 32) > 32:
            raise bad
        net = ipaddress.IPv4Network(f"{args.group(1)}/{args.group(2) or 32}", strict=False)
        return _Term(text, name, False, qualifier, network=net, network_text=str(net))
    args = _IP6_ARGS_RE.fullmatch(rest)  # ip6
    if args is None or int(args.group(2) or 128) > 128:
        raise bad
    try:
        addr = ipaddress.IPv6Address(args.group(1))
    except ValueError:
        raise bad from None
    net6 = ipaddress.IPv6Network(f"{addr}/{args.group(2) or 128}", strict=False)
    return _Term(text, name, False, qualifier, network=net6, network_text=str(net6))


def _is_spf(txt: bytes) -> bool:
    """4.5: a record starts with exactly "v=spf1" (any case), then SP or the end."""
    return txt[:6].lower() == b"v=spf1" and (len(txt) == 6 or txt[6:7] == b" ")


def _decode(record: bytes) -> str:
    try:
        return record.decode("ascii")
    except UnicodeDecodeError:
        raise _SyntaxProblem("the record contains non-ASCII characters (3.1)") from None


def _parse_record(text: str) -> _Record:
    """Parse a whole record; any syntax error anywhere is permerror (4.6)."""
    mechanisms: list[_Term] = []
    unknown: list[_Term] = []
    redirect: _Term | None = None
    exp: _Term | None = None
    for word in text[6:].split(" "):  # terms are separated by SP only (4.6.1)
        if not word:
            continue
        term = _parse_term(word)
        if not term.modifier:
            mechanisms.append(term)
        elif term.name == "redirect":
            if redirect is not None:
                raise _SyntaxProblem("redirect appears more than once (6)")
            redirect = term
        elif term.name == "exp":
            if exp is not None:
                raise _SyntaxProblem("exp appears more than once (6)")
            exp = term
        else:
            unknown.append(term)  # 6: unknown modifiers are ignored
    return _Record(text, tuple(mechanisms), redirect, exp, tuple(unknown))


# ---------------------------------------------------------------------------------------------
# Names and macros


@lru_cache(maxsize=1 << 16)  # pure; the same include targets are checked for every domain
def initial_domain_ok(domain: str) -> bool:
    """4.3: a multi-label name with labels of 1..63 octets and a valid top label.

    A domain literal ("[192.0.2.1]") or a bare host name gives "none".
    """
    name = domain[:-1] if domain.endswith(".") else domain
    # (every character within "!".."~": printable ASCII but the space)
    if not name or len(name) > 253 or not (name.isascii() and name.isprintable()) or " " in name:
        return False
    labels = name.split(".")
    if len(labels) < 2 or "" in labels or max(map(len, labels)) > 63:
        return False
    return _TOPLABEL_RE.fullmatch(labels[-1]) is not None


@lru_cache(maxsize=1 << 16)  # pure; the same include targets are read for every domain
def _query_name(expanded: str) -> str | None:
    """Turn an expanded domain-spec into a name to query, or None if no query can be made.

    7.3: a name longer than 253 characters loses labels on the left until it fits. Empty or
    over-long labels cannot be queried: such targets are treated as non-existent (the RFC leaves
    the result undefined; the suite accepts this).
    """
    name = expanded[:-1] if expanded.endswith(".") else expanded
    while len(name) > 253 and "." in name:
        name = name.split(".", 1)[1]
    labels = name.split(".")
    if not name or len(name) > 253 or "" in labels or max(map(len, labels)) > 63:
        return None
    return name


def _transform(token: _Token, value: str) -> str:
    """7.3: split on the delimiters, reverse, keep the right-hand parts, join with dots."""
    delimiters = token.delimiters or "."
    parts = re.split("[" + re.escape(delimiters) + "]", value)
    if token.reverse:
        parts.reverse()
    if token.digits is not None and token.digits < len(parts):
        parts = parts[-token.digits :]
    value = ".".join(parts)
    if token.letter.isupper():
        value = quote(value, safe="")  # 7.3: upper-case macros are URL-escaped (unreserved kept)
    return value


def _static_expand(tokens: tuple[_Token, ...], domain: str) -> str | None:
    """Expand a domain-spec that uses only %{d} and escapes; None if it needs the message."""
    out: list[str] = []
    for token in tokens:
        if token.kind != "macro":
            out.append(token.text)
        elif token.letter.lower() == "d":
            out.append(_transform(token, domain))
        else:
            return None
    return "".join(out)


def _spec_text(term: _Term) -> str:
    return term.arg or ""


# ---------------------------------------------------------------------------------------------
# check_host()


class _Abort(Exception):
    """Ends evaluation with permerror or temperror (caught at the top of check_host)."""

    def __init__(self, result: ResultCode, problem: str) -> None:
        super().__init__(problem)
        self.result = result
        self.problem = problem


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What evaluating one record gave: the result, the mechanism that matched, and where to
    find the explanation of a fail."""

    result: ResultCode
    mechanism: str | None
    exp: tuple[str, _Term] | None  # (domain, exp modifier) of the record that gave "fail"


class _Context:
    """Per-evaluation state shared by check_host and every include/redirect it runs."""

    def __init__(self, ip: _IP, sender: str, helo: str | None, receiver: str, now: int | None) -> None:
        self.ip = ip
        local, at, sender_domain = sender.rpartition("@")
        if not at:
            local, sender_domain = "", sender
        self.local = local or "postmaster"  # 4.3: no local-part -> "postmaster"
        self.sender_domain = sender_domain
        self.sender = f"{self.local}@{sender_domain}"
        self.helo = helo if helo else "unknown"
        self.receiver = receiver
        self.now = now
        self.lookups = 0
        self.voids = 0
        self.trace: list[str] = []
        self.chain: list[str] = []  # "domain term" for each include/redirect being evaluated
        self.cache: dict[DnsQuery, DnsAnswer] = {}
        self.p_cache: dict[str, str] = {}

    # -- bookkeeping -----------------------------------------------------------------------

    def where(self, domain: str) -> str:
        links = self.chain
        if len(links) > 4:
            links = [*links[:2], f"({len(links) - 4} more)", *links[-2:]]
        via = f" via {' -> '.join(links)}" if links else ""
        return f"in {domain}{via}"

    def abort(self, result: ResultCode, message: str, domain: str) -> _Abort:
        problem = f"{message} ({self.where(domain)})"
        self.trace.append(f"{domain}: {result}: {message}")
        return _Abort(result, problem)

    def count_term(self, term: _Term, domain: str) -> None:
        self.lookups += 1
        if self.lookups > MAX_DNS_TERMS:
            # 4.6.4: terms are counted as they are evaluated; the 11th is a permerror.
            raise self.abort("permerror", f"more than {MAX_DNS_TERMS} DNS-querying terms, at "
                             f"{term.text!r} (4.6.4)", domain)

    def count_void(self, term: _Term, domain: str) -> None:
        self.voids += 1
        if self.voids > MAX_VOID_LOOKUPS:
            raise self.abort("permerror", f"more than {MAX_VOID_LOOKUPS} void lookups, at "
                             f"{term.text!r} (4.6.4)", domain)

    # -- DNS ---------------------------------------------------------------------------------

    def query(self, name: str, rdtype: str) -> Resolution[DnsAnswer]:
        return _cached_query(self.cache, name, rdtype)  # (its generator: no level of delegation)

    def addresses(self, name: str, term: _Term | None, domain: str) -> Resolution[list[_IP] | None]:
        """A or AAAA (by the client's IP version); None for a void answer.

        A DNS error is temperror (5), except under ``term=None`` (PTR validation, 5.5) where
        it returns None so the name is skipped.
        """
        rdtype = "A" if self.ip.version == 4 else "AAAA"
        ans = yield from self.query(name, rdtype)
        if ans.status.temporary:
            if term is None:
                return None
            raise self.abort("temperror", f"{rdtype} lookup of {name} for {term.text!r} failed: "
                             f"{ans.status.value}", domain)
        if ans.status != DnsStatus.OK or not ans.records:
            return None
        try:
            return [ipaddress.ip_address(a) for a in ans.addresses()]
        except (dns.exception.DNSException, ValueError) as exc:
            if term is None:
                return None
            raise self.abort("temperror", f"malformed {rdtype} answer for {name}: {exc}", domain) from None

    def validated(self, name: str) -> Resolution[bool]:
        """5.5: a PTR name is validated when its A/AAAA records include the client IP."""
        addrs = yield from self.addresses(name, None, "")
        return bool(addrs) and self.ip in addrs

    def ptr_names(self) -> Resolution[list[str] | None]:
        """PTR names of the client IP, at most 10 (4.6.4); None for an error or void answer."""
        ans = yield from self.query(self.ip.reverse_pointer, "PTR")
        if ans.status != DnsStatus.OK or not ans.records:
            return None
        try:
            names = ans.names()
        except (dns.exception.DNSException, ValueError):
            return None
        return names[:MAX_PTR_NAMES]

    # -- macros (7) ----------------------------------------------------------------------------

    def macro_value(self, letter: str, domain: str) -> Resolution[str]:
        ip = self.ip
        if letter == "p":
            return (yield from self.p_macro(domain))
        if letter == "i":
            if ip.version == 4:
                return str(ip)
            # 7.3 "dot-format": one nibble per label. Upper case as the published suite expects
            # (v-macro-ip6); the case does not matter to DNS.
            return ".".join(ip.exploded.replace(":", "").upper())
        values = {
            "s": self.sender,
            "l": self.local,
            "o": self.sender_domain,
            "d": domain,
            "v": "in-addr" if ip.version == 4 else "ip6",
            "h": self.helo,
            "c": str(ip),
            "r": self.receiver,
        }
        if letter == "t":
            return str(self.now if self.now is not None else int(time.time()))
        return values[letter]

    def p_macro(self, domain: str) -> Resolution[str]:
        """7.3 %{p}: a validated name, preferring <domain> itself, then its subdomains."""
        key = domain.lower().rstrip(".")
        if key in self.p_cache:
            return self.p_cache[key]
        names = (yield from self.ptr_names()) or []
        ordered = ([n for n in names if n == key] + [n for n in names if n.endswith("." + key)]
                   + [n for n in names if n != key and not n.endswith("." + key)])
        value = "unknown"
        for name in ordered:
            if (yield from self.validated(name)):
                value = name
                break
        self.p_cache[key] = value
        return value

    def expand(self, tokens: tuple[_Token, ...], domain: str) -> Resolution[str]:
        out: list[str] = []
        for token in tokens:
            if token.kind == "macro":
                value = yield from self.macro_value(token.letter.lower(), domain)
                out.append(_transform(token, value))
            else:
                out.append(token.text)
        return "".join(out)

    def target(self, term: _Term, domain: str) -> Resolution[str | None]:
        if term.spec is None:
            return domain
        return _query_name((yield from self.expand(term.spec, domain)))


def check_host(ip: str, domain: str, sender: str, *, helo: str | None = None, receiver: str = "unknown",
               now: int | None = None) -> Resolution[SpfResult]:
    """RFC 7208 check_host(): yields DnsQuery, expects DnsAnswer, returns an SpfResult.

    ``sender`` is the MAIL FROM address (or "postmaster@<helo>" for a HELO check, 2.3); a sender
    without a local-part gets "postmaster" (4.3). ``helo`` feeds %{h} ("unknown" when not given),
    ``receiver`` %{r} and ``now`` %{t} (the clock when not given). An unparseable ``ip`` raises
    ValueError: that is a caller's bug, not a property of the domain.
    """
    address = ipaddress.ip_address(ip.strip())
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # 5/9: IPv4-mapped IPv6 is treated as IPv4
    ctx = _Context(address, sender, helo, receiver, now)
    domain = domain.strip()
    domain = domain[:-1] if domain.endswith(".") else domain
    try:
        outcome = yield from _check(ctx, domain, 0)
    except _Abort as stop:
        return SpfResult(stop.result, problem=stop.problem, lookups=ctx.lookups,
                         void_lookups=ctx.voids, trace=tuple(ctx.trace))
    explanation = None
    if outcome.result == "fail" and outcome.exp is not None:
        try:
            explanation = yield from _explain(ctx, *outcome.exp)
        except _Abort:  # 6.2: nothing about exp may change the result
            explanation = None
    return SpfResult(outcome.result, explanation, outcome.mechanism, None, ctx.lookups, ctx.voids,
                     tuple(ctx.trace))


def _select_record(ctx: _Context, domain: str) -> Resolution[_Record | None]:
    """4.4 and 4.5: fetch TXT, keep the v=spf1 records, require exactly one."""
    ans = yield from ctx.query(domain, "TXT")
    if ans.status.temporary:
        raise ctx.abort("temperror", f"TXT lookup of {domain} failed: {ans.status.value}", domain)
    if ans.status != DnsStatus.OK:
        ctx.trace.append(f"{domain}: no TXT records ({ans.status.value})")
        return None
    try:
        records = [t for t in ans.txt() if _is_spf(t)]
    except (dns.exception.DNSException, ValueError) as exc:
        raise ctx.abort("temperror", f"malformed TXT answer for {domain}: {exc}", domain) from None
    if not records:
        ctx.trace.append(f"{domain}: no SPF record")
        return None
    if len(records) > 1:
        raise ctx.abort("permerror", f"{len(records)} SPF records published (4.5)", domain)
    try:
        text = _decode(records[0])
        ctx.trace.append(f"{domain}: record {text!r}")
        return _parse_record(text)
    except _SyntaxProblem as exc:
        raise ctx.abort("permerror", f"syntax error: {exc}", domain) from None


def _check(ctx: _Context, domain: str, depth: int) -> Resolution[_Outcome]:
    """One check_host() invocation (4): the top-level one, or an include/redirect target."""
    if depth > MAX_DEPTH:
        raise ctx.abort("permerror", "include/redirect nesting too deep", domain)
    if not initial_domain_ok(domain):
        ctx.trace.append(f"{domain!r}: not a valid domain name: none (4.3)")
        return _Outcome("none", None, None)
    record = yield from _select_record(ctx, domain)
    if record is None:
        return _Outcome("none", None, None)
    for term in record.mechanisms:
        if (yield from _matches(ctx, term, domain, depth)):
            result = _QUALIFIER_RESULT[term.qualifier]
            ctx.trace.append(f"{domain}: {term.text} matched: {result}")
            exp = (domain, record.exp) if record.exp is not None else None
            return _Outcome(result, term.text, exp)
    if record.redirect is not None and record.all_term is None:  # 6.1: ignored if "all" present
        term = record.redirect
        ctx.count_term(term, domain)
        target = yield from ctx.target(term, domain)
        if target is None or not initial_domain_ok(target):
            raise ctx.abort("permerror", f"{term.text!r} does not name a valid domain (6.1)", domain)
        ctx.trace.append(f"{domain}: {term.text} -> {target}")
        ctx.chain.append(f"{domain} {term.text}")
        outcome = yield from _check(ctx, target, depth + 1)
        ctx.chain.pop()
        if outcome.result == "none":
            raise ctx.abort("permerror", f"{term.text!r}: {target} has no SPF record (6.1)", domain)
        return outcome  # with the target's exp, never ours (6.2)
    ctx.trace.append(f"{domain}: no term matched: neutral (4.7)")
    return _Outcome("neutral", None, None)


def _matches(ctx: _Context, term: _Term, domain: str, depth: int) -> Resolution[bool]:
    """Evaluate one mechanism against the client IP (5)."""
    name = term.name
    if name == "all":
        return True
    if name in ("ip4", "ip6"):
        net = term.network
        hit = net is not None and net.version == ctx.ip.version and ctx.ip in net
        ctx.trace.append(f"{domain}: {term.text}: {'match' if hit else 'no match'}")
        return hit
    ctx.count_term(term, domain)
    target = yield from ctx.target(term, domain)
    if name == "include":
        return (yield from _include(ctx, term, domain, target, depth))
    if target is None:
        ctx.trace.append(f"{domain}: {term.text}: target is not a valid domain name: no match")
        return False
    if name == "a":
        hit = yield from _address_match(ctx, term, domain, target, count_void=True)
    elif name == "mx":
        hit = yield from _mx_match(ctx, term, domain, target)
    elif name == "ptr":
        hit = yield from _ptr_match(ctx, term, domain, target)
    else:  # exists (5.7): an A query whatever the client's IP version
        ans = yield from ctx.query(target, "A")
        if ans.status.temporary:
            raise ctx.abort("temperror", f"A lookup of {target} for {term.text!r} failed: "
                            f"{ans.status.value}", domain)
        hit = ans.status == DnsStatus.OK and bool(ans.records)
        if not hit:
            ctx.count_void(term, domain)
    ctx.trace.append(f"{domain}: {term.text} ({target}): {'match' if hit else 'no match'}")
    return hit


def _include(ctx: _Context, term: _Term, domain: str, target: str | None, depth: int) -> Resolution[bool]:
    """5.2: pass matches; fail/softfail/neutral do not; none is permerror; errors propagate."""
    if target is None or not initial_domain_ok(target):
        raise ctx.abort("permerror", f"{term.text!r} does not name a valid domain (5.2)", domain)
    ctx.trace.append(f"{domain}: {term.text} -> {target}")
    ctx.chain.append(f"{domain} {term.text}")
    outcome = yield from _check(ctx, target, depth + 1)
    ctx.chain.pop()
    if outcome.result == "none":
        raise ctx.abort("permerror", f"{term.text!r}: {target} has no SPF record (5.2)", domain)
    hit = outcome.result == "pass"
    ctx.trace.append(f"{domain}: {term.text} returned {outcome.result}: {'match' if hit else 'no match'}")
    return hit


def _in_network(ip: _IP, addr: _IP, term: _Term) -> bool:
    if addr.version != ip.version:
        return False
    prefix = term.cidr4 if ip.version == 4 else term.cidr6
    return ip in ipaddress.ip_network(f"{addr}/{prefix}", strict=False)


def _address_match(ctx: _Context, term: _Term, domain: str, name: str, *,
                   count_void: bool) -> Resolution[bool]:
    addrs = yield from ctx.addresses(name, term, domain)
    if addrs is None:
        if count_void:
            ctx.count_void(term, domain)
        return False
    return any(_in_network(ctx.ip, addr, term) for addr in addrs)


def _mx_match(ctx: _Context, term: _Term, domain: str, target: str) -> Resolution[bool]:
    """5.4: addresses of each MX host; no implicit MX; over 10 address lookups is permerror."""
    ans = yield from ctx.query(target, "MX")
    if ans.status.temporary:
        raise ctx.abort("temperror", f"MX lookup of {target} for {term.text!r} failed: "
                        f"{ans.status.value}", domain)
    if ans.status != DnsStatus.OK or not ans.records:
        ctx.count_void(term, domain)
        return False
    try:
        hosts = [host for _, host in ans.mx() if host]  # "" is a null MX (RFC 7505): no lookup
    except (dns.exception.DNSException, ValueError) as exc:
        raise ctx.abort("temperror", f"malformed MX answer for {target}: {exc}", domain) from None
    for index, host in enumerate(hosts):
        if index >= MAX_MX_NAMES:
            # 4.6.4: evaluating an mx "MUST NOT result in querying more than 10 address records".
            # Counted per MX record, duplicates included; only reached when the first 10 missed.
            raise ctx.abort("permerror", f"{term.text!r}: {target} has {len(hosts)} MX records, "
                            f"more than {MAX_MX_NAMES} address lookups (4.6.4)", domain)
        if (yield from _address_match(ctx, term, domain, host, count_void=False)):
            return True
    return False


def _ptr_match(ctx: _Context, term: _Term, domain: str, target: str) -> Resolution[bool]:
    """5.5: a validated PTR name equal to or under the target. DNS errors never abort."""
    ans = yield from ctx.query(ctx.ip.reverse_pointer, "PTR")
    if ans.status.temporary:
        return False  # 5.5: an error on the PTR lookup means no match
    if ans.status != DnsStatus.OK or not ans.records:
        ctx.count_void(term, domain)
        return False
    names = (yield from ctx.ptr_names()) or []  # first 10 only, the rest ignored (4.6.4)
    want = target.lower()
    for name in names:
        if (name == want or name.endswith("." + want)) and (yield from ctx.validated(name)):
            return True
    return False


def _explain(ctx: _Context, domain: str, exp: _Term) -> Resolution[str | None]:
    """6.2: fetch and expand the explanation. Every failure just means "no explanation".

    The exp lookup is not a DNS-querying term and is not a void lookup (4.6.4, suite exp-void).
    """
    if exp.spec is None:
        return None
    name = _query_name((yield from ctx.expand(exp.spec, domain)))
    if name is None:
        return None
    ans = yield from ctx.query(name, "TXT")
    if ans.status != DnsStatus.OK:
        ctx.trace.append(f"{domain}: {exp.text}: {ans.status.value}, explanation ignored")
        return None
    try:
        texts = ans.txt()
        if len(texts) != 1:
            raise _SyntaxProblem(f"{len(texts)} TXT records")
        tokens = _parse_macro_string(_decode(texts[0]), explanation=True)
    except (_SyntaxProblem, dns.exception.DNSException, ValueError) as exc:
        ctx.trace.append(f"{domain}: {exp.text}: {exc}, explanation ignored")
        return None
    return (yield from ctx.expand(tokens, domain))


# ---------------------------------------------------------------------------------------------
# analyse(): the static audit


class _Walk:
    """State of one analyse() run."""

    def __init__(self) -> None:
        self.cache: dict[DnsQuery, DnsAnswer] = {}
        self.lookups = 0
        self.voids = 0
        self.fetched = 0
        self.network_runs: list[SpfNetworks] = []
        self.targets: list[SpfTarget] = []
        self.problems: list[SpfProblem] = []
        self.records: list[tuple[str, str]] = []
        self.address_targets: dict[str, None] = {}  # ordered set

    def problem(self, severity: Severity, message: str, chain: tuple[str, ...]) -> None:
        self.problems.append(_new_problem(severity, message, chain))

    def query(self, name: str, rdtype: str) -> Resolution[DnsAnswer]:
        return _cached_query(self.cache, name, rdtype)  # (its generator: no level of delegation)


class _WalkAll(NamedTuple):
    """The all term a walk ends with (a named tuple: each record of a tree makes one)."""

    term: str
    qualifier: str
    domain: str


def analyse(domain: str) -> Resolution[SpfTree]:
    """Walk a domain's whole SPF tree for an audit; not tied to a connecting IP.

    Every include and redirect is followed (loops and chains deeper than the lookup limit are
    cut), DNS-querying terms are counted as RFC 7208 would count them if no term matched, and
    every problem comes with the chain of domains that led to it.
    """
    domain = domain.strip()
    domain = domain[:-1] if domain.endswith(".") else domain
    walk = _Walk()
    top: list[str | None] = [None]
    if not initial_domain_ok(domain):
        walk.problem("warning", f"{domain!r} is not a valid domain name: SPF result none (4.3)", (domain,))
        return _tree(walk, domain, "none", f"{domain!r} is not a valid domain name", None, None)
    found, effective_all = yield from _walk(walk, domain, (domain,), None, top)
    if not found:
        if walk.problems and walk.problems[0].severity == "temperror":
            return _tree(walk, domain, "temperror", walk.problems[0].message, None, None)
        return _tree(walk, domain, "none", f"{domain} publishes no SPF record", None, None)
    if walk.lookups > MAX_DNS_TERMS:
        walk.problem("permerror", f"{walk.lookups} DNS-querying terms across the tree, more than "
                     f"{MAX_DNS_TERMS} (4.6.4)", (domain,))
    if walk.voids > MAX_VOID_LOOKUPS:
        walk.problem("permerror", f"{walk.voids} void lookups across the tree, more than "
                     f"{MAX_VOID_LOOKUPS} (4.6.4)", (domain,))
    if effective_all is None:
        walk.problem("warning", "the record ends without an all term: the default result is neutral (4.7)",
                     (domain,))
    elif effective_all.qualifier == "+":
        walk.problem("warning", f"{effective_all.term} authorises every host on the internet",
                     (domain,))
    elif effective_all.qualifier == "?":
        walk.problem("warning", f"{effective_all.term}: unlisted hosts get neutral, which protects nothing",
                     (domain,))
    first = {p.severity: p.message for p in reversed(walk.problems)}
    if "permerror" in first:
        return _tree(walk, domain, "permerror", first["permerror"], top[0], effective_all)
    if "temperror" in first:
        return _tree(walk, domain, "temperror", first["temperror"], top[0], effective_all)
    return _tree(walk, domain, "ok", None, top[0], effective_all)


def _tree(walk: _Walk, domain: str, result: TreeResult, problem: str | None, record: str | None,
          effective_all: _WalkAll | None) -> SpfTree:
    return _new_tree(
        domain=domain,
        result=result,
        problem=problem,
        record=record,
        all_term=effective_all.term if effective_all else None,
        all_qualifier=effective_all.qualifier if effective_all else None,
        all_domain=effective_all.domain if effective_all else None,
        lookups=walk.lookups,
        void_lookups=walk.voids,
        network_runs=tuple(walk.network_runs),
        targets=tuple(walk.targets),
        problems=tuple(walk.problems),
        records=tuple(walk.records),
        address_targets=tuple(walk.address_targets),
    )


def _txt_strings(presentation: str) -> list[bytes]:
    """The character-strings of one TXT record, unjoined (to spot records split badly)."""
    return list(_txt_strings_cached(presentation))


@lru_cache(maxsize=1 << 16)
def _txt_strings_cached(presentation: str) -> tuple[bytes, ...]:
    try:
        return txt_strings(presentation)
    except (dns.exception.DNSException, ValueError):
        return ()


def _glued_terms(strings: list[bytes]) -> set[str]:
    """Terms formed across a string boundary with no space: 3.3 joins strings as they are."""
    glued: set[str] = set()
    joined = b""
    for index, piece in enumerate(strings):
        if index and joined and not joined.endswith(b" ") and not piece.startswith(b" "):
            left = joined.rsplit(b" ", 1)[-1]
            right = piece.split(b" ", 1)[0]
            if left and right:
                glued.add((left + right).decode("ascii", "replace"))
        joined += piece
    return glued


def _looks_like_fragment(text: str) -> bool:
    """A TXT record that reads like SPF terms without "v=spf1" (a record published in pieces)."""
    words = [w for w in text.split(" ") if w]
    if not words:
        return False
    telling = False
    for word in words:
        try:
            term = _parse_term(word)
        except _SyntaxProblem:
            return False
        if term.modifier and term.name not in ("redirect", "exp"):
            return False
        if term.name in ("include", "ip4", "ip6", "exists", "redirect") or (
                term.name == "all" and word[0] in "+-~?"):
            telling = True
    return telling


@dataclass(frozen=True, slots=True)
class _Reading:
    """What one TXT answer says about the record at a domain, read once per distinct answer
    (domains share includes): the problems found reading it, in order, with no chain yet."""

    outcome: Literal["failed", "none", "several", "undecodable", "ok"]
    problems: tuple[tuple[Severity, str], ...]
    text: str = ""
    size: int = 0
    terms: tuple[_Term, ...] = ()
    redirect: _Term | None = None
    all_term: _Term | None = None
    # What the walk does with the terms, in order: a run of ip4/ip6 networks (network,
    # qualifier), or a term to follow (all terms are left out: the walk reads them apart).
    steps: tuple[tuple[tuple[str, str], ...] | _Term, ...] = ()


@lru_cache(maxsize=1 << 16)  # pure: the domain and the answer's type, status and records decide it
def _read(domain: str, rdtype: str, status: DnsStatus, records: tuple[str, ...]) -> _Reading:
    if status.temporary:
        return _Reading("failed", (("temperror", f"TXT lookup of {domain} failed: {status.value}"),))
    ans = DnsAnswer(DnsQuery(domain, rdtype), status, records)
    try:
        txts = ans.txt() if status == DnsStatus.OK else []
        raw = [_txt_strings(r) for r in records] if status == DnsStatus.OK else []
    except (dns.exception.DNSException, ValueError) as exc:
        return _Reading("failed", (("temperror", f"malformed TXT answer for {domain}: {exc}"),))
    problems: list[tuple[Severity, str]] = []
    spf = [i for i, t in enumerate(txts) if _is_spf(t)]
    for t in txts:
        if not _is_spf(t) and t[:5].lower() == b"v=spf" and not t.lower().startswith(b"v=spf2"):
            problems.append(("warning", f"TXT record {t[:40]!r} looks like SPF but does not start with "
                                        f"exactly 'v=spf1 ' (4.5): it is ignored"))
    if not spf:
        return _Reading("none", tuple(problems))
    if len(spf) > 1:
        problems.append(("permerror", f"{domain} publishes {len(spf)} SPF records (4.5)"))
        return _Reading("several", tuple(problems))
    for i, t in enumerate(txts):
        if i not in spf and _looks_like_fragment(t.decode("ascii", "replace")):
            problems.append(("warning", f"TXT record {t[:60]!r} at {domain} looks like the rest of the "
                                        f"SPF record published as a separate record; TXT records are "
                                        f"never joined (3.3)"))
    data = txts[spf[0]]
    strings = raw[spf[0]] if spf[0] < len(raw) else []
    try:
        text = _decode(data)
    except _SyntaxProblem as exc:
        problems.append(("permerror", f"{domain}: {exc}"))
        return _Reading("undecodable", tuple(problems))
    if len(data) > RECORD_SIZE_HINT:
        problems.append(("warning", f"{domain}: the record is {len(data)} bytes; keep it under "
                                    f"{RECORD_SIZE_HINT} so the answer fits in 512 bytes (3.4)"))
    glued = _glued_terms(strings)
    terms: list[_Term] = []
    redirect: _Term | None = None
    exp_seen = False
    for word in text[6:].split(" "):
        if not word:
            continue
        try:
            term = _parse_term(word)
        except _SyntaxProblem as exc:
            hint = (" (the record's strings are joined without a space here: end the previous string "
                    "with a space, 3.3)") if word in glued else ""
            problems.append(("permerror", f"{domain}: syntax error: {exc}{hint}"))
            continue
        if term.name == "redirect":
            if redirect is not None:
                problems.append(("permerror", f"{domain}: redirect appears more than once (6)"))
                continue
            redirect = term
        elif term.name == "exp":
            if exp_seen:
                problems.append(("permerror", f"{domain}: exp appears more than once (6)"))
            exp_seen = True
            terms.append(term)
        elif term.modifier:
            problems.append(("warning", f"{domain}: unknown modifier {term.text!r} is ignored (6)"))
        else:
            terms.append(term)
    all_term = next((t for t in terms if t.name == "all"), None)
    mechanisms = [t for t in terms if not t.modifier]
    if all_term is not None and mechanisms[-1] is not all_term:
        problems.append(("warning", f"{domain}: terms after {all_term.text!r} are never evaluated"))
    return _Reading("ok", tuple(problems), text, len(data), tuple(terms), redirect, all_term,
                    _steps(terms))


def _steps(terms: list[_Term]) -> tuple[tuple[tuple[str, str], ...] | _Term, ...]:
    """``_Reading.steps``: consecutive ip4/ip6 terms grouped, other terms but all one by one."""
    steps: list[tuple[tuple[str, str], ...] | _Term] = []
    run: list[tuple[str, str]] = []
    for term in terms:
        if term.name in ("ip4", "ip6"):
            run.append((term.network_text, term.qualifier))
        elif term.name != "all":
            if run:
                steps.append(tuple(run))
                run = []
            steps.append(term)
    if run:
        steps.append(tuple(run))
    return tuple(steps)


def _walk(walk: _Walk, domain: str, chain: tuple[str, ...], via: str | None,
          top: list[str | None]) -> Resolution[tuple[bool, _WalkAll | None]]:
    """Read one record and everything below it. Returns (record found, effective all)."""
    walk.fetched += 1
    ans = yield from walk.query(domain, "TXT")
    reading = _read(domain, ans.query.rdtype, ans.status, ans.records)
    problems = walk.problems
    for severity, message in reading.problems:
        problems.append(_new_problem(severity, message, chain))
    outcome = reading.outcome
    if outcome != "ok":
        if outcome == "none" and via is not None:
            walk.problem("permerror", f"{via}: {domain} has no SPF record ({ans.status.value}); "
                         f"an include or redirect of it is a permerror (5.2, 6.1)", chain)
        return outcome not in ("failed", "none"), None
    text = reading.text
    walk.records.append((domain, text))
    if via is None:
        top[0] = text
    all_term = reading.all_term
    if all_term is not None and all_term.qualifier == "+" and via is not None:
        walk.problem("warning", f"{domain}: {all_term.text!r} makes {via} match every host", chain)
    runs = walk.network_runs
    for step in reading.steps:
        if type(step) is tuple:  # (networks: no DNS, not worth a generator each)
            runs.append(_new_networks(domain, chain, step))
        else:
            yield from _walk_term(walk, step, domain, chain, top)  # type: ignore[arg-type]
    redirect = reading.redirect
    if redirect is None:
        effective = _WalkAll(all_term.text, all_term.qualifier, domain) if all_term else None
        return True, effective
    if all_term is not None:
        walk.problem("warning", f"{domain}: {redirect.text!r} is ignored because the record has an "
                     f"all term (6.1)", chain)
        return True, _WalkAll(all_term.text, all_term.qualifier, domain)
    walk.lookups += 1
    target = _walk_target(walk, redirect, domain, chain, "redirect")
    if target is None:
        return True, None
    found, effective = yield from _walk(walk, target, (*chain, target), f"{domain} {redirect.text}", top)
    return True, effective if found else None


def _walk_target(walk: _Walk, term: _Term, domain: str, chain: tuple[str, ...], kind: str) -> str | None:
    """Record an include/redirect target and say whether (and where) to follow it."""
    expanded = _static_expand(term.spec or (), domain)
    if expanded is None:
        walk.targets.append(_new_target("macro", _spec_text(term), term.text, domain, chain))
        walk.problem("warning", f"{domain}: {term.text!r} depends on the message; not followed", chain)
        return None
    target = _query_name(expanded)
    if target is None or not initial_domain_ok(target):
        walk.problem("permerror", f"{domain}: {term.text!r} does not name a valid domain", chain)
        return None
    walk.targets.append(_new_target(kind, target, term.text, domain, chain))
    lowered = [c.lower() for c in chain]
    if target.lower() in lowered:
        loop = " -> ".join((*chain[lowered.index(target.lower()):], target))
        walk.problem("permerror", f"{kind} loop: {loop} (every pass costs a lookup, 4.6.4)", chain)
        return None
    if len(chain) > MAX_DNS_TERMS:
        walk.problem("permerror", f"{domain}: include/redirect chain deeper than {MAX_DNS_TERMS}; "
                     f"not followed further (4.6.4)", chain)
        return None
    if walk.fetched >= MAX_TREE_RECORDS:
        walk.problem("permerror", f"the tree has more than {MAX_TREE_RECORDS} records; analysis stopped",
                     chain)
        return None
    return target


def _walk_term(walk: _Walk, term: _Term, domain: str, chain: tuple[str, ...],
               top: list[str | None]) -> Resolution[None]:
    name = term.name
    if name in ("ip4", "ip6"):
        walk.network_runs.append(_new_networks(domain, chain, ((term.network_text, term.qualifier),)))
        return
    if name == "all":
        return
    if name == "exp":
        expanded = _static_expand(term.spec or (), domain)
        walk.targets.append(_new_target("exp" if expanded is not None else "macro",
                                      expanded if expanded is not None else _spec_text(term),
                                      term.text, domain, chain))
        return
    walk.lookups += 1
    if name == "include":
        target = _walk_target(walk, term, domain, chain, "include")
        if target is not None:
            yield from _walk(walk, target, (*chain, target), f"{domain} {term.text}", top)
        return
    if term.spec is None:
        expanded: str | None = domain
    else:
        expanded = _static_expand(term.spec, domain)
    if name == "ptr":
        walk.targets.append(_new_target("ptr", expanded or _spec_text(term), term.text, domain, chain))
        walk.problem("warning", f"{domain}: {term.text!r}: the ptr mechanism is slow and should not "
                     f"be used (5.5)", chain)
        return
    if expanded is None:
        walk.targets.append(_new_target("macro", _spec_text(term), term.text, domain, chain))
        return
    target = _query_name(expanded)
    if target is None:
        walk.problem("warning", f"{domain}: {term.text!r} names no valid domain: it never matches", chain)
        return
    walk.targets.append(_new_target(name, target, term.text, domain, chain))
    if name == "a":
        walk.address_targets[target.lower()] = None
    answers: list[DnsAnswer] = []
    for rdtype in {"a": ("A", "AAAA"), "mx": ("MX",)}.get(name, ("A",)):
        answers.append((yield from walk.query(target, rdtype)))
    failed = [a for a in answers if a.status.temporary]
    if failed:
        walk.problem("temperror", f"{domain}: {term.text!r}: {failed[0].query.rdtype} lookup of "
                     f"{target} failed: {failed[0].status.value}", chain)
        return
    if all(a.status != DnsStatus.OK or not a.records for a in answers):
        walk.voids += 1
        walk.problem("warning", f"{domain}: {term.text!r}: {target} has no "
                     f"{'/'.join(a.query.rdtype for a in answers)} records (a void lookup, 4.6.4)", chain)
        return
    if name == "mx":
        try:
            hosts = [host for _, host in answers[0].mx()]
        except (dns.exception.DNSException, ValueError):
            return
        real = [h for h in hosts if h]
        walk.address_targets.update(dict.fromkeys(real[:MAX_MX_NAMES]))
        if len(real) > MAX_MX_NAMES:
            walk.problem("permerror", f"{domain}: {term.text!r}: {target} has {len(real)} MX records; "
                         f"more than {MAX_MX_NAMES} address lookups is a permerror (4.6.4)", chain)
        if len(real) < len(hosts):
            walk.problem("warning", f"{domain}: {term.text!r}: {target} has a null MX (RFC 7505); "
                         f"it authorises no host", chain)
