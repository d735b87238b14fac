"""MaxMind's own test databases and malformed files (tests/data/maxmind/, see its README).

What the databases carry about a network (ISP, organization, ASN organization, user type)
keeps ISP, CDN and infrastructure networks from resolving as companies; a malformed file is
refused with a clear error naming it, at start or at lookup, never a crash or a hang; and a
database replaced in place while open keeps the process alive.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from intently.ingest.resolvers import IpResolver, Match
from intently.kit.errors import BadRequest
from tests.support.cli import intently

DATA = Path(__file__).resolve().parents[1] / "data" / "maxmind"
DOMAIN = str(DATA / "GeoIP2-Domain-Test.mmdb")
ISP = str(DATA / "GeoIP2-ISP-Test.mmdb")
ENTERPRISE = str(DATA / "GeoIP2-Enterprise-Test.mmdb")
ASN = str(DATA / "GeoLite2-ASN-Test.mmdb")
BAD = sorted((DATA / "bad-data").glob("*.mmdb"))


# ---- what the databases say about a network -----------------------------------------------


def test_the_test_databases_still_resolve_companies(resolver_for: Any, workspace: Any) -> None:
    r = resolver_for(DOMAIN, ISP, ENTERPRISE, ASN)
    ws = workspace.id
    assert r.lookup(ws, "1.2.0.1") == Match(
        "maxmind.com", "ip", "mmdb:GeoIP2-Domain-Test.mmdb", 0.7
    )
    assert r.lookup(ws, "186.30.236.9") == Match(
        "replaced.com", "ip", "mmdb:GeoIP2-Domain-Test.mmdb", 0.7
    )
    # Enterprise user types of organisations: military, government.
    assert r.lookup(ws, "214.78.0.1") == Match(
        "health.mil", "ip", "mmdb:GeoIP2-Enterprise-Test.mmdb", 0.8, "US Department of Defense"
    )
    assert r.lookup(ws, "2001:480:10::1") == Match(
        "navy.mil", "ip", "mmdb:GeoIP2-Enterprise-Test.mmdb", 0.8, "DNIC"
    )


@pytest.mark.parametrize(
    ("ip", "paths", "said"),
    [
        # telebecinternet.net: its name says ISP (and the ISP database says the ISP is
        # Telebec, see test_the_isp_database_tells_the_isp_s_domain).
        ("142.217.214.1", (DOMAIN, ISP), "telebecinternet.net"),
        ("142.217.194.1", (DOMAIN,), "telebecinternet.net"),
        # gol.ne.jp: ne.jp is Japan's namespace for network service providers.
        ("222.230.136.1", (DOMAIN,), "gol.ne.jp"),
        ("222.230.136.1", (DOMAIN, ISP), "gol.ne.jp"),
        # in-addr.arpa is reverse DNS, not anybody's domain; also with user type government.
        ("81.2.64.1", (DOMAIN,), "in-addr.arpa"),
        ("81.2.69.161", (ENTERPRISE,), "in-addr.arpa"),
        ("81.2.69.161", (DOMAIN, ISP, ENTERPRISE), "in-addr.arpa"),
        # Enterprise user types of networks, the CDN one included.
        ("214.214.214.221", (ENTERPRISE,), "content_delivery_network"),
        ("214.214.214.216", (ENTERPRISE,), "traveler"),
        ("214.214.214.220", (ENTERPRISE,), "hosting"),
        ("67.43.156.1", (DOMAIN, ENTERPRISE), "search_engine_spider"),
        ("214.78.120.1", (ENTERPRISE,), "residential"),
        ("214.78.120.1", (DOMAIN, ENTERPRISE), "starlinkisp.net"),
        # Enterprise: the domain is the ISP's (Bredband2 AB), the user Bevtec.
        ("89.160.20.113", (ENTERPRISE,), "bredband2.com"),
        ("149.101.100.1", (ENTERPRISE,), "mobile"),
    ],
)
def test_networks_never_resolve(
    ip: str, paths: tuple[str, ...], said: str, resolver_for: Any, workspace: Any
) -> None:
    r = resolver_for(*paths)
    assert r.lookup(workspace.id, ip) is None
    why = r.explain(workspace.id, ip)
    assert not isinstance(why, Match)
    assert why.reason == "network" and said in why.detail, why


def _write(path: Path, db_type: str, records: dict[str, dict[str, Any]]) -> str:
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type=db_type)
    for network, record in records.items():
        writer.insert_network(IPSet([network]), record)
    writer.to_db_file(str(path))
    return str(path)


def test_the_isp_database_tells_the_isp_s_domain(
    resolver_for: Any, workspace: Any, tmp_path: Path
) -> None:
    """The records of the MaxMind test files, with domains no list or name rule knows."""
    domains = {
        "50.0.0.0/24": {"domain": "telebec.ca"},
        "50.0.1.0/24": {"domain": "gol.jp"},
        "50.0.2.0/24": {"domain": "initech.com"},
        "50.0.3.0/24": {"domain": "ufrgs.br"},
        "50.0.4.0/24": {"domain": "acme.com"},
        "50.0.5.0/24": {"domain": "fairpoint.biz"},
    }
    isps = {  # as GeoIP2-ISP-Test.json has them
        "50.0.0.0/24": {"isp": "Telebec", "organization": "LINO Solutions Internet de Télébec"},
        "50.0.1.0/24": {"isp": "VECTANT Ltd.", "organization": "VECTANT Ltd.",
                        "autonomous_system_organization": "JPNIC"},
        "50.0.2.0/24": {"isp": "Initech", "organization": "Initech"},
        "50.0.3.0/24": {"isp": "Universidade Federal do Rio Grande do Sul",
                        "organization": "Universidade Federal do Rio Grande do Sul"},
        "50.0.4.0/24": {"isp": "Comcast Business", "organization": "Acme Corp"},
        "50.0.5.0/24": {"autonomous_system_organization": "FairPoint",
                        "organization": "Bevtec"},
    }  # fmt: skip
    r = resolver_for(
        _write(tmp_path / "d.mmdb", "GeoIP2-Domain", domains),
        _write(tmp_path / "i.mmdb", "GeoIP2-ISP", isps),
    )
    ws = workspace.id
    for ip, said in [
        ("50.0.0.1", "telebec.ca is the domain of Telebec"),
        ("50.0.1.1", "VECTANT Ltd. uses this network itself and gol.jp is not its domain"),
        ("50.0.5.1", "fairpoint.biz is the domain of FairPoint"),
    ]:
        assert r.lookup(ws, ip) is None, ip
        why = r.explain(ws, ip)
        assert not isinstance(why, Match) and why.reason == "network" and said in why.detail
    # A company that is its own ISP, or on an ISP's line under its own name, still resolves.
    assert [_found(r, ws, ip) for ip in ("50.0.2.1", "50.0.3.1", "50.0.4.1")] == [
        "initech.com", "ufrgs.br", "acme.com"
    ]  # fmt: skip


def _found(r: IpResolver, ws: int, ip: str) -> str | None:
    m = r.lookup(ws, ip)
    return m.domain if m is not None else None


def test_lookup_command_with_the_test_databases(database_url: str, workspace: Any) -> None:
    dbs = ",".join((DOMAIN, ISP, ENTERPRISE, ASN))
    for ip, expected in [
        ("1.2.0.1", "1.2.0.1 -> maxmind.com: method ip"),
        ("142.217.214.1", "142.217.214.1: no match (network"),
        ("222.230.136.1", "222.230.136.1: no match (network"),
        ("81.2.64.1", "81.2.64.1: no match (network"),
        ("214.214.214.221", "214.214.214.221: no match (network"),
    ]:
        done = intently(database_url, "ip", "lookup", ip, "-w", workspace.name,
                        INTENTLY_IP_DATABASES=dbs)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert expected in done.stdout, (ip, done.stdout)


# ---- malformed files ---------------------------------------------------------------------


@pytest.mark.parametrize("bad", BAD, ids=[p.name for p in BAD])
def test_every_malformed_file_is_refused_clearly(
    bad: Path, database_url: str, workspace: Any, tmp_path: Path
) -> None:
    done = intently(database_url, "ip", "lookup", "1.1.1.1", "-w", workspace.name,
                    INTENTLY_IP_DATABASES=f"{DOMAIN},{bad}", timeout=60)  # fmt: skip
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert bad.name in done.stderr and "IP database" in done.stderr, done.stderr


@pytest.mark.parametrize("bad", BAD, ids=[p.name for p in BAD])
def test_a_malformed_file_never_opens(bad: Path, engine: Any) -> None:
    with pytest.raises(BadRequest, match=bad.name.replace(".", r"\.")):
        IpResolver(engine, [str(bad)])


@pytest.mark.parametrize(
    "bad",
    ["cyclic-data-structure.mmdb", "libmaxminddb-oversized-map.mmdb",
     "libmaxminddb-separator-record-max-left.mmdb", "bad-unicode-in-map-key.mmdb"],
)  # fmt: skip
def test_the_service_refuses_to_start_on_a_malformed_file(bad: str, tmp_path: Path) -> None:
    path = DATA / "bad-data" / bad
    url = f"sqlite:///{tmp_path / 'serve.db'}"
    done = intently(url, "serve", "--port", "1", "--no-worker",
                    INTENTLY_IP_DATABASES=f"{DOMAIN},{path}", timeout=60)  # fmt: skip
    assert "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert f"error: IP database {path}" in done.stderr, done.stderr


def _corrupt_copy(tmp_path: Path, text: bytes) -> Path:
    """The Domain test database with one record's string made invalid UTF-8."""
    data = bytearray(Path(DOMAIN).read_bytes())
    at = data.find(text)
    assert at > 0 and data.find(text, at + 1) == -1
    data[at : at + len(text)] = b"\xff" * len(text)
    path = tmp_path / "GeoIP2-Domain-Corrupt.mmdb"
    path.write_bytes(bytes(data))
    return path


