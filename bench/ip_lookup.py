"""IP resolution: lookups/s against 100,000 workspace ranges and a 100,000-network .mmdb.

    .venv/bin/python bench/ip_lookup.py
    .venv/bin/python bench/ip_lookup.py --db postgres --ranges 20000 --lookups 200000

Steps, in this process (no server: the collector calls the resolver in-process): write
--ranges random non-overlapping workspace ranges (IPv4 /24../32 and some IPv6 /48../64)
as a CSV and upload it with `upload_ranges` into a fresh database; load them into an
`IpResolver`; look up --lookups random addresses (half inside a range) and check every
inside one found its range. Then build a GeoIP2 Domain database of --networks networks
with mmdb_writer and do the same against it, for a workspace without ranges (every
lookup reaches the .mmdb). Also timed: the upload, the first load, and `refresh` (the
one-query check the collector makes to see whether a workspace's ranges changed).
"""

from __future__ import annotations

import argparse
import random
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchkit as bk

TARGET = 100_000  # lookups/s (issue 3: IP resolution against a 100,000-range database)
IPV4_FIRST_BLOCK = 1 << 16  # 1.0.0.0/24
IPV4_LAST_BLOCK = 223 << 16  # below multicast
IPV6_BASE = 0x2A00 << 112  # 2a00::/12, a real allocation of RIPE


def _v4(n: int) -> str:
    return socket.inet_ntop(socket.AF_INET, n.to_bytes(4, "big"))


def _v6(n: int) -> str:
    return socket.inet_ntop(socket.AF_INET6, n.to_bytes(16, "big"))


def public_v4_blocks(rnd: random.Random, count: int, taken: set[int]) -> list[int]:
    """Distinct random public /24 blocks (their first address >> 8)."""
    from intently.ingest.resolvers import is_special_ip

    out: list[int] = []
    while len(out) < count:
        b = rnd.randrange(IPV4_FIRST_BLOCK, IPV4_LAST_BLOCK)
        if b in taken or is_special_ip(4, b << 8) or is_special_ip(4, (b << 8) | 255):
            continue
        taken.add(b)
        out.append(b)
    return out


def make_ranges(rnd: random.Random, count: int, v6_share: float) -> list[tuple[int, int, int]]:
    """(version, first, last) of `count` non-overlapping networks: each in its own /24 or /48."""
    v6_count = int(count * v6_share)
    out: list[tuple[int, int, int]] = []
    for b in public_v4_blocks(rnd, count - v6_count, set()):
        prefix = rnd.randint(24, 32)
        size = 1 << (32 - prefix)
        first = (b << 8) + rnd.randrange(0, 256, size)
        out.append((4, first, first + size - 1))
    sixes: set[int] = set()
    while len(sixes) < v6_count:
        sixes.add(rnd.randrange(0, 1 << 36))  # a /48 under 2a00::/12
    for s in sixes:
        prefix = rnd.randint(48, 64)
        first = IPV6_BASE | (s << 80) | (rnd.randrange(0, 1 << (prefix - 48)) << (128 - prefix))
        out.append((6, first, first + (1 << (128 - prefix)) - 1))
    rnd.shuffle(out)
    return out


def cidr(version: int, first: int, last: int) -> str:
    bits = 32 if version == 4 else 128
    prefix = bits - (last - first + 1).bit_length() + 1
    return f"{_v4(first) if version == 4 else _v6(first)}/{prefix}"


def sample_ips(
    rnd: random.Random, networks: list[tuple[int, int, int]], count: int
) -> tuple[list[str], list[int]]:
    """`count` addresses, alternately inside a random network and random public IPv4 (the
    second half mostly misses); with the index of the network each inside one is in."""
    ips: list[str] = []
    inside: list[int] = []
    for i in range(count):
        if i % 2 == 0:
            k = rnd.randrange(len(networks))
            version, first, last = networks[k]
            n = rnd.randint(first, last)
            ips.append(_v4(n) if version == 4 else _v6(n))
            inside.append(k)
        else:
            ips.append(_v4(rnd.randrange(IPV4_FIRST_BLOCK << 8, IPV4_LAST_BLOCK << 8)))
            inside.append(-1)
    return ips, inside


