"""Shared parts of the benchmarks: databases, the server under test, load, RSS, reporting.

The load generator is deliberately cheap, because it shares the machine's two cores with
the server: request bodies are encoded before the clock starts, every worker thread keeps
one persistent `http.client` connection, and responses are only checked with byte
searches or a narrow msgspec decode.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
BIN = (
    Path(sys.executable).parent
    if (Path(sys.executable).parent / "intently").exists()
    else (ROOT / ".venv" / "bin")
)
INTENTLY = BIN / "intently"

PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_DB = "intently_bench"
PG_URL = f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/{PG_DB}"

WORKSPACE = "bench"
EMAIL = "bench@example.com"
RSS_LIMIT_MB = 500.0
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Checks a response body; returns a problem description or None.
Validator = Callable[[bytes], str | None]


# ---- output ------------------------------------------------------------------------------


def say(text: str = "") -> None:
    print(text, flush=True)


@dataclass(frozen=True)
class Check:
    """One measured figure against its target."""

    label: str
    value: float
    unit: str
    target: float
    higher_is_better: bool = True
    note: str = ""
    decimals: int = 0

    @property
    def passed(self) -> bool:
        if self.higher_is_better:
            return self.value >= self.target
        return self.value <= self.target

    def line(self) -> str:
        op = ">=" if self.higher_is_better else "<="
        value = f"{self.value:,.{self.decimals}f}"
        target = f"{self.target:,.{self.decimals}f}"
        note = f" [{self.note}]" if self.note else ""
        verdict = "PASS" if self.passed else "MISS"
        return f"{self.label}: {value} {self.unit} (target {op} {target}){note}  {verdict}"


def report(title: str, checks: Sequence[Check]) -> None:
    say()
    say(f"== {title}")
    for c in checks:
        say("  " + c.line())


def source_state() -> dict[str, Any]:
    """The commit measured, and the files of src/ that differ from it (read-only git)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    # Split, not sliced: git() strips the first line's leading status blank.
    status = git("status", "--porcelain", "--", "src").splitlines()
    changed = [line.split(None, 1)[1] for line in status if line.strip()]
    return {"commit": git("rev-parse", "HEAD"), "uncommitted_src": changed}


def save_results(name: str, payload: dict[str, Any]) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    doc = {"when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "source": source_state(), **payload}
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    return path


def check_dicts(checks: Sequence[Check]) -> list[dict[str, Any]]:
    return [
        {
            "label": c.label,
            "value": c.value,
            "unit": c.unit,
            "target": c.target,
            "higher_is_better": c.higher_is_better,
            "passed": c.passed,
            "note": c.note,
        }
        for c in checks
    ]


def common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument(
        "--concurrency",
        default="1,2,4",
        help="comma-separated numbers of client connections to try (default 1,2,4)",
    )
    parser.add_argument(
        "--profile",
        metavar="SECONDS",
        type=float,
        default=0.0,
        help="also sample the server with py-spy (if on PATH or PY_SPY) for this long, "
        "during the last measured run; writes bench/out/*.speedscope.json and a top list",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=OPTIONS.settle_seconds,
        metavar="SECONDS",
        help="before each measured run, wait up to this long for other processes to leave "
        "the CPU idle (default 30; 0 to skip)",
    )
    parser.add_argument(
        "--no-autoanalyze",
        action="store_true",
        help="PostgreSQL with autovacuum off: do not run ANALYZE as autovacuum would",
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")


def apply_common(args: argparse.Namespace) -> list[int]:
    """Apply the shared options; returns the concurrency levels."""
    OPTIONS.settle_seconds = max(0.0, args.settle)
    OPTIONS.autoanalyze = not args.no_autoanalyze
    return parse_levels(args.concurrency)


def parse_levels(text: str) -> list[int]:
    levels = sorted({int(p) for p in text.split(",") if p.strip()})
    if not levels or levels[0] < 1:
        raise SystemExit("--concurrency wants positive integers, e.g. 1,2,4")
    return levels


# ---- request bodies ----------------------------------------------------------------------

_encoder = msgspec.json.Encoder()


def account(n: int, *, rename: bool = False) -> dict[str, Any]:
    return {
        "domain": f"bench-{n}.example.com",
        "name": f"Company {n} (renamed)" if rename else f"Company {n}",
        "externalId": f"EXT-{n}",
        "tags": ["bench"],
    }


def push_bodies(
    start: int, count: int, *, per_request: int = 100, upsert: bool = False, rename: bool = False
) -> list[bytes]:
    """Encoded push bodies for accounts start .. start+count-1, `per_request` each."""
    bodies: list[bytes] = []
    for first in range(start, start + count, per_request):
        last = min(first + per_request, start + count)
        doc: dict[str, Any] = {"accounts": [account(n, rename=rename) for n in range(first, last)]}
        if upsert:
            doc["upsert"] = True
        bodies.append(_encoder.encode(doc))
    return bodies


def expect_status(status: str, count: int) -> Validator:
    """A push response whose results all have `status` (a cheap byte count, no decode)."""
    needle = f'"status":"{status}"'.encode()

    def check(body: bytes) -> str | None:
        found = body.count(needle)
        if found != count:
            return f"{found} of {count} results are {status!r}: {body[:300]!r}"
        return None

    return check


# ---- databases ---------------------------------------------------------------------------


@dataclass
class Database:
    kind: str
    url: str
    path: Path | None = None  # the SQLite file
    _tmpdir: Path | None = None

    def cleanup(self) -> None:
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)


def psql(*commands: str, database: str = "postgres") -> str:
    args = ["psql", "-X", "-q", "-A", "-t", "-h", PG_HOST, "-p", str(PG_PORT), "-U", "postgres"]
    args += ["-d", database, "-v", "ON_ERROR_STOP=1"]
    for c in commands:
        args += ["-c", c]
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"psql failed: {done.stderr.strip()}")
    return done.stdout.strip()


