"""Two writers of one month never lose each other's rows; a killed writer leaves a readable month.

Concurrent ingests run in separate processes (spawn), released together by a barrier each
round, on the local lake (a lock per month) and on a moto S3 server (conditional writes). The
crash test SIGKILLs a process that ingests in a loop at seeded random moments and reads what it
left behind.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
import pytest
from lake_writers import ingest_in_step
from sniim_workbook import small_frame, write_leche_workbook

from milkprice.data.ingest import ingest_publication
from milkprice.data.lake import Lake, LakeError
from milkprice.data.lake_s3 import WriteConflict, put_if_unchanged, read_with_etag
from milkprice.months import Month, month_range

WRITERS = 3
# Each round, writer k ingests the k-th publication: different days of one month (the last
# round: of two months at once, so each writer locks both, in month order).
ROUNDS = [
    [["2025-03-03"], ["2025-03-05"], ["2025-03-07"]],
    [["2025-04-02"], ["2025-04-04"], ["2025-04-07"]],
    [["2025-05-05"], ["2025-05-07"], ["2025-05-09"]],
    [["2025-06-23", "2025-07-02"], ["2025-06-25", "2025-07-04"], ["2025-06-27", "2025-07-07"]],
]
ROWS_PER_DAY = 24  # small_frame: 6 cities x 4 (Tipo, Canal)
HELPER = Path(__file__).with_name("lake_writers.py")


def lake_dates(lake: Lake) -> dict[str, int]:
    """Rows per publication date in the whole lake."""
    months = lake.list_months()
    frame = lake.read_window(month_range(months[0], months[-1])).frame
    return {str(day.date()): count for day, count in frame.groupby("Fecha").size().items()}


def _lake(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Lake:
    if kind == "local":
        return Lake(str(tmp_path / "datalake"))
    return request.getfixturevalue("s3_lake")


@pytest.mark.parametrize("kind", ["local", pytest.param("s3", marks=pytest.mark.e2e)])
def test_concurrent_ingests_of_one_month_never_lose_a_day(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
):
    lake = _lake(kind, tmp_path, request)
    books: list[list[str]] = [[] for _ in range(WRITERS)]
    for number, publications in enumerate(ROUNDS):
        for writer, days in enumerate(publications):
            path = tmp_path / f"round{number}-writer{writer}.xlsx"
            write_leche_workbook(small_frame(days, seed=10 * number + writer), path)
            books[writer].append(str(path))

    context = multiprocessing.get_context("spawn")
    with (
        context.Manager() as manager,
        ProcessPoolExecutor(WRITERS, mp_context=context) as pool,
    ):
        barrier = manager.Barrier(WRITERS, timeout=120)
        futures = [
            pool.submit(ingest_in_step, lake.base_uri, lake.storage_options, own, barrier)
            for own in books
        ]
        written = [future.result(timeout=300) for future in futures]

    expected = {day for publications in ROUNDS for days in publications for day in days}
    assert all(written), written  # every writer wrote every round
    assert lake_dates(lake) == dict.fromkeys(sorted(expected), ROWS_PER_DAY)


# --------------------------------------------------------------------------- crashes


def _partition_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*-data.parquet"))}


def test_sigkill_at_random_moments_leaves_old_or_new_partitions(tmp_path: Path):
    # Two publications of the same keys (end of March, start of April) with other prices: the
    # writer alternates them, so each month flips between two known partitions.
    books = []
    states: dict[str, set[bytes]] = {}
    for seed in (1, 2):
        path = write_leche_workbook(
            small_frame(["2025-03-28", "2025-04-02"], seed=seed), tmp_path / f"book{seed}.xlsx"
        )
        books.append(str(path))
        scratch = tmp_path / f"scratch{seed}"
        ingest_publication(str(path), Lake(str(scratch)))
        for key, data in _partition_bytes(scratch).items():
            states.setdefault(key, set()).add(data)
    assert all(len(found) == 2 for found in states.values()) and len(states) == 2

    root = tmp_path / "lake"
    lake = Lake(str(root))
    rng = random.Random(20250328)
    killed_mid_write = 0
    for _ in range(6):
        writer = subprocess.Popen(
            [sys.executable, str(HELPER), str(root), *books],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "ready"
        # pause a random moment into the loop of ingests (imports are done), then kill
        writer.stdout.close()
        time.sleep(rng.uniform(0.0, 0.6))
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(timeout=10)

        killed_mid_write += any(root.rglob("*.tmp"))
        for key, data in _partition_bytes(root).items():
            assert data in states[key], f"{key} is neither the old nor the new partition"
        assert set(lake.list_months()) <= {Month(2025, 3), Month(2025, 4)}
        for month in lake.list_months():
            assert len(lake.read_month(month)[0]) == ROWS_PER_DAY  # readable, whole

    # the next ingest of those months removes what killed writers left behind
    ingest_publication(books[0], lake)
    assert list(root.rglob("*.tmp")) == []
    assert lake_dates(lake) == {"2025-03-28": ROWS_PER_DAY, "2025-04-02": ROWS_PER_DAY}
    print(f"{killed_mid_write} of 6 kills left a temporary behind")


def test_a_killed_writers_temporary_goes_with_the_next_write_of_its_month_only(tmp_path: Path):
    lake = Lake(str(tmp_path / "lake"))
    lake.write_month(Month(2025, 3), _rows("2025-03-03"))
    lake.write_month(Month(2025, 4), _rows("2025-04-02"))
    march = Path(lake.path(Month(2025, 3)))
    april = Path(lake.path(Month(2025, 4)))
    stale = march.with_name(f".{march.name}.0123abcd.tmp")
    stale.write_bytes(b"half a parquet file")
    other = april.with_name(f".{april.name}.4567cdef.tmp")  # may be a live writer's of April
    other.write_bytes(b"half a parquet file")

    assert lake.list_months() == [Month(2025, 3), Month(2025, 4)]  # never read as partitions
    lake.write_month(Month(2025, 3), _rows("2025-03-05"))

    assert not stale.exists()
    assert other.exists()


def _rows(day: str) -> pd.DataFrame:
    return small_frame([day], seed=5)


# --------------------------------------------------------------------------- bounded waits


def test_a_held_lock_gives_a_lake_error_naming_the_month_after_the_timeout(tmp_path: Path):
    root = tmp_path / "lake"
    lake = Lake(str(root), update_timeout_s=0.3)
    book = write_leche_workbook(small_frame(["2025-03-03"]), tmp_path / "book.xlsx")
    lock_file = lake.lock_path(Month(2025, 3))
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom filelock import FileLock\n"
            "lock = FileLock(sys.argv[1]); lock.acquire(); print('held', flush=True)\n"
            "time.sleep(120)",
            lock_file,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LakeError) as info:
            ingest_publication(str(book), lake)
        message = str(info.value)
        assert "cannot update 2025-03" in message
        assert lock_file in message
        assert "waited 0.3s" in message
        assert lake.list_months() == []
    finally:
        holder.kill()  # SIGKILL: the kernel frees the lock of a dead holder
        holder.wait(timeout=10)
    report = ingest_publication(str(book), lake)
    assert report.changed_partitions == [Month(2025, 3)]


@pytest.mark.e2e
def test_moto_honours_the_conditional_writes_through_s3fs(s3_lake: Lake):
    month = Month(2025, 3)
    s3_lake.write_month(month, _rows("2025-03-03"))
    path = s3_lake.path(month)
    found = read_with_etag(s3_lake.fs, path)
    assert found is not None
    data, etag = found
    s3_lake.write_month(month, _rows("2025-03-05"))  # another writer, after our read

    with pytest.raises(WriteConflict):
        put_if_unchanged(s3_lake.fs, path, data, etag)  # IfMatch: the ETag moved
    with pytest.raises(WriteConflict):
        put_if_unchanged(s3_lake.fs, path, data, None)  # IfNoneMatch='*': it exists
    assert s3_lake.read_month(month)[0]["Fecha"].dt.day.unique().tolist() == [5]
    fresh = s3_lake.path(Month(2025, 4))
    put_if_unchanged(s3_lake.fs, fresh, data, None)  # a new month: lands
    assert read_with_etag(s3_lake.fs, fresh) is not None


@pytest.mark.e2e
def test_an_s3_update_that_lost_a_race_merges_again_with_the_winners_rows(s3_lake: Lake):
    month = Month(2025, 3)
    s3_lake.write_month(month, _rows("2025-03-03"))
    rival = Lake(s3_lake.base_uri, s3_lake.storage_options)
    seen: list[list[int]] = []

    def add_march_7(previous: pd.DataFrame | None) -> pd.DataFrame:
        assert previous is not None
        seen.append(sorted(previous["Fecha"].dt.day.unique().tolist()))
        if len(seen) == 1:  # between our read and our write, another ingest lands March 5
            rival.write_month(month, pd.concat([previous, _rows("2025-03-05")]))
        return pd.concat([previous, _rows("2025-03-07")])

    s3_lake.update_month(month, add_march_7)

    assert seen == [[3], [3, 5]]  # the second merge saw the winner's rows
    days = s3_lake.read_month(month)[0]["Fecha"].dt.day.unique().tolist()
    assert sorted(days) == [3, 5, 7]


@pytest.mark.e2e
def test_s3_writes_that_keep_losing_end_in_a_lake_error_naming_the_month(
    s3_lake: Lake, monkeypatch: pytest.MonkeyPatch
):
    def always_lost(*args: object) -> None:
        raise WriteConflict("changed since it was read")

    monkeypatch.setattr("milkprice.data.lake.put_if_unchanged", always_lost)
    lake = Lake(s3_lake.base_uri, s3_lake.storage_options, update_timeout_s=0.5)
    with pytest.raises(LakeError, match=r"cannot update 2025-03 .* conditional writes"):
        lake.write_month(Month(2025, 3), _rows("2025-03-03"))
    assert lake.list_months() == []