def test_a_record_that_cannot_be_read_is_a_clear_no_match(
    database_url: str, workspace: Any, resolver_for: Any, tmp_path: Path
) -> None:
    path = _corrupt_copy(tmp_path, b"maxmind.com")
    r = resolver_for(str(path), ENTERPRISE)
    assert r.lookup(workspace.id, "1.2.0.1") is None
    why = r.explain(workspace.id, "1.2.0.1")
    assert not isinstance(why, Match)
    assert why.reason == "error" and path.name in why.detail
    # Other addresses of the same file still answer.
    assert r.lookup(workspace.id, "71.160.223.1") is None  # verizon.net: a network
    assert r.explain(workspace.id, "71.160.223.1").reason == "network"
    assert r.lookup(workspace.id, "186.30.236.9") is not None

    done = intently(database_url, "ip", "lookup", "1.2.0.1", "-w", workspace.name,
                    INTENTLY_IP_DATABASES=str(path))  # fmt: skip
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "1.2.0.1: no match (error" in done.stdout and path.name in done.stdout


# ---- a database replaced while open --------------------------------------------------------

_HOLDER = """
import sys
from intently.ingest.resolvers import IpResolver
from intently.kit.db import make_engine

ws = int(sys.argv[3])
r = IpResolver(make_engine(sys.argv[2]), [sys.argv[1]])
print(r.lookup(ws, "1.2.0.1").domain, flush=True)
for line in sys.stdin:
    found = [r.lookup(ws, ip) for ip in ("1.2.0.1", "186.30.236.9", "81.2.69.1")]
    print(" ".join(m.domain if m else "-" for m in found), flush=True)
"""


