"""``milkprice data publish-demo``: the demo publications over HTTP, read back by the parser."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from conftest import free_port, start_background, stop_process_group, wait_for_http

from milkprice.data.demo import default_demo_range, generate_demo_frame
from milkprice.data.fetch import FetchOptions, fetch_day
from milkprice.data.lake import Lake
from milkprice.data.publisher import SNIIM_PATH_TEMPLATE, demo_publications
from milkprice.data.schema import KEY_COLUMNS, validate_frame
from milkprice.data.sniim import parse_leche_publication

MILKPRICE = str(Path(sys.executable).parent / "milkprice")
TODAY = date(2025, 3, 12)  # the demo lake of that day: 2023-09..2025-02


def _clean(frame: pd.DataFrame) -> pd.DataFrame:
    rows, _ = validate_frame(frame, origin="test")
    return rows.sort_values(KEY_COLUMNS).reset_index(drop=True)


def test_demo_publications_continue_the_demo_lake_up_to_through():
    first, last = default_demo_range(TODAY)
    frame = demo_publications(0, date(2025, 3, 12), TODAY)
    lake_rows = generate_demo_frame(first, last, 0)
    # the demo lake's months are exactly what `milkprice data demo` writes that day
    held = frame[frame["Fecha"] <= last.end].reset_index(drop=True)
    pd.testing.assert_frame_equal(held, lake_rows)
    later = sorted(frame.loc[frame["Fecha"] > last.end, "Fecha"].dt.date.unique())
    assert later == [date(2025, 3, d) for d in (3, 5, 7, 10, 12)]
    assert len(frame[frame["Fecha"].dt.date == date(2025, 3, 12)]) == 216


@pytest.mark.e2e
def test_publish_demo_serves_workbooks_the_parser_reads_back(tmp_path: Path):
    port = free_port()
    today = datetime.now(UTC).date()  # the publisher's today (MILKPRICE_TIMEZONE=UTC)
    through = today + timedelta(days=40)  # after the default demo lake, whatever today is
    log = tmp_path / "publisher.log"
    env = {**os.environ, "MILKPRICE_SEED": "3", "MILKPRICE_TIMEZONE": "UTC"}
    process = start_background(
        [MILKPRICE, "data", "publish-demo", "--port", str(port), "--through", through.isoformat()],
        env,
        tmp_path,
        log,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for_http(f"{base}/", timeout_s=60)
        expected = demo_publications(3, through, today)
        days = sorted(expected["Fecha"].dt.date.unique())
        template = f"{base}{SNIIM_PATH_TEMPLATE}"
        assert f"export MILKPRICE_SNIIM_URL_TEMPLATE='{template}'" in log.read_text()

        newest = days[-1]  # a date after the demo lake's months
        assert newest > default_demo_range(today)[1].end.date()
        for day in (days[0], newest):
            with urllib.request.urlopen(template.format(day=day), timeout=30) as answer:
                (tmp_path / "got.xlsx").write_bytes(answer.read())
            publication = parse_leche_publication(tmp_path / "got.xlsx")
            assert publication.dates == [day]
            want = expected[expected["Fecha"].dt.date == day]
            pd.testing.assert_frame_equal(_clean(publication.frame), _clean(want))

        not_a_day = newest + timedelta(days=1)  # Tuesday, Thursday or weekend: never published
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(template.format(day=not_a_day), timeout=30)
        assert info.value.code == 404

        # `fetch` reads it as it reads SNIIM
        lake = Lake(str(tmp_path / "lake"))
        result = fetch_day(newest, lake, FetchOptions(url_template=template, timeout_s=30))
        assert result.status == "ingested", result.line
        assert result.report is not None and result.report.rows_parsed == 216
    finally:
        stop_process_group(process)
    assert process.poll() is not None


def test_publish_demo_refuses_a_bad_through():
    result = subprocess.run(
        [MILKPRICE, "data", "publish-demo", "--through", "2025-02-30"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1 and "--through" in result.stderr, result.stderr


def test_the_package_writer_imports_nothing_of_the_parser():
    import ast

    import milkprice.data.sniim_workbook as writer

    tree = ast.parse(Path(writer.__file__).read_text())
    imported = {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert not {name for name in imported if name and name.startswith("milkprice")}, imported
