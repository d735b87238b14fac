"""Account resolution for website visits: email, group traits, workspace ranges, .mmdb files.

The .mmdb files are written here with mmdb_writer (the three MaxMind layouts the
resolver reads), into a temporary directory; nothing is downloaded.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet
from sqlalchemy import select

from intently.ingest import resolvers
from intently.ingest.resolvers import (
    IpResolver,
    Match,
    delete_ranges,
    is_free_email_domain,
    is_network_domain,
    match_email,
    match_group,
    upload_ranges,
)
from intently.kit.db import make_engine
from intently.kit.domains import try_normalise_domain
from intently.kit.errors import BadRequest
from intently.signals.store import iter_rejects
from intently.signals.tables import ingest_runs

# ---- .mmdb files in the three layouts ----------------------------------------------------------


def _write_mmdb(path: Path, db_type: str, records: dict[str, dict[str, Any]], v6: bool) -> str:
    writer = (
        MMDBWriter(ip_version=6, ipv4_compatible=True, database_type=db_type)
        if v6
        else MMDBWriter(ip_version=4, database_type=db_type)
    )
    for network, record in records.items():
        writer.insert_network(IPSet([network]), record)
    writer.to_db_file(str(path))
    return str(path)


DOMAIN_RECORDS = {
    "20.0.0.0/16": {"domain": "acme.com"},
    "20.0.5.0/24": {"domain": "beta.io"},  # nested: the more specific network wins
    "21.0.0.0/24": {"domain": "comcast.net"},  # an ISP's
    "22.0.0.0/24": {"domain": "compute-1.amazonaws.com"},  # a host's (a subdomain of one)
    "23.0.0.0/24": {"domain": "gmail.com"},  # free mail names no company either
    "24.0.0.0/24": {"domain": "acme.com"},  # the ISP database calls this a home network
    "25.0.0.0/24": {"domain": "not a domain"},
    "28.0.0.0/24": {"domain": "initech.com"},
    "10.0.0.0/8": {"domain": "acme.com"},  # private: never resolves, whatever a db says
    "2600:1f00::/32": {"domain": "six.com"},
}
ISP_RECORDS = {
    "20.0.0.0/16": {"isp": "Comcast Business", "organization": "Acme Corp"},
    "24.0.0.0/24": {
        "isp": "Comcast Cable",
        "organization": "Comcast Cable Communications",
        "autonomous_system_number": 7922,
        "autonomous_system_organization": "COMCAST-7922",
    },
    "26.0.0.0/24": {
        "isp": "T-Mobile USA",
        "organization": "T-Mobile USA",
        "mobile_country_code": "310",
        "mobile_network_code": "260",
    },
    "27.0.0.0/24": {"isp": "DigitalOcean, LLC", "organization": "DigitalOcean, LLC"},
    "28.0.0.0/24": {"isp": "Initech", "organization": "Initech"},
}
ENTERPRISE_RECORDS = {
    "30.0.0.0/24": {
        "traits": {
            "domain": "initech.com",
            "organization": "Initech",
            "isp": "Initech",
            "user_type": "business",
            "connection_type": "Corporate",
        },
        "country": {"iso_code": "US"},
    },
    "31.0.0.0/24": {"traits": {"domain": "acme.com", "user_type": "residential"}},
    "32.0.0.0/24": {
        "traits": {"domain": "acme.com", "user_type": "business", "connection_type": "Cellular"}
    },
    "33.0.0.0/24": {"traits": {"domain": "acme.com", "user_type": "hosting"}},
    "34.0.0.0/24": {"traits": {"domain": "verizon.net", "user_type": "business"}},
    "35.0.0.0/24": {"traits": {"domain": "acme.com", "is_anonymous_vpn": True}},
    "36.0.0.0/24": {"traits": {"organization": "Nameless Ltd", "user_type": "business"}},
    "2a01:100::/32": {
        "traits": {"domain": "sechs.de", "organization": "Sechs GmbH", "user_type": "business"}
    },
}


@pytest.fixture(scope="module")
def mmdbs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("mmdb")
    return {
        "domain": _write_mmdb(d / "domain.mmdb", "GeoIP2-Domain", DOMAIN_RECORDS, v6=True),
        "isp": _write_mmdb(d / "isp.mmdb", "GeoIP2-ISP", ISP_RECORDS, v6=False),
        "enterprise": _write_mmdb(
            d / "enterprise.mmdb", "GeoIP2-Enterprise", ENTERPRISE_RECORDS, v6=True
        ),
    }


def _csv(tmp_path: Path, text: str, name: str = "ranges.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _domain(r: IpResolver, ws: int, ip: str) -> str | None:
    m = r.lookup(ws, ip)
    return m.domain if m is not None else None


# ---- the lists ---------------------------------------------------------------------------------


def test_the_lists_hold_normalised_domains() -> None:
    for listed in (resolvers.free_email_domains(), resolvers.network_domains()):
        assert len(listed) > 300
        for d in listed:
            assert try_normalise_domain(d) == d, d


@pytest.mark.parametrize(
    "domain",
    ["gmail.com", "googlemail.com", "yahoo.co.uk", "hotmail.fr", "outlook.com", "live.com",
     "aol.com", "icloud.com", "me.com", "mail.ru", "yandex.ru", "gmx.de", "web.de", "proton.me",
     "protonmail.com", "qq.com", "163.com", "126.com", "naver.com", "GMAIL.COM"],
)  # fmt: skip
def test_free_email_domains(domain: str) -> None:
    assert is_free_email_domain(domain)


@pytest.mark.parametrize(
    "domain",
    ["comcast.net", "verizon.net", "amazonaws.com", "ec2-1-2-3-4.compute-1.amazonaws.com",
     "googleusercontent.com", "t-mobile.com", "cloudflare.com", "hetzner.de", "nordvpn.com"],
)  # fmt: skip
def test_network_domains(domain: str) -> None:
    assert is_network_domain(domain)


@pytest.mark.parametrize("domain", ["acme.com", "google.com", "amazon.com", "mail.acme.com"])
def test_company_domains_are_neither(domain: str) -> None:
    assert not is_free_email_domain(domain)
    assert not is_network_domain(domain)


# ---- email -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "domain"),
    [
        ("jane@acme.com", "acme.com"),
        ("Jane.Doe@ACME.com", "acme.com"),
        ("jane+abm-test@acme.co.uk", "acme.co.uk"),
        ("  jane@acme.io  ", "acme.io"),
        ("Jane Doe <jane@acme.com>", "acme.com"),
        ("mailto:jane@acme.com", "acme.com"),
        ("jane@www.acme.com", "acme.com"),
        ("jane@att.com", "att.com"),  # a carrier's staff: only free-mail is refused
    ],
)
def test_business_email_matches_its_domain(email: str, domain: str) -> None:
    assert match_email(email) == Match(domain, "email", "email", 0.9)


@pytest.mark.parametrize(
    "email",
    ["someone@gmail.com", "Someone@GMAIL.COM", "some.one+acme@googlemail.com", "a@yahoo.co.uk",
     "a@hotmail.fr", "a@outlook.com", "a@live.com", "a@aol.com", "a@icloud.com", "a@me.com",
     "a@mail.ru", "a@yandex.ru", "a@gmx.de", "a@web.de", "a@proton.me", "a@protonmail.com",
     "a@qq.com", "a@163.com", "a@naver.com", "a@comcast.net", "a@mailinator.com"],
)  # fmt: skip
def test_free_mail_never_matches(email: str) -> None:
    assert match_email(email) is None


@pytest.mark.parametrize(
    "email",
    [None, "", "jane", "jane@", "@acme.com", "jane@acme", "jane@@acme.com", "jane doe@acme.com",
     "jane@acme.com/pricing", "jane@acme.com:25", "jane@[10.0.0.1]", "jane@192.168.1.1",
     ".jane@acme.com", 42],
)  # fmt: skip
def test_invalid_emails_do_not_match(email: Any) -> None:
    assert match_email(email) is None


# ---- group traits ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("traits", "domain"),
    [
        ({"website": "https://www.acme.com/pricing"}, "acme.com"),
        ({"domain": "Acme.COM"}, "acme.com"),
        ({"Website": "acme.com"}, "acme.com"),
        ({"company_domain": "acme.com"}, "acme.com"),
        ({"company": {"website": "http://acme.io"}}, "acme.io"),
        ({"company": {"domain": "acme.io"}}, "acme.io"),
        ({"email": "ops@acme.com"}, "acme.com"),
        ({"company": {"email": "billing@acme.com"}}, "acme.com"),
        ({"website": "gmail.com", "domain": "acme.com"}, "acme.com"),  # the next one is tried
        ({"website": "not a website", "email": "ops@acme.com"}, "acme.com"),
        ({"website": 42, "domain": "acme.com"}, "acme.com"),
    ],
)
def test_group_traits_match(traits: dict[str, Any], domain: str) -> None:
    m = match_group(traits)
    assert m is not None
    assert (m.domain, m.method, m.provider, m.confidence) == (domain, "group", "group", 0.95)


def test_group_traits_carry_the_company_name() -> None:
    m = match_group({"name": "Acme Inc", "website": "acme.com", "employees": 40})
    assert m == Match("acme.com", "group", "group", 0.95, "Acme Inc")


@pytest.mark.parametrize(
    "traits",
    [None, {}, {"name": "Acme"}, {"website": "gmail.com"}, {"domain": "https://comcast.net"},
     {"website": "amazonaws.com"}, {"email": "someone@gmail.com"}, {"website": ["acme.com"]},
     {"company": "acme.com"}],
)  # fmt: skip
def test_group_traits_without_a_company_domain(traits: Any) -> None:
    assert match_group(traits) is None


def test_network_names() -> None:
    yes = [
        "Comcast Cable Communications",
        "T-Mobile USA",
        "Virgin Media Ltd",
        "OVH SAS",
        "DigitalOcean, LLC",
        "Deutsche Telekom AG",
        "Hetzner Online GmbH",
        "Acme Hosting",
    ]
    no = ["Acme Corp", "Orange County Bank", "Frontier Airlines", "Initech", "Amazon.com"]
    assert [n for n in yes if not resolvers.names_network(n)] == []
    assert [n for n in no if resolvers.names_network(n)] == []


# ---- .mmdb layouts -----------------------------------------------------------------------------


def test_domain_layout(resolver_for: Any, workspace: Any, mmdbs: dict[str, str]) -> None:
    r = resolver_for(mmdbs["domain"])
    ws = workspace.id
    assert r.lookup(ws, "20.0.1.1") == Match("acme.com", "ip", "mmdb:domain.mmdb", 0.7)
    assert _domain(r, ws, "20.0.5.9") == "beta.io"
    assert _domain(r, ws, "28.0.0.1") == "initech.com"
    assert _domain(r, ws, "2600:1f00::17") == "six.com"
    assert _domain(r, ws, "::ffff:20.0.1.1") == "acme.com"  # IPv4-mapped IPv6
    for ip in ("21.0.0.1", "22.0.0.1", "23.0.0.1"):  # ISP, hosting, free-mail domains
        assert r.lookup(ws, ip) is None, ip
        assert r.explain(ws, ip).reason == "network"
    assert r.lookup(ws, "25.0.0.1") is None  # a record whose domain is not one
    assert r.explain(ws, "9.9.9.9").reason == "unknown"


def test_enterprise_layout(resolver_for: Any, workspace: Any, mmdbs: dict[str, str]) -> None:
    r = resolver_for(mmdbs["enterprise"])
    ws = workspace.id
    assert r.lookup(ws, "30.0.0.7") == Match(
        "initech.com", "ip", "mmdb:enterprise.mmdb", 0.8, "Initech"
    )
    assert r.lookup(ws, "2a01:100::1") == Match(
        "sechs.de", "ip", "mmdb:enterprise.mmdb", 0.8, "Sechs GmbH"
    )
    # residential, cellular, hosting, an ISP's domain, a VPN: never a company
    for ip in ("31.0.0.1", "32.0.0.1", "33.0.0.1", "34.0.0.1", "35.0.0.1"):
        assert r.lookup(ws, ip) is None, ip
        assert r.explain(ws, ip).reason == "network", ip
    assert r.lookup(ws, "36.0.0.1") is None  # no domain
    assert r.explain(ws, "36.0.0.1").reason == "unknown"


def test_isp_layout_alone_never_resolves(
    resolver_for: Any, workspace: Any, mmdbs: dict[str, str]
) -> None:
    r = resolver_for(mmdbs["isp"])
    ws = workspace.id
    for ip in ("20.0.1.1", "28.0.0.1"):  # a company's own network, but no domain to give
        assert r.lookup(ws, ip) is None
        assert r.explain(ws, ip).reason == "unknown"
    for ip in ("24.0.0.1", "26.0.0.1", "27.0.0.1"):  # home ISP, mobile carrier, hosting
        assert r.explain(ws, ip).reason == "network", ip
    assert r.lookup(ws, "2600:1f00::1") is None  # an IPv4-only database is skipped for IPv6


def test_isp_layout_vetoes_another_database(
    resolver_for: Any, workspace: Any, mmdbs: dict[str, str]
) -> None:
    ws = workspace.id
    for order in ((mmdbs["domain"], mmdbs["isp"]), (mmdbs["isp"], mmdbs["domain"])):
        r = resolver_for(*order)
        assert r.lookup(ws, "24.0.0.9") is None  # the Domain db says acme.com: a home line
        assert "Comcast" in r.explain(ws, "24.0.0.9").detail
        # A company on an ISP's business line: the organization is the company's.
        assert r.lookup(ws, "20.0.1.1") == Match("acme.com", "ip", "mmdb:domain.mmdb", 0.7)
        assert _domain(r, ws, "28.0.0.1") == "initech.com"


def test_first_database_in_order_wins(
    resolver_for: Any, workspace: Any, tmp_path: Path, mmdbs: dict[str, str]
) -> None:
    other = _write_mmdb(
        tmp_path / "other.mmdb", "GeoIP2-Domain", {"20.0.0.0/16": {"domain": "zeta.com"}}, True
    )
    ws = workspace.id
    assert _domain(resolver_for(mmdbs["domain"], other), ws, "20.0.1.1") == "acme.com"
    assert _domain(resolver_for(other, mmdbs["domain"]), ws, "20.0.1.1") == "zeta.com"


@pytest.mark.parametrize(
    "ip",
    ["10.1.2.3", "192.168.1.1", "172.16.5.4", "127.0.0.1", "169.254.1.1", "100.64.0.1",
     "0.0.0.0", "224.0.0.1", "255.255.255.255", "192.0.2.1", "::1", "::", "fe80::1", "fc00::1",
     "fd12:3456::1", "2001:db8::1", "ff02::1", "::ffff:10.0.0.1", "::ffff:127.0.0.1"],
)  # fmt: skip
def test_private_and_reserved_ips_never_resolve(
    ip: str, resolver_for: Any, workspace: Any, mmdbs: dict[str, str]
) -> None:
    r = resolver_for(mmdbs["domain"], mmdbs["enterprise"])
    assert r.lookup(workspace.id, ip) is None
    assert r.explain(workspace.id, ip).reason == "private"


@pytest.mark.parametrize(
    "ip", ["", "300.1.1.1", "1.2.3", "01.2.3.4", "abc", "1.2.3.4 ", "fe80::1%eth0", "[::1]", None]
)
def test_invalid_ips(ip: Any, resolver_for: Any, workspace: Any, mmdbs: dict[str, str]) -> None:
    r = resolver_for(mmdbs["domain"])
    assert r.lookup(workspace.id, ip) is None
    assert r.explain(workspace.id, ip).reason == "invalid"


def test_a_missing_database_fails_with_its_path(engine: Any, tmp_path: Path) -> None:
    with pytest.raises(BadRequest, match=r"nope\.mmdb"):
        IpResolver(engine, [str(tmp_path / "nope.mmdb")])
    junk = tmp_path / "junk.mmdb"
    junk.write_bytes(b"not a database" * 10)
    with pytest.raises(BadRequest, match=r"junk\.mmdb"):
        IpResolver(engine, [str(junk)])


# ---- workspace ranges --------------------------------------------------------------------------

RANGES = """network,domain,company
40.0.0.0/16,acme.com,Acme Inc
40.0.7.0/24,beta.io,
40.0.7.128/25,gamma.org,Gamma
40.0.7.200,delta.net,
41.0.0.1-41.0.0.6,range.com,
2a02:1000::/32,six.com,
2a02:1000:5::/48,sieben.de,
2a02:2000::1,single6.com,
20.0.5.0/24,ours.com,Ours
"""


def test_ranges_most_specific_network_wins(
    engine: Any, resolver_for: Any, workspace: Any, tmp_path: Path
) -> None:
    ws = workspace.id
    report = upload_ranges(engine, ws, _csv(tmp_path, RANGES))
    assert (report.status, report.read, report.accepted, report.rejected) == ("done", 9, 9, 0)
    r = resolver_for()
    assert r.lookup(ws, "40.0.1.1") == Match("acme.com", "ip", "ranges", 0.9, "Acme Inc")
    expected = {
        "40.0.0.0": "acme.com", "40.0.6.255": "acme.com", "40.0.7.0": "beta.io",
        "40.0.7.127": "beta.io", "40.0.7.128": "gamma.org", "40.0.7.199": "gamma.org",
        "40.0.7.200": "delta.net", "40.0.7.201": "gamma.org", "40.0.7.255": "gamma.org",
        "40.0.8.0": "acme.com", "40.0.255.255": "acme.com", "40.1.0.0": None,
        "41.0.0.0": None, "41.0.0.1": "range.com", "41.0.0.4": "range.com",
        "41.0.0.6": "range.com", "41.0.0.7": None, "2a02:1000::1": "six.com",
        "2a02:1000:5:ffff::1": "sieben.de", "2a02:1000:6::1": "six.com",
        "2a02:2000::1": "single6.com", "2a02:2000::2": None, "::ffff:40.0.7.200": "delta.net",
    }  # fmt: skip
    assert {ip: _domain(r, ws, ip) for ip in expected} == expected


def test_ranges_come_before_the_databases(
    engine: Any,
    resolver_for: Any,
    workspace: Any,
    other: Any,
    tmp_path: Path,
    mmdbs: dict[str, str],
) -> None:
    upload_ranges(engine, workspace.id, _csv(tmp_path, "network,domain\n20.0.5.0/24,ours.com\n"))
    r = resolver_for(mmdbs["domain"], mmdbs["isp"])
    assert r.lookup(workspace.id, "20.0.5.1") == Match("ours.com", "ip", "ranges", 0.9)
    assert _domain(r, other.id, "20.0.5.1") == "beta.io"  # another workspace: the database
    assert _domain(r, workspace.id, "20.0.9.1") == "acme.com"  # outside the range: the database


def test_tenancy(
    engine: Any, resolver_for: Any, workspace: Any, other: Any, tmp_path: Path
) -> None:
    upload_ranges(engine, workspace.id, _csv(tmp_path, "network,domain\n42.0.0.0/24,a.com\n"))
    upload_ranges(engine, other.id, _csv(tmp_path, "network,domain\n43.0.0.0/24,b.com\n", "b.csv"))
    r = resolver_for()
    assert _domain(r, workspace.id, "42.0.0.1") == "a.com"
    assert _domain(r, other.id, "42.0.0.1") is None
    assert _domain(r, other.id, "43.0.0.1") == "b.com"
    assert _domain(r, workspace.id, "43.0.0.1") is None
    assert delete_ranges(engine, other.id) == 1
    r.refresh(workspace.id)
    assert _domain(r, workspace.id, "42.0.0.1") == "a.com"  # the other's clear left A alone
    assert resolvers.count_ranges(engine, workspace.id) == 1


def test_headerless_file(engine: Any, resolver_for: Any, workspace: Any, tmp_path: Path) -> None:
    text = "44.0.0.0/24,acme.com,Acme\n44.0.1.0/24,beta.io\n2a03::/32,six.com\nnonsense,x.com\n"
    report = upload_ranges(engine, workspace.id, _csv(tmp_path, text))
    assert (report.read, report.accepted, report.rejected) == (4, 3, 1)
    rejects = list(iter_rejects(engine, workspace.id, run_id=report.run_id))
    assert [(x["line"], x["reason"]) for x in rejects] == [(4, "invalid_network")]
    assert rejects[0]["record"] == {"network": "nonsense", "domain": "x.com"}
    r = resolver_for()
    assert r.lookup(workspace.id, "44.0.0.9") == Match("acme.com", "ip", "ranges", 0.9, "Acme")
    assert _domain(r, workspace.id, "2a03::5") == "six.com"


def test_rejects_name_the_line_the_reason_and_the_value(
    engine: Any, workspace: Any, tmp_path: Path
) -> None:
    text = (
        "Network,Domain,Company\n"  # 1
        "45.0.0.0/24,acme.com,Acme\n"  # 2: fine
        "45.0.0.999/24,acme.com,\n"  # 3
        ",acme.com,\n"  # 4
        "45.0.2.10-45.0.2.1,acme.com,\n"  # 5: ends before it starts
        "45.0.3.1-2a00::1,acme.com,\n"  # 6: mixed versions
        "10.0.0.0/8,acme.com,\n"  # 7: private
        "0.0.0.0/0,acme.com,\n"  # 8: the whole internet
        "45.0.4.0/24,,\n"  # 9
        "45.0.5.0/24,not a domain,\n"  # 10
        "45.0.6.0/24,gmail.com,\n"  # 11
        "45.0.7.0/24,https://www.comcast.net,\n"  # 12
        "45.0.8.0/24,https://www.Acme.com/about,Acme\n"  # 13: fine (normalised)
    )
    report = upload_ranges(engine, workspace.id, _csv(tmp_path, text))
    assert (report.read, report.accepted, report.rejected) == (12, 2, 10)
    assert dict(report.rejected_by_reason) == {
        "invalid_network": 6, "missing_domain": 1, "invalid_domain": 1, "network_domain": 2,
    }  # fmt: skip
    rejects = {x["line"]: x for x in iter_rejects(engine, workspace.id, run_id=report.run_id)}
    assert sorted(rejects) == [3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    assert rejects[3]["reason"] == "invalid_network" and "45.0.0.999/24" in rejects[3]["detail"]
    assert "empty" in rejects[4]["detail"]
    assert "ends before it starts" in rejects[5]["detail"]
    assert "mixes IPv4 and IPv6" in rejects[6]["detail"]
    assert "private" in rejects[7]["detail"]
    assert "too large" in rejects[8]["detail"]
    assert rejects[9]["reason"] == "missing_domain"
    assert rejects[10]["reason"] == "invalid_domain" and "not a domain" in rejects[10]["detail"]
    assert rejects[11]["reason"] == "network_domain" and "gmail.com" in rejects[11]["detail"]
    assert rejects[12]["reason"] == "network_domain" and "comcast.net" in rejects[12]["detail"]
    assert rejects[3]["record"] == {"Network": "45.0.0.999/24", "Domain": "acme.com", "Company": ""}
    assert all(x["source"] == "website" for x in rejects.values())


def test_a_file_of_another_kind_fails_fast(engine: Any, workspace: Any, tmp_path: Path) -> None:
    path = _csv(tmp_path, "Company Name,Topic,Composite Score\nAcme,CRM,70\n")
    with pytest.raises(BadRequest) as err:
        upload_ranges(engine, workspace.id, path)
    assert "network" in err.value.custom_message and "Composite Score" in err.value.custom_message


def test_reupload_is_duplicate_and_a_changed_domain_an_update(
    engine: Any, resolver_for: Any, workspace: Any, tmp_path: Path
) -> None:
    ws = workspace.id
    first = upload_ranges(engine, ws, _csv(tmp_path, RANGES))
    again = upload_ranges(engine, ws, _csv(tmp_path, RANGES))
    assert (again.read, again.accepted, again.updated, again.duplicate) == (9, 0, 0, 9)
    assert first.run_id != again.run_id
    assert resolvers.count_ranges(engine, ws) == 12  # 41.0.0.1-41.0.0.6 is four blocks
    changed = RANGES.replace("40.0.7.0/24,beta.io,", "40.0.7.0/24,beta.com,Beta")
    report = upload_ranges(engine, ws, _csv(tmp_path, changed, "changed.csv"))
    assert (report.accepted, report.updated, report.duplicate) == (0, 1, 8)
    r = resolver_for()
    assert r.lookup(ws, "40.0.7.1") == Match("beta.com", "ip", "ranges", 0.9, "Beta")


def test_batches_count_each_row_once(engine: Any, workspace: Any, tmp_path: Path) -> None:
    lines = [f"46.0.{i}.0/24,c{i}.com" for i in range(7)] + ["46.0.0.0/24,c0.com", "bad,x.com"]
    path = _csv(tmp_path, "network,domain\n" + "\n".join(lines) + "\n")
    seen: list[tuple[int, int, int]] = []
    report = upload_ranges(
        engine, workspace.id, path, batch_size=3,
        on_progress=lambda rep, done, total: seen.append((rep.read, done, total)),
    )  # fmt: skip
    assert (report.read, report.accepted, report.duplicate, report.rejected) == (9, 7, 1, 1)
    assert len(seen) >= 3 and seen[-1][2] == path.stat().st_size
    assert resolvers.count_ranges(engine, workspace.id) == 7


# ---- replace -----------------------------------------------------------------------------------


def test_replace_removes_what_the_file_does_not_hold(
    engine: Any, resolver_for: Any, workspace: Any, tmp_path: Path
) -> None:
    ws = workspace.id
    old = "47.0.0.0/24,a.com\n47.0.1.0/24,b.com\n47.0.2.0/24,c.com\n"
    upload_ranges(engine, ws, _csv(tmp_path, old))
    r = resolver_for()
    assert _domain(r, ws, "47.0.0.1") == "a.com"
    new = "47.0.1.0/24,b.com\n47.0.2.0/24,c2.com\n47.0.3.0/24,d.com\nbad,x.com\n"
    report = upload_ranges(engine, ws, _csv(tmp_path, new, "new.csv"), replace=True)
    assert report.status == "done" and report.label == "new.csv (replace)"
    assert (report.read, report.accepted, report.updated, report.duplicate, report.rejected) == (
        4, 1, 1, 1, 1,
    )  # fmt: skip
    r.refresh(ws)
    got = {ip: _domain(r, ws, ip) for ip in ("47.0.0.1", "47.0.1.1", "47.0.2.1", "47.0.3.1")}
    assert got == {"47.0.0.1": None, "47.0.1.1": "b.com", "47.0.2.1": "c2.com", "47.0.3.1": "d.com"}
    assert resolvers.count_ranges(engine, ws) == 3


def test_replace_is_all_or_nothing(
    engine: Any, resolver_for: Any, workspace: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = workspace.id
    upload_ranges(engine, ws, _csv(tmp_path, "48.0.0.0/24,old.com\n"))
    calls = {"n": 0}
    real_apply = resolvers._apply

    def failing_apply(*args: Any, **kw: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:  # the first batch is written, then the second fails
            raise RuntimeError("disk full")
        return real_apply(*args, **kw)

    monkeypatch.setattr(resolvers, "_apply", failing_apply)
    new = "".join(f"48.1.{i}.0/24,new{i}.com\n" for i in range(5))
    with pytest.raises(RuntimeError, match="disk full"):
        upload_ranges(engine, ws, _csv(tmp_path, new, "new.csv"), replace=True, batch_size=2)
    assert calls["n"] == 2
    with engine.connect() as conn:
        failed = conn.execute(
            select(ingest_runs.c.status, ingest_runs.c.accepted, ingest_runs.c.error).where(
                ingest_runs.c.workspace_id == ws, ingest_runs.c.label == "new.csv (replace)"
            )
        ).one()
    assert (failed.status, failed.accepted) == ("failed", 0) and "disk full" in failed.error
    r = resolver_for()
    assert _domain(r, ws, "48.0.0.1") == "old.com"
    assert _domain(r, ws, "48.1.0.1") is None
    assert resolvers.count_ranges(engine, ws) == 1

    monkeypatch.setattr(resolvers, "_apply", real_apply)
    report = upload_ranges(engine, ws, _csv(tmp_path, new, "new.csv"), replace=True, batch_size=2)
    assert (report.accepted, report.status) == (5, "done")
    r.refresh(ws)
    assert _domain(r, ws, "48.0.0.1") is None and _domain(r, ws, "48.1.4.1") == "new4.com"


def test_replace_with_no_usable_row_keeps_the_ranges(
    engine: Any, workspace: Any, tmp_path: Path
) -> None:
    upload_ranges(engine, workspace.id, _csv(tmp_path, "49.0.0.0/24,keep.com\n"))
    path = _csv(tmp_path, "network,domain\nbad,x.com\n49.0.1.0/24,gmail.com\n", "bad.csv")
    with pytest.raises(BadRequest, match="no usable row"):
        upload_ranges(engine, workspace.id, path, replace=True)
    assert resolvers.count_ranges(engine, workspace.id) == 1


# ---- the cache ---------------------------------------------------------------------------------


def test_refresh_sees_changes_made_by_another_engine(
    engine: Any, database_url: str, resolver_for: Any, workspace: Any, tmp_path: Path
) -> None:
    ws = workspace.id
    upload_ranges(engine, ws, _csv(tmp_path, "50.0.0.0/24,one.com\n"))
    r = resolver_for()
    assert _domain(r, ws, "50.0.0.1") == "one.com"
    loaded = r._ranges[ws]
    r.refresh(ws)
    assert r._ranges[ws] is loaded  # unchanged: not loaded again

    elsewhere = make_engine(database_url)  # another process's engine
    try:
        upload_ranges(elsewhere, ws, _csv(tmp_path, "50.0.1.0/24,two.com\n", "two.csv"))
        assert _domain(r, ws, "50.0.1.1") is None  # cached until refreshed
        r.refresh(ws)
        assert _domain(r, ws, "50.0.1.1") == "two.com"
        upload_ranges(elsewhere, ws, _csv(tmp_path, "50.0.1.0/24,two.io\n", "three.csv"))
        r.refresh(ws)
        assert _domain(r, ws, "50.0.1.1") == "two.io"  # an update, same count of ranges
        loaded = r._ranges[ws]
        upload_ranges(elsewhere, ws, _csv(tmp_path, "50.0.1.0/24,two.io\n", "four.csv"))
        r.refresh(ws)
        assert r._ranges[ws] is loaded  # all duplicates: nothing changed
        assert delete_ranges(elsewhere, ws) == 2
        r.refresh(ws)
        assert _domain(r, ws, "50.0.0.1") is None
    finally:
        elsewhere.dispose()


def test_lookups_from_threads_while_ranges_reload(
    engine: Any, resolver_for: Any, workspace: Any, tmp_path: Path
) -> None:
    ws = workspace.id
    upload_ranges(engine, ws, _csv(tmp_path, "51.0.0.0/24,a.com\n"))
    r = resolver_for()
    seen: set[str | None] = set()
    errors: list[BaseException] = []
    stop = threading.Event()

    def look() -> None:
        try:
            while not stop.is_set():
                seen.add(_domain(r, ws, "51.0.0.1"))
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=look) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for i in range(4):
            upload_ranges(engine, ws, _csv(tmp_path, f"51.0.0.0/24,v{i}.com\n", f"{i}.csv"))
            r.refresh(ws)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == []
    assert seen <= {"a.com", "v0.com", "v1.com", "v2.com", "v3.com"}
    assert _domain(r, ws, "51.0.0.1") == "v3.com"


def test_concurrent_first_lookups_load_once(
    engine: Any, resolver_for: Any, workspace: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = workspace.id
    upload_ranges(engine, ws, _csv(tmp_path, "52.0.0.0/24,a.com\n"))
    loads: list[int] = []
    real_fetch = resolvers.fetch_all

    def counting_fetch(conn: Any, sql: str, params: tuple[Any, ...] = ()) -> Any:
        if "FROM ip_ranges" in sql:
            loads.append(params[0])
        return real_fetch(conn, sql, params)

    monkeypatch.setattr(resolvers, "fetch_all", counting_fetch)
    r = resolver_for()
    start = threading.Barrier(4)
    found: list[str | None] = []

    def first_lookup() -> None:
        start.wait()
        found.append(_domain(r, ws, "52.0.0.1"))

    threads = [threading.Thread(target=first_lookup) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert found == ["a.com"] * 4
    assert loads == [ws]