def _newer_domain_db(path: Path) -> bytes:
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoIP2-Domain")
    writer.insert_network(IPSet(["1.2.0.0/16"]), {"domain": "newco.com"})
    writer.to_db_file(str(path))
    return path.read_bytes()


def test_a_database_overwritten_in_place_while_open(
    tmp_path: Path, database_url: str, workspace: Any
) -> None:
    live = tmp_path / "GeoIP2-Domain.mmdb"
    shutil.copyfile(DOMAIN, live)
    newer = _newer_domain_db(tmp_path / "newer.mmdb")
    script = tmp_path / "holder.py"
    script.write_text(textwrap.dedent(_HOLDER), encoding="utf-8")
    proc = subprocess.Popen(
        [sys.executable, str(script), str(live), database_url, str(workspace.id)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "maxmind.com"

        def ask() -> str:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
            answer = proc.stdout.readline().strip()
            return answer or f"<the process ended with {proc.wait(timeout=30)}>"

        # Truncated in place (as `cp new old` or a careless download does), then rewritten.
        with live.open("r+b") as f:
            f.truncate(0)
        assert ask() == "maxmind.com replaced.com -"
        time.sleep(1.2)
        assert ask() == "maxmind.com replaced.com -"  # a half-written file is not taken
        with live.open("r+b") as f:
            f.write(newer)
        time.sleep(1.2)
        assert ask() == "newco.com - -"  # the new file, once whole
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        err = proc.stderr.read() if proc.stderr else ""
        proc.wait()
    assert proc.returncode == 0, err
