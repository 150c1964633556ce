"""Bulk DNS audit benchmark: ours against stock dnspython and checkdmarc, on one local Knot server.

    python benchmarks/bulk_dns.py [--domains 10000] [--runs 3] [--stock-domains 500]
                                  [--checkdmarc-domains 200] [--profile-domains 2000] [--no-profile]

Writes N synthetic domains (``dNNNNN.example``: MX to four shared gateway hosts, an SPF tree
three includes deep whose includes are shared between domains, DMARC, MTA-STS, TLS-RPT, DKIM
selector1 as a CNAME for a quarter of them) as zone files in a temporary directory, serves them
from one knotd (``tests/dnsserver.py`` ``KnotServer``, so Knot DNS must be installed) and measures:

(a) ours, end to end: ``python -m auditor domains FILE --nameserver 127.0.0.1:PORT --format json
    --out DIR`` in a subprocess (interpreter start, collection, checks, JSON report written), with
    the package's bytecode compiled first as pip does when it installs it, ``--runs`` times (the
    speed of a shared virtual machine wanders by a fifth from one run to the next): each run is
    printed, and the median is the figure compared;
(b) dnspython's stock ``dns.asyncresolver.Resolver`` (no cache, default settings, so no EDNS)
    asking, one await after another, the queries each domain's audit used (as our run recorded
    them, shared names asked again for every domain), on the first ``--stock-domains`` domains,
    extrapolated to N;
(c) checkdmarc 6.0.4 ``check_domains`` (its bulk mode) on the first ``--checkdmarc-domains``
    domains, extrapolated to N. It needs ``pip install -e '.[bench]'`` (checkdmarc 6.0.4).
    It is pointed at Knot by passing
    ``nameservers=[dns.nameserver.Do53Nameserver("127.0.0.1", PORT)]`` (checkdmarc accepts
    dnspython Nameserver objects, which carry the port). Its MTA-STS policy download (HTTPS to
    ``mta-sts.DOMAIN``, which would ask the system resolver) is replaced by an immediate
    download error, and getaddrinfo refuses every name but localhost, so only 127.0.0.1 is
    contacted; TLS checks of MX hosts are off (its default).

Then it prints domains per second for each, the ratios, where the CPU of run (a) went (our
processes, user and system, and knotd's: the two cores are shared), and the phases and a cProfile
summary of an in-process run of ours (collection with the MTA-STS policies, checks and the JSON
report's text: the CLI's workers' work, here in three phases one after the other where the
workers judge and write each block as soon as it is collected, with the cyclic garbage
collector paused as the CLI's workers run) on ``--profile-domains`` domains.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import json
import platform
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from auditor.bulk import (  # noqa: E402
    audit_domains,
    bulk_json,
    merge_parts,
    read_domains,
    report_text,
    written_part,
)
from auditor.cli import _registry  # noqa: E402
from auditor.dnscollect import collect_with_policies  # noqa: E402
from auditor.dnsevidence import DomainDns  # noqa: E402
from auditor.dnsresolve import Nameserver, Resolver  # noqa: E402
from auditor.gateways import builtin_profiles  # noqa: E402
from tests.dnsserver import KnotServer  # noqa: E402

DOMAIN_ZONE = "example"
SHARED_ZONE = "mailgw.test"
GATEWAYS = 4
SPF_TOP, SPF_MID, SPF_LEAF = 10, 5, 3  # include fan-in at each of the three levels


def domain_names(n: int) -> list[str]:
    return [f"d{i:05d}.{DOMAIN_ZONE}" for i in range(n)]


def shared_zone() -> str:
    lines = []
    for g in range(GATEWAYS):
        lines.append(f"gw{g} IN A 192.0.2.{10 + g}")
        lines.append(f"gw{g} IN AAAA 2001:db8::{10 + g:x}")
    for leaf in range(SPF_LEAF):
        # A long leaf: over 512 bytes, two character-strings (EDNS keeps it on UDP).
        ips = " ".join(f"ip4:198.51.{leaf}.{i}" for i in range(40))
        text = f"v=spf1 {ips} a:gw{leaf}.{SHARED_ZONE} ~all"
        chunks = " ".join(f'"{text[i:i + 250]}"' for i in range(0, len(text), 250))
        lines.append(f"leaf{leaf}.spf IN TXT {chunks}")
    for mid in range(SPF_MID):
        lines.append(f'mid{mid}.spf IN TXT "v=spf1 ip4:203.0.113.{mid}/32 '
                     f'include:leaf{mid % SPF_LEAF}.spf.{SHARED_ZONE} ~all"')
    for top in range(SPF_TOP):
        lines.append(f'top{top}.spf IN TXT "v=spf1 include:mid{top % SPF_MID}.spf.{SHARED_ZONE} '
                     f'ip4:192.0.2.{100 + top} ~all"')
    lines.append('dkim IN TXT "v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQC"')
    return "\n".join(lines)


def domain_zone(names: list[str]) -> str:
    lines = []
    for i, name in enumerate(names):
        label = name.removesuffix(f".{DOMAIN_ZONE}")
        g1, g2 = i % GATEWAYS, (i + 1) % GATEWAYS
        lines.append(f"{label} IN MX 10 gw{g1}.{SHARED_ZONE}.")
        lines.append(f"{label} IN MX 20 gw{g2}.{SHARED_ZONE}.")
        lines.append(f'{label} IN TXT "v=spf1 include:top{i % SPF_TOP}.spf.{SHARED_ZONE} -all"')
        lines.append(f'_dmarc.{label} IN TXT "v=DMARC1; p={("none", "quarantine", "reject")[i % 3]}; '
                     f'rua=mailto:dmarc@{name}"')
        lines.append(f'_mta-sts.{label} IN TXT "v=STSv1; id=2026{i:06d}"')
        lines.append(f'_smtp._tls.{label} IN TXT "v=TLSRPTv1; rua=mailto:tls@{name}"')
        if i % 4 == 0:
            lines.append(f"selector1._domainkey.{label} IN CNAME dkim.{SHARED_ZONE}.")
    return "\n".join(lines)


# -- (a) ours ---------------------------------------------------------------------------------


def run_ours_cli(domain_file: Path, address: tuple[str, int], out: Path,
                 server_pid: int | None = None) -> tuple[float, str, str]:
    """Run (a); returns the seconds, the CLI's summary line and where the CPU went."""
    command = [sys.executable, "-m", "auditor", "domains", str(domain_file), "--nameserver",
               f"{address[0]}:{address[1]}", "--format", "json", "--out", str(out)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_before = _cpu_seconds(server_pid)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # (the CLI and its workers)
    server_after = _cpu_seconds(server_pid)
    if done.returncode != 0:
        raise SystemExit(f"our CLI failed ({done.returncode}):\n{done.stderr}")
    user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
    cpu = f"CPU: ours {user:.2f} s user + {system:.2f} s system"
    if server_before is not None and server_after is not None:
        cpu += f", knotd {server_after - server_before:.2f} s"
    return elapsed, done.stderr.strip().splitlines()[-1], cpu


def _cpu_seconds(pid: int | None) -> float | None:
    """A process's CPU time (user + system) from /proc, or None where that cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError, TypeError):
        return None
    import os

    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ours_in_process(names: list[str], address: tuple[str, int]) -> tuple[list[DomainDns], dict[str, float]]:
    was_enabled = gc.isenabled()
    gc.disable()  # as in the CLI's workers (auditor.bulk.run_job)
    try:
        return _ours_in_process(names, address)
    finally:
        gc.freeze()  # (what was made is kept to the end: no collection walks it)
        if was_enabled:
            gc.enable()


def _ours_in_process(names: list[str], address: tuple[str, int]) -> tuple[list[DomainDns], dict[str, float]]:
    phases: dict[str, float] = {}
    started = time.perf_counter()
    wanted, rejected = read_domains(names)
    resolver = Resolver([Nameserver(*address)], timeout=3.0, concurrency=256)
    recorded = asyncio.run(collect_with_policies(wanted, resolver, None, 3.0))  # (no DKIM, as run_job)
    phases["collect"] = time.perf_counter() - started
    mark = time.perf_counter()
    report = audit_domains(recorded, _registry(), builtin_profiles(), rejected=rejected,
                           resolvers=[f"{address[0]}:{address[1]}"])
    phases["checks"] = time.perf_counter() - mark
    mark = time.perf_counter()  # the JSON report's text, as the CLI's workers and parent write it
    with tempfile.TemporaryFile() as text_file:
        part = written_part(report, resolver.sent, text_file, with_findings=False)
        text_file.flush()
        domains, findings, _ = merge_parts(wanted, [part], [text_file])
        report_text(bulk_json(domains, findings, rejected, report.resolvers, report.generated_at))
    phases["report"] = time.perf_counter() - mark
    phases["queries"] = resolver.sent
    return recorded, phases


def profile_ours(names: list[str], address: tuple[str, int], top: int = 25) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    ours_in_process(names, address)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


# -- (b) stock dnspython ----------------------------------------------------------------------


async def _stock(queries: list[tuple[str, str]], address: tuple[str, int]) -> int:
    import dns.asyncresolver
    import dns.exception
    import dns.resolver

    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = [address[0]]
    resolver.port = address[1]
    failures = 0
    for name, rdtype in queries:  # one by one
        try:
            await resolver.resolve(name, rdtype, raise_on_no_answer=False, lifetime=5.0)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoNameservers, dns.exception.Timeout):
            failures += 1
    return failures


def run_stock(recorded: list[DomainDns], address: tuple[str, int]) -> tuple[float, int]:
    queries = [(a.query.name, a.query.rdtype) for d in recorded for a in d.answers]
    started = time.perf_counter()
    asyncio.run(_stock(queries, address))
    return time.perf_counter() - started, len(queries)


# -- (c) checkdmarc ---------------------------------------------------------------------------


def run_checkdmarc(names: list[str], address: tuple[str, int]) -> float | None:
    code = f"""
import socket, sys, time, warnings
warnings.simplefilter("ignore")
_real = socket.getaddrinfo
def _local_only(host, *args, **kwargs):
    if host not in ("127.0.0.1", "localhost", None):
        raise socket.gaierror(f"benchmark: {{host}} is not 127.0.0.1")
    return _real(host, *args, **kwargs)
socket.getaddrinfo = _local_only
import dns.nameserver
import checkdmarc, checkdmarc.mta_sts as m
def _no_download(domain, *args, **kwargs):
    raise m.MTASTSPolicyDownloadError("benchmark: no HTTPS download")
m.download_mta_sts_policy = _no_download
names = sys.stdin.read().split()
ns = [dns.nameserver.Do53Nameserver({address[0]!r}, {address[1]})]
started = time.perf_counter()
results = checkdmarc.check_domains(names, nameservers=ns, timeout=2.0)
elapsed = time.perf_counter() - started
results = results if isinstance(results, list) else [results]
ok = sum(1 for r in results if r["spf"].get("valid") and r["dmarc"].get("valid"))
print(elapsed, ok, len(results))
"""
    try:
        done = subprocess.run([sys.executable, "-c", code], input="\n".join(names), capture_output=True,
                              text=True, timeout=900, check=False)
    except subprocess.TimeoutExpired:
        print("  checkdmarc: did not finish in 900 s")
        return None
    if done.returncode != 0:
        print(f"  checkdmarc failed: {done.stderr.strip().splitlines()[-1:]}")
        return None
    elapsed, ok, total = done.stdout.split()
    print(f"  checkdmarc: {total} domains checked, {ok} with valid SPF and DMARC")
    return float(elapsed)


# -- main -------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domains", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3, help="runs of (a); the median is compared")
    parser.add_argument("--stock-domains", type=int, default=500)
    parser.add_argument("--checkdmarc-domains", type=int, default=200)
    parser.add_argument("--profile-domains", type=int, default=2_000)
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--skip", action="append", default=[], choices=["stock", "checkdmarc"])
    args = parser.parse_args()
    n = args.domains
    names = domain_names(n)
    zones = {DOMAIN_ZONE: domain_zone(names), SHARED_ZONE: shared_zone()}
    results: dict[str, Any] = {}
    with KnotServer(zones, ready_timeout=30.0) as server, tempfile.TemporaryDirectory() as tmp:
        address = server.address
        print(f"knotd serving {n} domains at {address[0]}:{address[1]} "
              f"(ready in {server.startup_seconds:.2f} s)")
        # Every figure depends on it: all three tools run in this interpreter, and here a build
        # without profile-guided optimisation (pyenv's default) audited about a tenth slower.
        print(f"interpreter: {sys.executable} (Python {platform.python_version()}, "
              f"{platform.python_compiler()}, built {platform.python_build()[1]})")
        domain_file = Path(tmp) / "domains.txt"
        domain_file.write_text("\n".join(names) + "\n")

        # The CLI as installed: pip compiles the package's bytecode at install time, while a
        # checkout run with PYTHONDONTWRITEBYTECODE set would compile every module on each start.
        subprocess.run([sys.executable, "-m", "compileall", "-q", "auditor", "checks", "reports"],
                       cwd=ROOT, check=True)
        pid = server.process.pid if server.process is not None else None
        timings = []
        for run in range(1, args.runs + 1):
            out = Path(tmp) / f"out{run}"
            elapsed, summary, cpu = run_ours_cli(domain_file, address, out, pid)
            timings.append(elapsed)
            report = json.loads((out / "domains.json").read_text())
            print(f"(a) ours, CLI end to end, run {run}: {n} domains in {elapsed:.2f} s = "
                  f"{n / elapsed:,.0f} domains/s  [{summary}; "
                  f"{len(report['domains'])} domains in the report]")
            print(f"    {cpu}")
        elapsed = statistics.median(timings)
        results["ours"] = n / elapsed
        if args.runs > 1:
            print(f"(a) ours, median of {args.runs} runs: {elapsed:.2f} s = {n / elapsed:,.0f} domains/s "
                  f"(fastest {min(timings):.2f} s, slowest {max(timings):.2f} s)")

        sample = names[:max(1, min(n, args.stock_domains))]
        recorded, phases = ours_in_process(sample, address)
        if "stock" not in args.skip:
            seconds, count = run_stock(recorded, address)
            results["stock"] = len(sample) / seconds
            print(f"(b) stock dnspython asyncresolver, sequential: {len(sample)} domains "
                  f"({count} queries, {count / seconds:,.0f} q/s) in {seconds:.2f} s = "
                  f"{results['stock']:,.0f} domains/s (extrapolated to {n}: {n / results['stock']:.1f} s)")
        if "checkdmarc" not in args.skip:
            subset = names[:max(1, min(n, args.checkdmarc_domains))]
            seconds_c = run_checkdmarc(subset, address)
            if seconds_c is not None:
                results["checkdmarc"] = len(subset) / seconds_c
                print(f"(c) checkdmarc 6.0.4 check_domains: {len(subset)} domains in {seconds_c:.2f} s = "
                      f"{results['checkdmarc']:,.1f} domains/s "
                      f"(extrapolated to {n}: {n / results['checkdmarc']:.0f} s)")
        for peer in ("checkdmarc", "stock"):
            if peer in results:
                print(f"ours/{peer}: {results['ours'] / results[peer]:,.1f}x")
        print(f"goal: {n} domains in <= 5 s needs {n / 5:,.0f} domains/s; "
              f"ours took {n / results['ours']:.2f} s (median)")

        if not args.no_profile:
            subset = names[:max(1, min(n, args.profile_domains))]
            _, phases = ours_in_process(subset, address)
            print(f"in-process phases for {len(subset)} domains (no profiler): "
                  + ", ".join(f"{k} {v:.2f} s" if k != "queries" else f"{int(v)} queries"
                              for k, v in phases.items()))
            print(f"cProfile of the same ({len(subset)} domains), top functions by own time:")
            print(profile_ours(subset, address))


if __name__ == "__main__":
    main()