def timed_lookups(resolver: Any, ws: int, ips: list[str]) -> tuple[float, list[Any]]:
    lookup = resolver.lookup
    meter = bk.CpuMeter([], postgres=False)
    bk.settle(meter)
    t0 = time.perf_counter()
    found = [lookup(ws, ip) for ip in ips]
    return time.perf_counter() - t0, found


def check_found(
    found: list[Any], inside: list[int], domains: list[str], what: str
) -> tuple[int, list[str]]:
    """Matches, and problems: an inside address that missed or found another domain."""
    problems: list[str] = []
    for m, k in zip(found, inside, strict=True):
        if k >= 0 and (m is None or m.domain != domains[k]):
            problems.append(f"{what}: expected {domains[k]}, got {m}")
    return sum(m is not None for m in found), problems


def open_database(kind: str) -> bk.Database:
    return bk.fresh_postgres() if kind == "postgres" else bk.fresh_sqlite("ip_lookup")


def main(argv: list[str] | None = None) -> list[bk.Check]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--ranges", type=int, default=100_000, help="workspace ranges")
    parser.add_argument("--networks", type=int, default=100_000, help=".mmdb networks")
    parser.add_argument("--lookups", type=int, default=1_000_000, help="per measured run")
    parser.add_argument("--ipv6-share", type=float, default=0.1, help="of the ranges")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--settle", type=float, default=bk.OPTIONS.settle_seconds)
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    bk.OPTIONS.settle_seconds = max(0.0, args.settle)

    from mmdb_writer import MMDBWriter
    from netaddr import IPNetwork, IPSet

    from intently.auth.repository import workspace_id_by_name
    from intently.auth.service import generate_key
    from intently.ingest.resolvers import IpResolver, upload_ranges
    from intently.kit.db import make_engine
    from intently.kit.migrate import migrate

    rnd = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="intently-bench-ip-"))
    db = open_database(args.db)
    payload: dict[str, Any] = {"db": args.db, "ranges": args.ranges, "networks": args.networks,
                               "lookups": args.lookups}  # fmt: skip
    info: list[str] = []
    problems: list[str] = []
    try:
        migrate(db.url)
        engine = make_engine(db.url)
        generate_key(engine, bk.WORKSPACE, bk.EMAIL)
        generate_key(engine, bk.WORKSPACE + "-mmdb", bk.EMAIL)
        with engine.connect() as conn:
            ws = workspace_id_by_name(conn, bk.WORKSPACE) or 0
            ws_mmdb = workspace_id_by_name(conn, bk.WORKSPACE + "-mmdb") or 0

        bk.say(f"ip lookup on {args.db}: {args.ranges:,} ranges, {args.lookups:,} lookups a run")
        ranges = make_ranges(rnd, args.ranges, args.ipv6_share)
        domains = [f"bench-{k}.example.com" for k in range(len(ranges))]
        csv_path = tmp / "ranges.csv"
        with csv_path.open("w") as fh:
            fh.write("network,domain,company\n")
            for k, (version, first, last) in enumerate(ranges):
                fh.write(f"{cidr(version, first, last)},{domains[k]},Company {k}\n")
        # PostgreSQL here runs with autovacuum off; without statistics its plans for the
        # upload's lookups by network stay those of an empty table (see bench/README.md).
        analyzer = (
            bk.AutoAnalyze().start() if args.db == "postgres" and bk.AutoAnalyze.needed() else None
        )
        t0 = time.perf_counter()
        try:
            report = upload_ranges(engine, ws, csv_path)
        finally:
            if analyzer is not None:
                analyzer.stop()
        upload_s = time.perf_counter() - t0
        if report.accepted != len(ranges):
            problems.append(f"upload accepted {report.accepted} of {len(ranges)}: {report}")
        info.append(f"upload_ranges: {len(ranges):,} ranges in {upload_s:.1f} s "
                    f"({len(ranges) / upload_s:,.0f} ranges/s)")  # fmt: skip
        bk.say("   " + info[-1])

        resolver = IpResolver(engine, [])
        t0 = time.perf_counter()
        resolver.refresh(ws)  # the first call loads
        load_s = time.perf_counter() - t0
        checks_s = []
        for _ in range(50):
            t0 = time.perf_counter()
            resolver.refresh(ws)
            checks_s.append(time.perf_counter() - t0)
        refresh_ms = statistics.median(checks_s) * 1000
        info.append(f"first load of {len(ranges):,} ranges: {load_s * 1000:,.0f} ms; "
                    f"refresh check (unchanged): median {refresh_ms:.2f} ms")  # fmt: skip
        bk.say("   " + info[-1])

        ips, inside = sample_ips(rnd, ranges, args.lookups)
        seconds, found = timed_lookups(resolver, ws, ips)
        ranges_rate = len(ips) / seconds
        matched, bad = check_found(found, inside, domains, "ranges")
        problems += bad
        bk.say(f"   ranges: {len(ips):,} lookups in {seconds:.2f} s = {ranges_rate:,.0f}/s, "
               f"{matched:,} matched")  # fmt: skip
        resolver.close()

        bk.say(f"-- building a GeoIP2 Domain .mmdb of {args.networks:,} networks")
        t0 = time.perf_counter()
        blocks = public_v4_blocks(rnd, args.networks, set())
        nets = [(4, b << 8, (b << 8) | 255) for b in blocks]
        writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoIP2-Domain")
        mmdb_domains = [f"mmdb-{k % 20_000}.example.com" for k in range(len(nets))]
        for (version, first, last), domain in zip(nets, mmdb_domains, strict=True):
            writer.insert_network(
                IPSet([IPNetwork(cidr(version, first, last))]), {"domain": domain}
            )
        mmdb_path = tmp / "GeoIP2-Domain-bench.mmdb"
        writer.to_db_file(str(mmdb_path))
        info.append(f".mmdb of {len(nets):,} networks built in {time.perf_counter() - t0:.1f} s "
                    f"({mmdb_path.stat().st_size / 1e6:.1f} MB)")  # fmt: skip
        bk.say("   " + info[-1])

        resolver = IpResolver(engine, [str(mmdb_path)])
        resolver.refresh(ws_mmdb)
        ips, inside = sample_ips(rnd, nets, args.lookups)
        seconds, found = timed_lookups(resolver, ws_mmdb, ips)
        mmdb_rate = len(ips) / seconds
        matched, bad = check_found(found, inside, mmdb_domains, "mmdb")
        problems += bad
        bk.say(f"   mmdb: {len(ips):,} lookups in {seconds:.2f} s = {mmdb_rate:,.0f}/s, "
               f"{matched:,} matched")  # fmt: skip
        resolver.close()
        engine.dispose()
    finally:
        db.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)

    note = f"{len(problems)} WRONG ANSWERS" if problems else "every inside address found"
    checks = [
        bk.Check(f"ip lookup, {args.ranges:,} workspace ranges", ranges_rate, "lookups/s",
                 TARGET, note=note),
        bk.Check(f"ip lookup, .mmdb Domain {args.networks:,} networks", mmdb_rate, "lookups/s",
                 TARGET, note=note),
    ]  # fmt: skip
    bk.report(f"ip lookup ({args.db})", checks)
    for line in info:
        bk.say(f"  info: {line}")
    for p in problems[:5]:
        bk.say(f"  problem: {p}")
    payload |= {"checks": bk.check_dicts(checks), "info": info, "problems": problems[:100]}
    bk.say(f"results: {bk.save_results(f'ip_lookup-{args.db}', payload)}")
    if args.strict and (problems or not all(c.passed for c in checks)):
        sys.exit(1)
    return checks


if __name__ == "__main__":
    main()
