"""Ingesting SNIIM publications into the lake: upsert, idempotence, S3, download, bad input."""

from __future__ import annotations

import functools
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import free_port
from sniim_workbook import small_frame, write_leche_workbook, write_rows

from milkprice.data.ingest import IngestReport, ingest_publication
from milkprice.data.lake import Lake, LakeError, MonthMerge
from milkprice.data.lake_guard import LOCK_FOLDER
from milkprice.data.schema import normalize_frame
from milkprice.data.sniim import SniimFormatError
from milkprice.data.sniim_download import SniimDownloadError
from milkprice.months import Month, month_range

JUNE, JULY = Month(2025, 6), Month(2025, 7)


def snapshot(lake: Lake) -> dict[str, bytes]:
    """Every file under the lake's base (partitions and any stray temporary file).

    The month locks (``.locks/``, kept on purpose: see milkprice.data.lake_guard) are no data.
    """
    if not lake.fs.exists(lake.base_uri):
        return {}
    locks = f"{lake.base_uri.rstrip('/')}/{LOCK_FOLDER}/"
    return {
        path: bytes(lake.fs.cat_file(path))
        for path in sorted(lake.fs.find(lake.base_uri))
        if not path.startswith(locks)
    }


def lake_frame(lake: Lake) -> pd.DataFrame:
    months = lake.list_months()
    return lake.read_window(month_range(months[0], months[-1])).frame


@pytest.fixture
def first_file(tmp_path: Path) -> Path:
    return write_leche_workbook(small_frame(), tmp_path / "leche-0702.xlsx")


