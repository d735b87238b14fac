"""Limits on vendor files: a decompression bomb and an endless line stop with an error that
names the file, the line and the limit, without being read whole, through the command line
and the dashboard's upload; what came before the break is stored, and the run says so."""

from __future__ import annotations

import csv
import gzip
import io
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from intently.app import create_app
from intently.ingest import linkedin
from intently.ingest.files import CsvInput, FileFormatError, FileLimits
from intently.settings import Settings
from tests.support.api import Workspace
from tests.support.cli import intently
from tests.support.dashboard import new_dashboard, upload
from tests.support.data import push_account, signals_of
from tests.support.vendor_files import (
    LINKEDIN_HEADER,
    SURGE_HEADER,
    bombora_csv,
    bombora_row,
    linkedin_row,
)

MiB = 1 << 20
WEEK = "2026-11-23"
GOOD = [
    bombora_row("acme.com", "CRM", 88, Week=WEEK),
    bombora_row("globex.com", "CRM", 75, Week=WEEK),
]


def bomb(payload: bytes, *, blank_mib: int) -> bytes:
    """`payload` gzipped, followed by `blank_mib` MiB of lines of spaces (rows of nothing,
    which compress about a thousand to one), streamed into the compressor."""
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb") as gz:
        gz.write(payload)
        line = b" " * 1023 + b"\n"
        for _ in range(blank_mib):
            gz.write(line * 1024)
    return out.getvalue()


def runs(ws: Workspace, source: str = "bombora") -> list[dict[str, Any]]:
    r = ws.api.get("/ingest/runs", params={"source": source})
    assert r.status_code == 200, r.text
    return list(r.json()["data"]["data"])


def one_line(text: str) -> str:
    return " ".join(text.split())


# ---- the command line -------------------------------------------------------------------


def test_a_gzip_bomb_stops_at_the_decompressed_limit_keeping_the_rows_before_it(
    tmp_path: Path, database_url: str, workspace: Workspace
) -> None:
    path = tmp_path / "surge.csv.gz"
    path.write_bytes(bomb(bombora_csv(GOOD, SURGE_HEADER), blank_mib=8))
    assert path.stat().st_size < 64 * 1024  # 8 MiB and more once inflated
    r = intently(database_url, "import", "bombora", str(path), "--workspace", workspace.name,
                 INTENTLY_IMPORT_MAX_DECOMPRESSED_BYTES=str(2 * MiB),
                 INTENTLY_IMPORT_MAX_COMPRESSION_RATIO="100000")  # fmt: skip
    assert r.returncode == 1, (r.stdout, r.stderr)
    message = one_line(r.stderr)
    assert (
        "surge.csv.gz holds more than 2,097,152 bytes once decompressed (the limit, "
        "INTENTLY_IMPORT_MAX_DECOMPRESSED_BYTES)" in message
    ), message
    [run] = runs(workspace)
    assert run["status"] == "failed" and "2,097,152 bytes" in run["error"]
    # The rows before the break are stored, and the run counts exactly them.
    assert (run["read"], run["accepted"], run["rejected"]) == (2, 2, 0)
    assert [s["topic"] for s in signals_of(workspace.api, push_account(workspace.api, "acme.com"),
                                           "bombora")] == ["CRM"]  # fmt: skip


def test_a_plain_file_over_the_limit_is_refused_before_a_run_starts(
    tmp_path: Path, database_url: str, workspace: Workspace
) -> None:
    path = tmp_path / "surge.csv"
    path.write_bytes(bombora_csv(GOOD * 50, SURGE_HEADER))
    r = intently(database_url, "import", "bombora", str(path), "--workspace", workspace.name,
                 INTENTLY_IMPORT_MAX_DECOMPRESSED_BYTES="2048")  # fmt: skip
    assert r.returncode == 2, (r.stdout, r.stderr)
    size = path.stat().st_size
    assert (
        f"surge.csv is {size:,} bytes, more than the limit of 2,048 "
        "(INTENTLY_IMPORT_MAX_DECOMPRESSED_BYTES)" in one_line(r.stderr)
    ), r.stderr
    assert runs(workspace) == []