def fresh_postgres(name: str = PG_DB) -> Database:
    """The PostgreSQL database `name`, dropped and created empty."""
    psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", f"CREATE DATABASE {name}")
    return Database("postgres", f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/{name}")


def postgres_exists() -> bool:
    return psql(f"SELECT 1 FROM pg_database WHERE datname = '{PG_DB}'") == "1"


@dataclass
class Options:
    """Run-wide settings that the command-line options change (see common_args)."""

    settle_seconds: float = 30.0  # how long to wait for a quiet machine before a run
    settle_threshold: float = 0.25  # "quiet": other processes use under this many cores
    autoanalyze: bool = True  # emulate autoanalyze when PostgreSQL has autovacuum off
    autoanalyze_interval: float = 2.0


OPTIONS = Options()


class AutoAnalyze:
    """PostgreSQL's autoanalyze, done by hand for a server that runs with autovacuum off.

    Without statistics the planner takes the accounts table for a few rows, and the
    lookups by domain scan every account of the workspace. Like autovacuum, this analyzes
    each table of the bench database once 50 rows + 10% of it changed (checked every 2 s).
    """

    def __init__(self, database: str = PG_DB) -> None:
        self.database = database
        self.runs = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="autoanalyze", daemon=True)

    @staticmethod
    def needed() -> bool:
        return OPTIONS.autoanalyze and psql("SHOW autovacuum") == "off"

    def start(self) -> AutoAnalyze:
        self._thread.start()
        return self

    def check(self) -> None:
        """Analyze the tables that autovacuum would analyze now."""
        query = (
            "SELECT s.relname FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid "
            "WHERE s.n_mod_since_analyze > 50 + 0.1 * greatest(c.reltuples, 0)"
        )
        with self._lock:
            try:
                tables = psql(query, database=self.database).split()
                if tables:
                    psql(f"ANALYZE {', '.join(tables)}", database=self.database)
                    self.runs += 1
            except SystemExit:
                pass

    def _run(self) -> None:
        while not self._stop.wait(OPTIONS.autoanalyze_interval):
            self.check()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def seeded_database(postgres: bool, reuse: bool, name: str, pg_db: str, accounts: int) -> Database:
    """A benchmark's database: with `reuse`, the kept one (bench/out/<name>-<accounts>.sqlite3
    or the PostgreSQL database `pg_db`) if there is one; else a new, empty one."""
    if postgres:
        exists = psql(f"SELECT 1 FROM pg_database WHERE datname = '{pg_db}'") == "1"
        if not (reuse and exists):
            psql(f"DROP DATABASE IF EXISTS {pg_db} WITH (FORCE)", f"CREATE DATABASE {pg_db}")
        return Database("postgres", f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/{pg_db}")
    if reuse:
        return sqlite_at(OUT / f"{name}-{accounts}.sqlite3")
    return fresh_sqlite(name)


def fresh_sqlite(name: str) -> Database:
    tmp = Path(tempfile.mkdtemp(prefix="intently-bench-"))
    path = tmp / f"{name}.sqlite3"
    return Database("sqlite", f"sqlite:///{path}", path=path, _tmpdir=tmp)


def sqlite_at(path: Path) -> Database:
    path.parent.mkdir(parents=True, exist_ok=True)
    return Database("sqlite", f"sqlite:///{path}", path=path)


def count_accounts(db: Database) -> int:
    """Accounts in the bench workspace, read straight from the database (0 when none)."""
    query = (
        "SELECT count(*) FROM accounts a JOIN workspaces w ON w.id = a.workspace_id "
        f"WHERE w.name = '{WORKSPACE}'"
    )
    if db.kind == "sqlite":
        import sqlite3

        if db.path is None or not db.path.exists():
            return 0
        con = sqlite3.connect(db.path)
        try:
            return int(con.execute(query).fetchone()[0])
        except sqlite3.OperationalError:
            return 0
        finally:
            con.close()
    try:
        # The benchmark's own database (each keeps one), not always PG_DB.
        return int(psql(query, database=db.url.rsplit("/", 1)[1]) or 0)
    except SystemExit:
        return 0


def db_size_mb(db: Database) -> float:
    if db.kind == "sqlite" and db.path is not None:
        files = [db.path, Path(f"{db.path}-wal")]
        return sum(f.stat().st_size for f in files if f.exists()) / 1e6
    return float(psql(f"SELECT pg_database_size('{PG_DB}')")) / 1e6


# ---- processes ---------------------------------------------------------------------------


def descendants(pid: int) -> list[int]:
    """pid and every process below it (uvicorn forks workers when asked to)."""
    out = [pid]
    i = 0
    while i < len(out):
        p = out[i]
        i += 1
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                text = Path(f"/proc/{p}/task/{task}/children").read_text()
                out.extend(int(c) for c in text.split())
        except OSError:
            continue
    return out


def rss_mb(pids: Sequence[int]) -> float:
    total_kb = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
                    break
        except OSError:
            continue
    return total_kb / 1024


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU time of the processes."""
    ticks = 0
    for p in pids:
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / CLK_TCK


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle since boot (to see competing load)."""
    parts = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    values = [int(v) for v in parts]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / CLK_TCK


def postgres_pids(database: str | None = None) -> list[int]:
    """Every PostgreSQL process on the machine (the server under test's database work).

    With `database`, the backends serving other databases (other sessions' work on a
    shared machine) are left out; the postmaster and background processes stay in.
    """
    out: list[int] = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if Path(f"/proc/{entry}/comm").read_text().strip() != "postgres":
                    continue
                if database is not None:
                    # A backend's title: "postgres: 15/main: <user> <database> <address> ..."
                    title = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace")
                    parts = title.replace("\0", " ").split()
                    backend = len(parts) >= 5 and ("(" in parts[4] or parts[4] == "[local]")
                    if backend and parts[3] != database:
                        continue
                out.append(int(entry))
            except OSError:
                continue
    return out


@dataclass(frozen=True)
class CpuSample:
    server: float
    client: float
    database: float
    machine: float


class CpuMeter:
    """CPU seconds of the server, this process (the client), PostgreSQL and the machine."""

    def __init__(self, server_pids: Sequence[int], postgres: bool, database: str | None = None):
        self.server_pids = list(server_pids)
        self.postgres = postgres
        self.database = database  # count only this database's backends (see postgres_pids)

    def sample(self) -> CpuSample:
        return CpuSample(
            server=cpu_seconds(self.server_pids),
            client=time.process_time(),
            database=cpu_seconds(postgres_pids(self.database)) if self.postgres else 0.0,
            machine=machine_busy_seconds(),
        )

    @staticmethod
    def delta(a: CpuSample, b: CpuSample) -> CpuSample:
        return CpuSample(
            server=b.server - a.server,
            client=b.client - a.client,
            database=b.database - a.database,
            machine=b.machine - a.machine,
        )


def other_load(meter: CpuMeter, window: float = 1.0) -> float:
    """Cores' worth of CPU used by neither the server, its database nor this process."""
    a = meter.sample()
    time.sleep(window)
    d = CpuMeter.delta(a, meter.sample())
    return max(0.0, d.machine - d.server - d.client - d.database) / window


def settle(meter: CpuMeter) -> None:
    """Wait (up to OPTIONS.settle_seconds) until other processes leave the cores mostly idle.

    Other sessions may run test suites on this machine; a run that starts while they do
    measures them too. The wait is bounded: a busy machine is reported, not waited out.
    """
    if OPTIONS.settle_seconds <= 0:
        return
    deadline = time.monotonic() + OPTIONS.settle_seconds
    load = other_load(meter, 0.5)
    while load > OPTIONS.settle_threshold and time.monotonic() < deadline:
        load = other_load(meter, 1.0)
    if load > OPTIONS.settle_threshold:
        say(f"   (machine busy: other processes use {load * 100:.0f}% of a core)")


class RssSampler:
    """Samples the server's RSS (with its children) in the background; keeps the peak."""

    def __init__(self, pid: int, interval: float = 0.1):
        self.pid = pid
        self.interval = interval
        self.peak_mb = 0.0
        self.last_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss", daemon=True)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def sample(self) -> float:
        self.last_mb = rss_mb(descendants(self.pid))
        self.peak_mb = max(self.peak_mb, self.last_mb)
        return self.last_mb

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`intently serve` on a free port, its API key, and its RSS sampler.

    `args` are added to the command line (`--no-worker`, `--workers 2`) and `env` to the
    environment (`INTENTLY_RATE_LIMIT_PER_MINUTE`, ...).
    """

    def __init__(
        self,
        db: Database,
        log_name: str,
        *,
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ):
        self.db = db
        self.port = free_port()
        self.args = list(args)
        self.env = {**os.environ, "INTENTLY_DATABASE_URL": db.url, **(env or {})}
        OUT.mkdir(parents=True, exist_ok=True)
        self.log_path = OUT / f"{log_name}.server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.key = ""
        self.rss: RssSampler | None = None
        self.analyze: AutoAnalyze | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def pids(self) -> list[int]:
        return descendants(self.pid)

    def meter(self) -> CpuMeter:
        return CpuMeter(self.pids(), postgres=self.db.kind == "postgres")

    def start(self, timeout: float = 120.0, *, key: str | None = None) -> None:
        """Start and wait for /healthz; then make an API key, unless given one to use
        (a new key revokes the user's old one, so servers on one database share one)."""
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [str(INTENTLY), "serve", "--port", str(self.port), *self.args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited early; see {self.log_path}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    conn.close()
                    break
                conn.close()
            except OSError:
                pass
            time.sleep(0.1)
        else:
            self.stop()
            raise SystemExit(f"server did not become healthy in {timeout:.0f} s")
        self.rss = RssSampler(self.pid).start()
        self.key = key if key is not None else self.generate_key()

    def generate_key(self) -> str:
        done = subprocess.run(
            [
                str(INTENTLY),
                "keys",
                "generate",
                "--workspace",
                WORKSPACE,
                "--email",
                EMAIL,
                "--create-workspace",
            ],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
            cwd=ROOT,
        )
        if done.returncode != 0 or not done.stdout.strip():
            raise SystemExit(f"keys generate failed: {done.stderr.strip()}")
        return done.stdout.strip().splitlines()[-1]

    def stop(self) -> None:
        if self.analyze is not None:
            self.analyze.stop()
        if self.rss is not None:
            self.rss.stop()
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    @property
    def peak_rss_mb(self) -> float:
        return self.rss.peak_mb if self.rss is not None else 0.0

    def connect(self) -> Client:
        return Client(self.port, self.key)


@contextmanager
def running_server(db: Database, log_name: str) -> Iterator[Server]:
    server = Server(db, log_name)
    try:
        server.start()
        say(f"server pid {server.pid} on port {server.port} ({db.kind}: {db.url})")
        if db.kind == "postgres" and AutoAnalyze.needed():
            say(
                "PostgreSQL runs with autovacuum off here: ANALYZE is run as autoanalyze "
                "would (--no-autoanalyze to skip)"
            )
            server.analyze = AutoAnalyze().start()
        yield server
    finally:
        server.stop()


class ServerGroup:
    """Several servers on one database, seen by run_load as one server: each new
    connection goes to the next server in turn, so the load is spread evenly."""

    def __init__(self, servers: Sequence[Server]):
        self.servers = list(servers)
        self.analyze: AutoAnalyze | None = None
        self._turn = itertools.count()

    @property
    def db(self) -> Database:
        return self.servers[0].db

    @property
    def key(self) -> str:
        return self.servers[0].key

    def pids(self) -> list[int]:
        return [p for s in self.servers for p in s.pids()]

    def meter(self) -> CpuMeter:
        """The servers' CPU, and PostgreSQL's for their database only."""
        postgres = self.db.kind == "postgres"
        name = self.db.url.rsplit("/", 1)[1] if postgres else None
        return CpuMeter(self.pids(), postgres=postgres, database=name)

    def connect(self) -> Client:
        return self.servers[next(self._turn) % len(self.servers)].connect()

    @property
    def peak_rss_mb(self) -> float:
        """The servers' peaks added up (an upper bound of their peak together)."""
        return sum(s.peak_rss_mb for s in self.servers)

    def stop(self) -> None:
        if self.analyze is not None:
            self.analyze.stop()
            self.analyze = None
        for s in self.servers:
            s.stop()


@contextmanager
def running_servers(
    db: Database,
    log_name: str,
    count: int,
    *,
    args: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> Iterator[ServerGroup]:
    """`count` servers on `db` sharing one API key, started one after the other (each
    migrates first), with autoanalyze emulated as in running_server."""
    servers = [
        Server(db, f"{log_name}-{n + 1}" if count > 1 else log_name, args=args, env=env)
        for n in range(count)
    ]
    group = ServerGroup(servers)
    try:
        for n, server in enumerate(servers):
            server.start(key=servers[0].key if n else None)
            say(
                f"server pid {server.pid} on port {server.port} "
                f"({' '.join(['serve', *server.args])}; {db.kind}: {db.url})"
            )
        if db.kind == "postgres" and AutoAnalyze.needed():
            group.analyze = AutoAnalyze(db.url.rsplit("/", 1)[1]).start()
        yield group
    finally:
        group.stop()


# ---- the client --------------------------------------------------------------------------


class Client:
    """One persistent HTTP/1.1 connection carrying the API key."""

    def __init__(self, port: int, key: str):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.get_headers = {"X-Api-Key": key}
        self.post_headers = {"X-Api-Key": key, "Content-Type": "application/json"}

    def get(self, path: str) -> tuple[int, bytes]:
        self.conn.request("GET", path, headers=self.get_headers)
        resp = self.conn.getresponse()
        return resp.status, resp.read()

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        self.conn.request("POST", path, body=body, headers=self.post_headers)
        resp = self.conn.getresponse()
        return resp.status, resp.read()

    def close(self) -> None:
        self.conn.close()


@dataclass(frozen=True)
class Request:
    method: str  # "GET" or "POST"
    path: str
    body: bytes = b""


@dataclass
class LoadResult:
    concurrency: int
    requests: int
    items: int  # accounts or pages, as the caller counts them
    seconds: float
    latencies: list[float]  # seconds, sorted
    cpu: CpuSample  # CPU seconds spent during the run
    errors: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.items / self.seconds if self.seconds else 0.0

    @property
    def request_rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def pct_ms(self, q: float) -> float:
        if not self.latencies:
            return math.nan
        rank = max(0, math.ceil(q * len(self.latencies)) - 1)
        return self.latencies[rank] * 1000

    @property
    def other_cpu(self) -> float:
        """CPU seconds of everything else on the machine (other sessions' work)."""
        c = self.cpu
        return max(0.0, c.machine - c.server - c.client - c.database)

    @property
    def per_cpu_second(self) -> float:
        """Items per second of server CPU: the rate with a whole core and no contention."""
        return self.items / self.cpu.server if self.cpu.server else 0.0

    def cpu_pct(self, seconds: float) -> float:
        return seconds / self.seconds * 100 if self.seconds else 0.0

    def summary(self, unit: str) -> str:
        return (
            f"c={self.concurrency}: {self.rate:>9,.0f} {unit}/s  "
            f"{self.request_rate:7,.1f} req/s  p50 {self.pct_ms(0.5):6.1f} ms  "
            f"p99 {self.pct_ms(0.99):6.1f} ms  max {self.pct_ms(1.0):6.1f} ms  "
            f"{self.per_cpu_second:8,.0f} {unit}/server-CPU-s  "
            f"CPU: server {self.cpu_pct(self.cpu.server):3.0f}%, "
            + (f"postgres {self.cpu_pct(self.cpu.database):3.0f}%, " if self.cpu.database else "")
            + f"client {self.cpu_pct(self.cpu.client):3.0f}%, "
            f"other {self.cpu_pct(self.other_cpu):3.0f}%"
            + (f"  ERRORS {len(self.errors)}" if self.errors else "")
        )

    def as_dict(self, unit: str) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "requests": self.requests,
            unit: self.items,
            "seconds": round(self.seconds, 3),
            f"{unit}_per_s": round(self.rate, 1),
            "p50_ms": round(self.pct_ms(0.5), 2),
            "p99_ms": round(self.pct_ms(0.99), 2),
            "max_ms": round(self.pct_ms(1.0), 2),
            f"{unit}_per_server_cpu_s": round(self.per_cpu_second, 1),
            "server_cpu_pct": round(self.cpu_pct(self.cpu.server), 1),
            "postgres_cpu_pct": round(self.cpu_pct(self.cpu.database), 1),
            "client_cpu_pct": round(self.cpu_pct(self.cpu.client), 1),
            "other_cpu_pct": round(self.cpu_pct(self.other_cpu), 1),
            "errors": self.errors[:5],
        }


def run_load(
    server: Server | ServerGroup,
    requests: Sequence[Request],
    concurrency: int,
    *,
    items_per_request: int,
    validate: Validator | None = None,
    expected_status: int = 200,
    settle_first: bool = True,
    seconds: float | None = None,
) -> LoadResult:
    """Send `requests` over `concurrency` persistent connections, each as fast as it can
    (with `seconds`, stop taking new requests once that long has passed)."""
    clients = [server.connect() for _ in range(concurrency)]
    next_index = itertools.count()
    per_thread: list[list[float]] = [[] for _ in range(concurrency)]
    errors: list[str] = []
    start = threading.Barrier(concurrency + 1)
    deadline = [math.inf]

    def worker(n: int) -> None:
        client = clients[n]
        lat = per_thread[n]
        start.wait()
        while True:
            i = next(next_index)  # atomic under the GIL
            if i >= len(requests) or time.perf_counter() >= deadline[0]:
                return
            req = requests[i]
            t0 = time.perf_counter()
            try:
                if req.method == "GET":
                    status, body = client.get(req.path)
                else:
                    status, body = client.post(req.path, req.body)
            except (OSError, http.client.HTTPException) as exc:
                errors.append(f"{req.method} {req.path}: {exc!r}")
                client.close()
                clients[n] = client = server.connect()
                continue
            lat.append(time.perf_counter() - t0)
            if status != expected_status:
                errors.append(f"{req.method} {req.path}: HTTP {status}: {body[:300]!r}")
            elif validate is not None:
                problem = validate(body)
                if problem:
                    errors.append(problem)

    meter = server.meter()
    if server.analyze is not None:
        server.analyze.check()  # what the server saw before this run, analyzed
    if settle_first:
        settle(meter)
    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(concurrency)]
    for t in threads:
        t.start()
    cpu0 = meter.sample()
    if seconds is not None:
        deadline[0] = time.perf_counter() + seconds
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    cpu = CpuMeter.delta(cpu0, meter.sample())
    for c in clients:
        c.close()
    latencies = sorted(itertools.chain.from_iterable(per_thread))
    return LoadResult(
        concurrency=concurrency,
        requests=len(latencies),
        items=len(latencies) * items_per_request,
        seconds=seconds,
        latencies=latencies,
        cpu=cpu,
        errors=errors,
    )


def best(results: Sequence[LoadResult]) -> LoadResult:
    """The run with the highest throughput (ties: the lower concurrency)."""
    return max(results, key=lambda r: (r.rate, -r.concurrency))


# ---- profiling (optional) ----------------------------------------------------------------


def py_spy_binary() -> str | None:
    return (
        os.environ.get("PY_SPY")
        or shutil.which("py-spy")
        or (str(BIN / "py-spy") if (BIN / "py-spy").exists() else None)
    )


class Profiler:
    """py-spy sampling the server for a while in the background, when py-spy is there."""

    def __init__(self, server: Server, name: str, seconds: float):
        self.name = name
        self.seconds = seconds
        self.proc: subprocess.Popen[bytes] | None = None
        self.raw = OUT / f"{name}.collapsed.txt"
        binary = py_spy_binary()
        if seconds <= 0:
            return
        if binary is None:
            say("  (--profile: py-spy not found; set PY_SPY=/path/to/py-spy)")
            return
        self.proc = subprocess.Popen(
            [
                binary,
                "record",
                "--pid",
                str(server.pid),
                "--subprocesses",
                "--duration",
                str(max(1, round(seconds))),
                "--rate",
                "200",
                "--format",
                "raw",
                "--nonblocking",
                "--output",
                str(self.raw),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def finish(self) -> None:
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout=self.seconds + 30)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            self.proc.wait()
        if self.raw.exists():
            say(f"  profile: {self.raw}")
            for line in top_frames(self.raw, 25):
                say("    " + line)


# Leaf frames of threads that wait rather than work (py-spy counts some of them as busy).
_WAITING = ("Condition.wait ", "Event.wait ", "Runner.run ", "WorkerThread.run ", "select ")
_FRAME_RE = re.compile(r"^(?P<fn>.*) \((?P<file>.*?)(?::\d+)?\)$")


def _frame_name(frame: str) -> str:
    """`fn (path/to/site-packages/pkg/mod.py:123)` -> `pkg/mod.py:fn`."""
    m = _FRAME_RE.match(frame)
    if not m:
        return frame
    path = m["file"]
    for marker in ("site-packages/", "/src/", "/lib/python3"):
        cut = path.rfind(marker)
        if cut != -1:
            path = path[cut + len(marker) :]
            break
    return f"{path}:{m['fn']}"


def top_frames(collapsed: Path, n: int) -> list[str]:
    """Own and inclusive shares of busy samples per function, from py-spy's raw output."""
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = idle = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
        if not frames or frames[-1].startswith(_WAITING):
            idle += count
            continue
        total += count
        names = [_frame_name(f) for f in frames]
        for name in set(names):
            inclusive[name] = inclusive.get(name, 0) + count
        own[names[-1]] = own.get(names[-1], 0) + count
    if not total:
        return ["(no busy samples)"]
    lines = [f"{total} busy samples ({idle} waiting left out); by own time:"]
    for name, c in sorted(own.items(), key=lambda kv: -kv[1])[:n]:
        lines.append(
            f"{c / total * 100:5.1f}% own {inclusive[name] / total * 100:5.1f}% incl  {name}"
        )
    lines.append("intently functions by inclusive time:")
    ours = [kv for kv in inclusive.items() if kv[0].startswith("intently/")]
    for name, c in sorted(ours, key=lambda kv: -kv[1])[:n]:
        lines.append(
            f"{own.get(name, 0) / total * 100:5.1f}% own {c / total * 100:5.1f}% incl  {name}"
        )
    return lines