@pytest.fixture
def http_dir(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A local HTTP server on 127.0.0.1 serving a folder; yields (base URL, folder)."""
    folder = tmp_path / "served"
    folder.mkdir()

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    handler = functools.partial(QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", folder
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_first_ingest_writes_every_month(local_lake: Lake, first_file: Path):
    report = ingest_publication(str(first_file), local_lake)
    assert isinstance(report, IngestReport)
    assert report.months == [JUNE, JULY] == local_lake.list_months()
    assert report.changed_partitions == [JUNE, JULY]
    assert report.rows_parsed == report.rows_added == 3 * 6 * 4
    assert report.rows_updated == report.rows_unchanged == 0
    assert report.dropped_average_rows == 6
    assert [write.rows for write in report.partitions] == [48, 24]
    pd.testing.assert_frame_equal(lake_frame(local_lake), normalize_frame(small_frame()))
    as_dict = json.loads(json.dumps(report.to_dict()))
    assert as_dict["months"] == ["2025-06", "2025-07"]
    assert as_dict["dates"] == ["2025-06-27", "2025-06-30", "2025-07-02"]
    assert as_dict["partitions"][0]["path"] == local_lake.uri(JUNE)


def test_ingesting_the_same_file_twice_changes_nothing(local_lake: Lake, first_file: Path):
    ingest_publication(str(first_file), local_lake)
    before = snapshot(local_lake)
    report = ingest_publication(str(first_file), local_lake)
    assert snapshot(local_lake) == before
    assert report.changed_partitions == []
    assert [write.changed for write in report.partitions] == [False, False]
    assert report.rows_added == report.rows_updated == 0
    assert report.rows_unchanged == report.rows_parsed == 72


def test_newer_publication_adds_its_dates_and_keeps_old_ones(local_lake: Lake, tmp_path: Path):
    ingest_publication(str(write_leche_workbook(small_frame(), tmp_path / "a.xlsx")), local_lake)
    june = local_lake.read_bytes(JUNE)
    # a later publication repeats 2025-07-02 unchanged and adds two new dates (one in August)
    newer = small_frame(["2025-07-02", "2025-07-04", "2025-08-01"])
    newer = newer[newer["Fecha"] > "2025-07-02"]
    old_july = small_frame()[lambda f: f["Fecha"] == "2025-07-02"]
    newer = pd.concat([old_july, newer], ignore_index=True)
    report = ingest_publication(str(write_leche_workbook(newer, tmp_path / "b.xlsx")), local_lake)
    assert report.months == [JULY, Month(2025, 8)]
    assert report.changed_partitions == [JULY, Month(2025, 8)]
    assert report.rows_added == 48 and report.rows_unchanged == 24 and report.rows_updated == 0
    assert local_lake.read_bytes(JUNE) == june  # an untouched month is not rewritten
    everything = lake_frame(local_lake)
    assert sorted(everything["Fecha"].dt.strftime("%m-%d").unique()) == [
        "06-27", "06-30", "07-02", "07-04", "08-01",
    ]  # fmt: skip
    expected = normalize_frame(
        pd.concat([small_frame(), newer]).drop_duplicates(
            ["Fecha", "Estado", "Ciudad", "Tipo", "Canal"]
        )
    )
    pd.testing.assert_frame_equal(everything, expected)


def test_updated_price_replaces_the_old_one(local_lake: Lake, tmp_path: Path):
    frame = small_frame()
    ingest_publication(str(write_leche_workbook(frame, tmp_path / "a.xlsx")), local_lake)
    key = (frame["Ciudad"] == "Guadalajara") & (frame["Fecha"] == "2025-06-30")
    new_prices = [30.25, np.nan, 31.5, 32.0]
    revised = frame.copy()
    revised.loc[key, "Precio"] = new_prices
    republished = revised[revised["Fecha"] == "2025-06-30"]  # a publication of that date only
    path = write_leche_workbook(republished, tmp_path / "b.xlsx")
    report = ingest_publication(str(path), local_lake)
    old_prices = frame.loc[key, "Precio"].tolist()
    differing = [
        (old, new)
        for old, new in zip(old_prices, new_prices, strict=True)
        if not (np.isnan(old) and np.isnan(new)) and old != new
    ]
    assert report.rows_updated == len(differing) >= 3
    assert report.rows_added == 0
    assert report.rows_unchanged == len(republished) - len(differing)
    assert report.changed_partitions == [JUNE]
    # every other row kept as it was, none duplicated; the four prices replaced
    pd.testing.assert_frame_equal(lake_frame(local_lake), normalize_frame(revised))


def test_ingest_into_s3_lake_gives_the_same_bytes(
    s3_lake: Lake, local_lake: Lake, first_file: Path
):
    reports = [ingest_publication(str(first_file), lake) for lake in (s3_lake, local_lake)]
    assert s3_lake.base_uri.startswith("s3://")
    assert s3_lake.list_months() == [JUNE, JULY]
    for month in (JUNE, JULY):
        assert s3_lake.read_bytes(month) == local_lake.read_bytes(month)
    assert reports[0].partitions[0].path.startswith("s3://")
    again = ingest_publication(str(first_file), s3_lake)
    assert again.changed_partitions == []


def test_download_from_local_http_server(local_lake: Lake, http_dir, tmp_path: Path):
    base, folder = http_dir
    write_leche_workbook(small_frame(), folder / "leche.xlsx")
    work = tmp_path / "downloads"
    report = ingest_publication(f"{base}/leche.xlsx", local_lake, work_dir=work)
    assert report.source == f"{base}/leche.xlsx"
    assert Path(report.local_path) == work / "leche.xlsx"
    assert (work / "leche.xlsx").read_bytes() == (folder / "leche.xlsx").read_bytes()
    assert [p.name for p in work.iterdir()] == ["leche.xlsx"]  # no temporary file left
    assert local_lake.list_months() == [JUNE, JULY]
    # without work_dir the download goes to a temporary folder; same result, nothing changes
    assert ingest_publication(f"{base}/leche.xlsx", local_lake).changed_partitions == []


@pytest.mark.realdata
def test_ingest_all_real_data_reproduces_the_real_lake(local_lake: Lake, real_data_dir, tmp_path):
    real = Lake(str(real_data_dir))
    months = real.list_months()
    frame = real.read_window(month_range(months[0], months[-1])).frame
    path = write_leche_workbook(frame, tmp_path / "all.xlsx")
    report = ingest_publication(str(path), local_lake)
    assert report.months == months == local_lake.list_months()
    assert len(report.dates) == 196 and report.rows_parsed == len(frame)
    pd.testing.assert_frame_equal(lake_frame(local_lake), frame, check_exact=True)


# --- bad input leaves the lake untouched ----------------------------------------------------


def _other_layout(tmp_path: Path, _base: str) -> tuple[str, str]:
    path = write_rows(tmp_path / "other.xlsx", [["name", "value"], ["a", 1]])
    return str(path), f"{path}: not a SNIIM milk publication"


def _not_xlsx(tmp_path: Path, _base: str) -> tuple[str, str]:
    path = tmp_path / "prices.xlsx"
    path.write_text("Fecha,Precio\n2025-07-02,25\n")
    return str(path), f"{path}: not an xlsx workbook"


def _missing(tmp_path: Path, _base: str) -> tuple[str, str]:
    path = tmp_path / "missing.xlsx"
    return str(path), f"{path}: no such file"


def _unreachable(_tmp_path: Path, _base: str) -> tuple[str, str]:
    url = f"http://127.0.0.1:{free_port()}/leche.xlsx"
    return url, f"{url}: unreachable"


def _http_404(_tmp_path: Path, base: str) -> tuple[str, str]:
    url = f"{base}/nothing-here.xlsx"
    return url, f"{url}: HTTP 404"


def _non_numeric(tmp_path: Path, _base: str) -> tuple[str, str]:
    extra = {pd.Timestamp("2025-07-02"): [["Sonora", "Hermosillo", "25,50", 1.0, 2.0, 3.0]]}
    path = write_leche_workbook(small_frame(), tmp_path / "bad.xlsx", extra_rows=extra)
    return str(path), f"{path}: sheet 'Leche', row"


def _unknown_channel(tmp_path: Path, _base: str) -> tuple[str, str]:
    names = ["Tiendas", "Autoservicios", "Mercados", "Autoservicios"]
    path = write_leche_workbook(small_frame(), tmp_path / "chan.xlsx", channels=names)
    return str(path), "found ['Tiendas', 'Autoservicios', 'Mercados', 'Autoservicios']"


def _served_html(tmp_path: Path, base: str) -> tuple[str, str]:
    (tmp_path / "served" / "page.xlsx").write_text("<html><body>Mantenimiento</body></html>")
    url = f"{base}/page.xlsx"
    return url, f"(it looks like an HTML page) (downloaded from {url})"


BAD_INPUTS = {
    "other_layout": (_other_layout, SniimFormatError),
    "not_xlsx": (_not_xlsx, SniimFormatError),
    "missing_file": (_missing, FileNotFoundError),
    "unreachable_url": (_unreachable, SniimDownloadError),
    "http_404": (_http_404, SniimDownloadError),
    "non_numeric_price": (_non_numeric, SniimFormatError),
    "unknown_channel": (_unknown_channel, SniimFormatError),
    "html_served_as_xlsx": (_served_html, SniimFormatError),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_fails_clearly_and_leaves_the_lake_untouched(
    local_lake: Lake, first_file: Path, tmp_path: Path, http_dir, case: str
):
    make, error = BAD_INPUTS[case]
    ingest_publication(str(first_file), local_lake)
    before = snapshot(local_lake)
    assert len(before) == 2
    source, message = make(tmp_path, http_dir[0])
    with pytest.raises(error) as info:
        ingest_publication(source, local_lake)
    assert message in str(info.value)
    assert snapshot(local_lake) == before


def test_non_numeric_price_message_names_the_row(local_lake: Lake, tmp_path: Path):
    source, _ = _non_numeric(tmp_path, "")
    with pytest.raises(SniimFormatError) as info:
        ingest_publication(source, local_lake)
    # preamble 3 rows + block of 07-02 (5 header rows + 6 cities) -> the extra row is row 15
    assert str(info.value).endswith("row 15: column 3: price '25,50' is not a number")
    assert snapshot(local_lake) == {}


def test_failed_write_puts_back_the_months_already_written(
    local_lake: Lake, first_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    ingest_publication(str(first_file), local_lake)
    before = snapshot(local_lake)
    # touches June (existing), August (new), then September, whose write fails
    newer = small_frame(["2025-06-20", "2025-08-01", "2025-09-03"], seed=3)
    path = write_leche_workbook(newer, tmp_path / "newer.xlsx")
    original = Lake.update_month
    attempted = []

    def failing_write(self: Lake, month: Month, merge: MonthMerge):
        attempted.append(month)
        if month == Month(2025, 9):
            raise LakeError(f"cannot write {month} in the lake at {self.base_uri}: disk full")
        return original(self, month, merge)

    monkeypatch.setattr(Lake, "update_month", failing_write)
    with pytest.raises(LakeError, match="disk full"):
        ingest_publication(str(path), local_lake)
    monkeypatch.undo()
    assert attempted[:3] == [JUNE, Month(2025, 8), Month(2025, 9)]
    assert snapshot(local_lake) == before
    assert local_lake.list_months() == [JUNE, JULY]


def test_download_timeout_is_a_clear_error(tmp_path: Path):
    import socket

    from milkprice.data.sniim_download import download_publication

    with socket.socket() as silent:  # accepts connections (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/leche.xlsx"
        with pytest.raises(SniimDownloadError, match=r"no answer within 0.5s") as info:
            download_publication(url, tmp_path, timeout_s=0.5)
    assert url in str(info.value)
    assert list(tmp_path.iterdir()) == []  # no partial or temporary file left


def test_only_http_urls_are_downloaded(local_lake: Lake):
    with pytest.raises(SniimDownloadError, match=r"ftp://example.invalid/x.xlsx: only http"):
        ingest_publication("ftp://example.invalid/x.xlsx", local_lake)
    assert snapshot(local_lake) == {}