def test_a_line_over_the_limit_stops_the_import_naming_the_line(
    tmp_path: Path, database_url: str, workspace: Workspace
) -> None:
    path = tmp_path / "surge.csv"
    # Line 4 runs on for 50,000 characters and never ends.
    path.write_bytes(bombora_csv(GOOD, SURGE_HEADER) + b"acme.com," + b"x" * 50_000)
    r = intently(database_url, "import", "bombora", str(path), "--workspace", workspace.name,
                 INTENTLY_IMPORT_MAX_LINE_CHARS="10000")  # fmt: skip
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert (
        "surge.csv: line 4 is longer than 10,000 characters (the limit, "
        "INTENTLY_IMPORT_MAX_LINE_CHARS)" in one_line(r.stderr)
    ), r.stderr
    [run] = runs(workspace)
    assert (run["status"], run["read"], run["accepted"]) == ("failed", 2, 2)
    assert "line 4 is longer than 10,000 characters" in run["error"]


def test_a_header_over_the_line_limit_fails_before_a_run(
    tmp_path: Path, database_url: str, workspace: Workspace
) -> None:
    path = tmp_path / "wide.csv"
    path.write_bytes(b"Domain,Topic,Composite Score," + b",".join([b"x" * 100] * 200) + b"\n")
    r = intently(database_url, "import", "g2", str(path), "--workspace", workspace.name,
                 INTENTLY_IMPORT_MAX_LINE_CHARS="10000")  # fmt: skip
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "wide.csv: line 1 is longer than 10,000 characters" in one_line(r.stderr)
    assert runs(workspace, "g2") == []


def test_ip_ranges_uploads_take_the_operators_limits(
    tmp_path: Path, database_url: str, workspace: Workspace
) -> None:
    ranges = "".join(f"60.{i}.0.0/24,corp{i}.com\n" for i in range(200))
    path = tmp_path / "ranges.csv"
    path.write_text(ranges)
    up = ("ip", "upload", str(path), "--workspace", workspace.name)
    r = intently(database_url, *up, INTENTLY_IMPORT_MAX_DECOMPRESSED_BYTES="2048")
    assert r.returncode == 2, (r.stdout, r.stderr)
    size = path.stat().st_size
    assert (
        f"ranges.csv is {size:,} bytes, more than the limit of 2,048 "
        "(INTENTLY_IMPORT_MAX_DECOMPRESSED_BYTES)" in one_line(r.stderr)
    ), r.stderr
    assert runs(workspace, "website") == []
    # A line over the limit stops a replace before it removes or adds a range.
    path.write_text(ranges + "61.0.0.0/24,long.com," + "x" * 20_000 + "\n")
    r = intently(database_url, *up, "--replace", INTENTLY_IMPORT_MAX_LINE_CHARS="10000")
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert (
        "ranges.csv: line 201 is longer than 10,000 characters (the limit, "
        "INTENTLY_IMPORT_MAX_LINE_CHARS)" in one_line(r.stderr)
    ), r.stderr
    [run] = runs(workspace, "website")
    assert (run["status"], run["accepted"]) == ("failed", 0)
    assert "line 201 is longer than 10,000 characters" in run["error"]
    # Within the limits, the same file goes in.
    r = intently(database_url, *up, "--replace")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "the workspace has 201 ranges" in r.stdout


