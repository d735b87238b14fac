"""`intently ip upload|lookup|clear`, run as `python -m intently ip ...` in a subprocess."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from intently.ingest.resolvers import IpResolver, Match
from tests.support.cli import intently


@dataclass
class Result:
    code: int
    out: str
    err: str


Run = Callable[..., Result]


@pytest.fixture
def ip_cli(database_url: str) -> Iterator[Run]:
    def run(*args: str, databases: str = "") -> Result:
        done = intently(database_url, "ip", *args, INTENTLY_IP_DATABASES=databases)
        return Result(done.returncode, done.stdout, done.stderr)

    yield run


@pytest.fixture(scope="module")
def domain_mmdb(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("mmdb") / "GeoIP2-Domain.mmdb"
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoIP2-Domain")
    writer.insert_network(IPSet(["60.0.0.0/16"]), {"domain": "initech.com"})
    writer.insert_network(IPSet(["61.0.0.0/24"]), {"domain": "comcast.net"})
    writer.to_db_file(str(path))
    return str(path)


def _file(tmp_path: Path, text: str, name: str = "ranges.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


RANGES = "network,domain,company\n62.0.0.0/24,acme.com,Acme Inc\n62.0.0.128/25,beta.io,\n"


def test_upload_lookup_and_clear(ip_cli: Run, workspace: Any, tmp_path: Path) -> None:
    ws = ["--workspace", workspace.name]
    path = _file(tmp_path, RANGES + "nope,acme.com,\n")
    r = ip_cli("upload", str(path), *ws)
    assert r.code == 0, r.err + r.out
    assert "accepted" in r.out and "invalid_network" in r.out
    assert "the workspace has 2 ranges" in r.out

    again = ip_cli("upload", str(path), *ws)
    assert again.code == 0
    counts = [ln.replace("│", " ").split() for ln in again.out.splitlines()]
    assert ["duplicate", "2"] in counts and ["accepted", "0"] in counts

    hit = ip_cli("lookup", "62.0.0.7", *ws)
    assert hit.code == 0
    assert "62.0.0.7 -> acme.com (Acme Inc): method ip, provider ranges, confidence 0.90" in (
        hit.out
    )
    assert "-> beta.io" in ip_cli("lookup", "62.0.0.200", *ws).out
    assert "no match (private" in ip_cli("lookup", "192.168.1.10", *ws).out
    assert "no match (unknown" in ip_cli("lookup", "62.0.1.1", *ws).out

    bad = ip_cli("lookup", "62.0.0.300", *ws)
    assert bad.code == 2 and "not an IPv4 or IPv6 address" in bad.err

    cleared = ip_cli("clear", *ws)
    assert cleared.code == 0 and "2 ranges removed" in cleared.out
    assert "no match (unknown" in ip_cli("lookup", "62.0.0.7", *ws).out


def test_lookup_reads_the_ip_databases_setting(
    ip_cli: Run, workspace: Any, domain_mmdb: str, tmp_path: Path
) -> None:
    ws = ["--workspace", workspace.name]
    missing = str(tmp_path / "missing.mmdb")
    hit = ip_cli("lookup", "60.0.3.4", *ws, databases=f" {domain_mmdb} , ")
    assert hit.code == 0, hit.err
    assert (
        "60.0.3.4 -> initech.com: method ip, provider mmdb:GeoIP2-Domain.mmdb, confidence 0.70"
        in hit.out
    )
    isp = ip_cli("lookup", "61.0.0.1", *ws, databases=domain_mmdb)
    assert "no match (network" in isp.out and "comcast.net" in isp.out
    broken = ip_cli("lookup", "60.0.3.4", *ws, databases=f"{domain_mmdb},{missing}")
    assert broken.code == 2 and "missing.mmdb" in broken.err


def test_upload_replace(ip_cli: Run, workspace: Any, tmp_path: Path) -> None:
    ws = ["--workspace", workspace.name]
    assert ip_cli("upload", str(_file(tmp_path, RANGES)), *ws).code == 0
    new = _file(tmp_path, "63.0.0.0/24,gamma.org\n", "new.csv")
    r = ip_cli("upload", str(new), "--replace", *ws)
    assert r.code == 0, r.err
    assert "(replace)" in r.out and "the workspace has 1 ranges" in r.out
    assert "no match (unknown" in ip_cli("lookup", "62.0.0.7", *ws).out
    assert "-> gamma.org" in ip_cli("lookup", "63.0.0.7", *ws).out


def test_upload_failures(ip_cli: Run, workspace: Any, tmp_path: Path) -> None:
    ws = ["--workspace", workspace.name]
    missing = ip_cli("upload", str(tmp_path / "nowhere.csv"), *ws)
    assert missing.code == 2 and "nowhere.csv: no such file" in missing.err
    wrong = _file(tmp_path, "Company Name,Topic\nAcme,CRM\n", "surge.csv")
    r = ip_cli("upload", str(wrong), *ws)
    assert r.code == 2 and "missing column(s) network" in r.err
    unknown = ip_cli("upload", str(_file(tmp_path, RANGES)), "--workspace", "no-such-ws")
    assert unknown.code == 2 and "no-such-ws" in unknown.err


def test_a_resolver_sees_an_upload_made_by_the_command(
    ip_cli: Run, engine: Any, workspace: Any, tmp_path: Path
) -> None:
    resolver = IpResolver(engine, [])
    try:
        assert resolver.lookup(workspace.id, "64.0.0.1") is None
        path = _file(tmp_path, "64.0.0.0/24,delta.com\n")
        assert ip_cli("upload", str(path), "--workspace", workspace.name).code == 0
        resolver.refresh(workspace.id)
        assert resolver.lookup(workspace.id, "64.0.0.1") == Match("delta.com", "ip", "ranges", 0.9)
    finally:
        resolver.close()