def test_a_gzip_file_cut_short_keeps_what_came_before_and_says_where_it_stopped(
    tmp_path: Path, database_url: str, workspace: Workspace
) -> None:
    rows = [bombora_row(f"d{i}.com", "CRM", 80, Week=WEEK) for i in range(3000)]
    whole = gzip.compress(bombora_csv(rows, SURGE_HEADER))
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(whole[: len(whole) // 2])
    r = intently(database_url, "import", "bombora", str(path), "--workspace", workspace.name)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "cut.csv.gz: unreadable after line" in one_line(r.stderr)
    [run] = runs(workspace)
    assert run["status"] == "failed" and "unreadable after line" in run["error"]
    assert 0 < run["read"] < 3000 and run["accepted"] == run["read"]


# ---- the dashboard upload -----------------------------------------------------------------


def test_an_uploaded_gzip_bomb_is_stopped_by_the_ratio_guard_with_default_limits(
    app: Any, engine: Any, workspace: Workspace
) -> None:
    admin = new_dashboard(app, engine, workspace, "admin")
    content = bomb(bombora_csv(GOOD, SURGE_HEADER), blank_mib=64)
    assert len(content) < 256 * 1024  # 64 MiB once inflated
    r = upload(admin, "/app/sources/bombora/import", "surge.csv.gz", content)
    assert r.status_code == 200, r.text
    text = one_line(r.text)
    assert "The import of surge.csv.gz failed" in text
    assert "surge.csv.gz decompresses to more than 500 times its compressed size" in text, text
    assert "INTENTLY_IMPORT_MAX_COMPRESSION_RATIO" in text
    [run] = runs(admin.ws)
    assert (run["status"], run["accepted"]) == ("failed", 2)


@pytest.fixture
def strict_app(database_url: str) -> Iterator[Any]:
    """An app whose operator set low limits on uploaded files."""
    yield create_app(
        Settings(
            database_url=database_url,
            rate_limit_anonymous_per_minute=0,
            import_max_decompressed_bytes=MiB,
            import_max_line_chars=5000,
        )
    )


def test_the_dashboard_applies_the_operators_limits(
    strict_app: Any, engine: Any, workspace: Workspace
) -> None:
    board = new_dashboard(strict_app, engine, workspace, "admin")
    # 4 MiB once inflated, so the ratio guard might not see it: the size limit stops it.
    content = bomb(bombora_csv(GOOD, SURGE_HEADER), blank_mib=4)
    r = upload(board, "/app/sources/bombora/import", "big.csv.gz", content)
    assert r.status_code == 200, r.text
    assert "big.csv.gz holds more than 1,048,576 bytes once decompressed" in one_line(r.text)
    long_line = b"Id,Time,Tag,Company Name,Company Domain\n" + b"1," + b"9" * 20_000 + b"\n"
    r = upload(board, "/app/sources/g2/import", "g2.csv", long_line)
    assert r.status_code == 200, r.text
    assert "g2.csv: line 2 is longer than 5,000 characters" in one_line(r.text)
    ranges = b"network,domain\n10.0.0.0/8," + b"a" * 20_000 + b".com\n"
    r = upload(board, "/app/sources/website/ip-ranges", "ranges.csv", ranges)
    assert r.status_code == 400, r.text
    assert "ranges.csv: line 2 is longer than 5,000 characters" in one_line(r.text)


# ---- the reader: bounded, whatever the input ----------------------------------------------


def test_an_endless_line_is_not_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "endless.csv"
    path.write_bytes(b"Domain,Topic\n" + b"x" * (40 * MiB))
    limits = FileLimits(max_decompressed_bytes=1 << 40, max_compression_ratio=200,
                        max_line_chars=MiB)  # fmt: skip
    with CsvInput(path, limits=limits) as inp:
        with pytest.raises(FileFormatError, match=r"endless.csv: line 2 is longer than 1,048,576"):
            list(inp.rows())
        assert inp.bytes_read() < 2 * MiB  # stopped soon after the limit, not at the end


def test_a_bomb_is_not_inflated_whole(tmp_path: Path) -> None:
    path = tmp_path / "zeros.csv.gz"
    # One line of zeros: the line limit is far away, the ratio guard near.
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunks = [compressor.compress(b"Domain,Topic\n")]
    zeros = b"0" * MiB
    chunks += [compressor.compress(zeros) for _ in range(256)]
    path.write_bytes(b"".join(chunks) + compressor.flush())
    limits = FileLimits(max_decompressed_bytes=1 << 40, max_compression_ratio=200,
                        max_line_chars=1 << 30)  # fmt: skip
    with CsvInput(path, limits=limits) as inp:
        with pytest.raises(FileFormatError, match=r"decompresses to more than 200 times") as err:
            list(inp.rows())
        assert err.value.status == 413
        assert inp.bytes_read() < 64 * 1024


def test_a_linkedin_export_that_breaks_off_applies_the_rows_before_the_break(
    tmp_path: Path, database_url: str, engine: Any, workspace: Workspace
) -> None:
    linkedin.map_org(engine, workspace.id, "4242", "acme.com")
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(LINKEDIN_HEADER)
    w.writerow(linkedin_row(4242, impressions=100, clicks=0, engagements=0, leads=0))
    path = tmp_path / "ads.csv"
    path.write_bytes(out.getvalue().encode() + b"Acme," + b"9" * 20_000)
    r = intently(database_url, "import", "linkedin", str(path), "--workspace", workspace.name,
                 INTENTLY_IMPORT_MAX_LINE_CHARS="5000")  # fmt: skip
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "ads.csv: line 3 is longer than 5,000 characters" in one_line(r.stderr)
    [run] = runs(workspace, "linkedin")
    assert (run["status"], run["accepted"]) == ("failed", 1)
    got = signals_of(workspace.api, push_account(workspace.api, "acme.com"), "linkedin")
    assert [(s["type"], s["value"]) for s in got] == [("ad_impression", 100)]
