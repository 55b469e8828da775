"""Data layer: the same Lake functions on a local folder and on S3 (moto server, real HTTP).

Every lake test runs twice, once per backend, through the ``lake`` fixture. S3 lakes are built
from settings with ``AWS_ENDPOINT_URL`` pointing at a moto server on loopback, so the code path is
the one used against AWS (botocore over HTTP), not moto's in-process mock.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import pandas as pd
import pytest
from conftest import free_port

from milkprice.data.demo import generate_demo_frame
from milkprice.data.lake import Lake, LakeError, partition_key, serialize_partition
from milkprice.data.lake_guard import LOCK_FOLDER
from milkprice.data.schema import COLUMNS, LakeDataError, validate_frame
from milkprice.months import Month
from milkprice.settings import get_settings

JAN = Month(2025, 1)
FEB = Month(2025, 2)
MAR = Month(2025, 3)


# --------------------------------------------------------------------------- helpers


def small_frame(
    month: Month = JAN, prices: tuple[float, ...] = (25.5, 26.0, 27.25)
) -> pd.DataFrame:
    """A few valid rows of one series inside ``month`` (1st, 2nd, 3rd... day)."""
    days = [month.start + pd.Timedelta(days=i) for i in range(len(prices))]
    return pd.DataFrame(
        {
            "Fecha": pd.to_datetime(days),
            "Estado": "Jalisco",
            "Ciudad": "Guadalajara",
            "Tipo": "Pasteurizada",
            "Canal": "Tiendas",
            "Precio": list(prices),
        }
    )


def demo_month(month: Month, seed: int = 7) -> pd.DataFrame:
    """One month of the project's seeded demo data (216 series, realistic quirks)."""
    frame = generate_demo_frame(month, month, seed=seed)
    assert len(frame) > 1000
    return frame


def _s3_location(lake: Lake) -> tuple[str, str]:
    bucket, _, prefix = lake.base_uri.removeprefix("s3://").partition("/")
    return bucket, prefix.strip("/")


def snapshot(lake: Lake) -> dict[str, bytes]:
    """Every object/file under the lake's base and its bytes, read without the Lake class."""
    if lake.is_local:
        base = Path(lake.base_uri)
        if not base.exists():
            return {}
        # the month locks (kept on purpose: see milkprice.data.lake_guard) are no data
        return {
            str(p.relative_to(base)): p.read_bytes()
            for p in sorted(base.rglob("*"))
            if p.is_file() and p.relative_to(base).parts[0] != LOCK_FOLDER
        }
    bucket, prefix = _s3_location(lake)
    client = boto3.client("s3", endpoint_url=lake.storage_options["endpoint_url"])
    listing = client.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return {
        item["Key"]: client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        for item in listing.get("Contents", [])
    }


def put_raw(lake: Lake, month: Month, data: bytes) -> None:
    """Put bytes at a month's partition path behind the lake's back (another writer)."""
    if lake.is_local:
        path = Path(lake.base_uri) / partition_key(month)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return
    bucket, prefix = _s3_location(lake)
    key = f"{prefix}/{partition_key(month)}" if prefix else partition_key(month)
    client = boto3.client("s3", endpoint_url=lake.storage_options["endpoint_url"])
    client.put_object(Bucket=bucket, Key=key, Body=data)


@pytest.fixture(params=["local", "s3"])
def lake(request: pytest.FixtureRequest) -> Lake:
    """The same tests on both backends: a local folder and an S3 bucket on moto."""
    return request.getfixturevalue(f"{request.param}_lake")


@pytest.fixture
def s3_prefixed_lake(s3_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Lake:
    """An S3 lake under a key prefix inside the bucket (MILKPRICE_S3_PREFIX)."""
    monkeypatch.setenv("MILKPRICE_S3_PREFIX", "/team/lake/")
    return Lake.from_settings(get_settings(), "s3")


# --------------------------------------------------------------------------- round trips


def test_lake_fixture_backends_are_what_they_claim(local_lake: Lake, s3_lake: Lake, s3_env):
    assert local_lake.is_local
    assert not s3_lake.is_local
    assert s3_lake.base_uri == f"s3://{s3_env['S3_BUCKET']}"
    assert s3_lake.storage_options["endpoint_url"] == s3_env["AWS_ENDPOINT_URL"]


def test_write_then_read_gives_the_validated_frame(lake: Lake):
    frame = demo_month(JAN)
    expected, summary = validate_frame(frame, origin="expected", month=JAN)

    written = lake.write_month(JAN, frame)
    back, read_summary = lake.read_month(JAN)

    pd.testing.assert_frame_equal(back, expected)
    assert list(back.columns) == COLUMNS
    assert written.changed
    assert written.rows == len(expected) == read_summary.rows
    assert written.path == lake.uri(JAN)
    assert written.path.endswith("monthly/2025/01/2025-01-data.parquet")
    assert written.summary.series == read_summary.series == 216
    assert written.summary.non_positive_prices == summary.non_positive_prices
    assert summary.non_positive_prices > 0  # the demo data has zero prices, as SNIIM does
    # zeros were stored as missing, so reading finds none left to repair
    assert read_summary.non_positive_prices == 0
    assert read_summary.missing_prices == summary.missing_prices


def test_list_months_and_read_window_report_missing_months(lake: Lake):
    assert lake.list_months() == []
    lake.write_month(MAR, small_frame(MAR))
    lake.write_month(JAN, small_frame(JAN))
    assert lake.list_months() == [JAN, MAR]  # sorted, whatever the write order
    assert lake.exists(JAN)
    assert not lake.exists(FEB)

    window = lake.read_window([Month(2024, 12), JAN, FEB, MAR])

    assert window.present == [JAN, MAR]
    assert window.missing == [Month(2024, 12), FEB]
    assert len(window.summaries) == 2
    assert len(window.frame) == 6
    assert sorted(window.frame["Fecha"].dt.month.unique().tolist()) == [1, 3]
    assert str(window.frame["Fecha"].dtype) == "datetime64[ns]"


def test_read_window_of_only_missing_months_is_empty_with_lake_dtypes(lake: Lake):
    lake.write_month(JAN, small_frame(JAN))
    window = lake.read_window([FEB, MAR])
    assert window.present == []
    assert window.missing == [FEB, MAR]
    assert window.frame.empty
    assert list(window.frame.columns) == COLUMNS
    assert str(window.frame["Fecha"].dtype) == "datetime64[ns]"
    assert str(window.frame["Precio"].dtype) == "float64"


def test_read_month_of_absent_month_names_the_month(lake: Lake):
    lake.write_month(JAN, small_frame(JAN))
    with pytest.raises(FileNotFoundError, match=r"2025-02.*monthly/2025/02/2025-02-data\.parquet"):
        lake.read_month(FEB)


def test_rewriting_the_same_rows_leaves_bytes_unchanged(lake: Lake):
    frame = demo_month(JAN)
    first = lake.write_month(JAN, frame)
    before = snapshot(lake)

    # same rows, shuffled and with another index and date resolution: same data
    shuffled = frame.sample(frac=1.0, random_state=3).set_index(pd.RangeIndex(5, 5 + len(frame)))
    shuffled["Fecha"] = shuffled["Fecha"].astype("datetime64[s]")
    again = lake.write_month(JAN, shuffled)

    assert first.changed is True
    assert again.changed is False
    assert again.fingerprint == first.fingerprint
    assert snapshot(lake) == before


def test_writing_different_rows_replaces_the_partition(lake: Lake):
    lake.write_month(JAN, small_frame(JAN, (25.5, 26.0, 27.25)))
    before = snapshot(lake)
    update = lake.write_month(JAN, small_frame(JAN, (25.5, 26.0, 28.0)))
    after = snapshot(lake)

    assert update.changed is True
    assert list(after) == list(before)  # one partition, replaced in place; no stray files
    assert after != before
    back, _ = lake.read_month(JAN)
    assert back["Precio"].tolist() == [25.5, 26.0, 28.0]


def test_local_and_s3_write_identical_bytes(local_lake: Lake, s3_lake: Lake):
    frame = demo_month(FEB, seed=11)
    local = local_lake.write_month(FEB, frame)
    remote = s3_lake.write_month(FEB, frame)

    local_bytes = snapshot(local_lake)["monthly/2025/02/2025-02-data.parquet"]
    (s3_key, s3_bytes), *_ = snapshot(s3_lake).items()
    assert s3_key == "monthly/2025/02/2025-02-data.parquet"
    assert s3_bytes == local_bytes
    assert local_bytes == serialize_partition(validate_frame(frame, origin="x", month=FEB)[0])
    assert local.fingerprint == remote.fingerprint


def test_s3_lake_under_a_prefix_keeps_keys_under_it(s3_prefixed_lake: Lake, s3_env):
    assert s3_prefixed_lake.base_uri == f"s3://{s3_env['S3_BUCKET']}/team/lake"
    s3_prefixed_lake.write_month(JAN, small_frame(JAN))
    assert list(snapshot(s3_prefixed_lake)) == ["team/lake/monthly/2025/01/2025-01-data.parquet"]
    assert s3_prefixed_lake.list_months() == [JAN]
    pd.testing.assert_frame_equal(
        s3_prefixed_lake.read_month(JAN)[0],
        validate_frame(small_frame(JAN), origin="x")[0],
    )


def test_list_months_ignores_files_that_are_not_partitions(lake: Lake):
    lake.write_month(JAN, small_frame(JAN))
    put_raw(lake, FEB, b"")  # a real partition path (empty: still listed, read would fail)
    if lake.is_local:
        base = Path(lake.base_uri)
        (base / "monthly/2025/03").mkdir(parents=True)
        (base / "monthly/2025/03/2025-04-data.parquet").write_bytes(b"x")  # month mismatch
        (base / "monthly/2025/03/.abc.tmp").write_bytes(b"x")  # an interrupted write's temp
        (base / "monthly/2025/03/notes.txt").write_bytes(b"x")
    assert lake.list_months() == [JAN, FEB]


def test_s3_sees_partitions_written_by_another_process(s3_lake: Lake):
    """A long-lived reader (the API) must see months the monthly flow adds elsewhere.

    s3fs caches directory listings forever by default; the lake turns that cache off.
    """
    s3_lake.write_month(JAN, small_frame(JAN))
    assert s3_lake.list_months() == [JAN]
    assert s3_lake.read_window([JAN, FEB]).missing == [FEB]

    put_raw(s3_lake, FEB, serialize_partition(validate_frame(small_frame(FEB), origin="x")[0]))

    assert s3_lake.list_months() == [JAN, FEB]
    assert s3_lake.exists(FEB)
    assert s3_lake.read_window([JAN, FEB]).missing == []


# --------------------------------------------------------------------------- bad inputs


def _with(column: str, values: list[object]) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        out = frame.copy()
        out[column] = values
        return out

    return change


BAD_FRAMES: dict[str, tuple[Callable[[pd.DataFrame], pd.DataFrame], list[str]]] = {
    "missing column": (lambda f: f.drop(columns="Canal"), ["missing column", "Canal"]),
    "extra column": (lambda f: f.assign(Notas="x"), ["unexpected column", "Notas"]),
    "string Fecha": (
        _with("Fecha", ["2025-01-01", "2025-01-02", "2025-01-03"]),
        ["'Fecha'", "must hold dates"],
    ),
    "string Precio": (_with("Precio", ["25.5", "26", "27"]), ["'Precio'", "must be numeric"]),
    "unknown Tipo": (
        _with("Tipo", ["Pasteurizada", "Deslactosada", "Pasteurizada"]),
        ["'Tipo'", "Deslactosada"],
    ),
    "unknown Canal": (
        _with("Canal", ["Tiendas", "Mercados", "Tiendas"]),
        ["'Canal'", "Mercados"],
    ),
    "duplicate rows": (
        lambda f: pd.concat([f, f.iloc[[1]]], ignore_index=True),
        ["duplicate rows", "1 repeated", "2025-01-02 Jalisco/Guadalajara/Pasteurizada/Tiendas"],
    ),
    "row in the wrong month": (
        _with("Fecha", pd.to_datetime(["2025-01-01", "2025-02-01", "2025-01-03"])),
        ["'Fecha'", "outside the partition month 2025-01", "2025-02-01"],
    ),
    "empty Ciudad": (_with("Ciudad", ["Guadalajara", "", "Guadalajara"]), ["'Ciudad'"]),
}


@pytest.mark.parametrize("case", list(BAD_FRAMES))
def test_bad_rows_are_refused_with_a_clear_message_and_the_lake_unchanged(lake: Lake, case: str):
    lake.write_month(JAN, small_frame(JAN, (20.0, 21.0, 22.0)))
    before = snapshot(lake)
    change, fragments = BAD_FRAMES[case]

    with pytest.raises(LakeDataError) as raised:
        lake.write_month(JAN, change(small_frame(JAN)))

    message = str(raised.value)
    assert lake.uri(JAN) in message  # names the partition being written
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert snapshot(lake) == before
    assert lake.read_month(JAN)[0]["Precio"].tolist() == [20.0, 21.0, 22.0]


def test_bad_rows_for_a_new_month_leave_no_partition(lake: Lake):
    lake.write_month(JAN, small_frame(JAN))
    before = snapshot(lake)
    with pytest.raises(LakeDataError, match="2025-02"):
        lake.write_month(FEB, small_frame(JAN))  # January rows filed under February
    assert snapshot(lake) == before
    assert lake.list_months() == [JAN]


@pytest.mark.parametrize("corruption", ["garbage", "truncated", "empty"])
def test_corrupt_partition_fails_the_read_naming_the_file(lake: Lake, corruption: str):
    good = serialize_partition(validate_frame(small_frame(FEB), origin="x")[0])
    data = {"garbage": b"this is not parquet" * 10, "truncated": good[: len(good) // 2]}
    lake.write_month(JAN, small_frame(JAN))
    put_raw(lake, FEB, data.get(corruption, b""))
    before = snapshot(lake)

    with pytest.raises(LakeDataError, match="not a readable parquet file") as raised:
        lake.read_month(FEB)
    assert lake.uri(FEB) in str(raised.value)
    with pytest.raises(LakeDataError, match=r"2025-02-data\.parquet"):
        lake.read_window([JAN, FEB])  # a corrupt month is an error, not a missing one
    assert snapshot(lake) == before
    assert lake.list_months() == [JAN, FEB]


def test_partition_with_bad_rows_fails_the_read_naming_file_and_month(lake: Lake):
    # a partition someone else wrote: readable parquet, but February rows in January's file
    put_raw(lake, JAN, serialize_partition(validate_frame(small_frame(FEB), origin="x")[0]))
    with pytest.raises(LakeDataError) as raised:
        lake.read_month(JAN)
    message = str(raised.value)
    assert lake.uri(JAN) in message
    assert "outside the partition month 2025-01" in message


def test_zero_and_negative_prices_become_missing_and_are_counted(lake: Lake):
    frame = small_frame(JAN, (25.5, 0.0, -3.0, float("nan"), 26.0))
    written = lake.write_month(JAN, frame)

    assert written.summary.non_positive_prices == 2
    assert written.summary.missing_prices == 3  # the NaN plus the two repaired prices
    assert written.rows == 5
    back, _ = lake.read_month(JAN)
    assert back["Precio"].isna().tolist() == [False, True, True, True, False]
    assert (back["Precio"].dropna() > 0).all()


def test_national_average_rows_are_dropped_and_counted(lake: Lake):
    frame = small_frame(JAN)
    averages = frame.assign(Estado="Zacatecas").iloc[:2].copy()
    averages["Ciudad"] = ["Promedio Ponderado por Población", "Promedio aritmético"]
    written = lake.write_month(JAN, pd.concat([frame, averages], ignore_index=True))

    assert written.summary.dropped_average_rows == 2
    assert written.rows == 3
    back, _ = lake.read_month(JAN)
    assert not back["Ciudad"].str.contains("Promedio").any()
    assert written.summary.series == 1


# --------------------------------------------------------------------------- atomic writes


def _fail_after_half(real: Callable[..., object], calls: list[str]) -> Callable[..., None]:
    """A pipe_file that writes half the bytes (as a crash mid-write would) and then fails."""

    def pipe_file(path: str, value: bytes, *args: object, **kwargs: object) -> None:
        calls.append(path)
        real(path, value[: len(value) // 2], *args, **kwargs)
        raise OSError(28, "No space left on device")

    return pipe_file


def test_local_write_failing_midway_keeps_previous_partition_and_no_temp(
    local_lake: Lake, monkeypatch: pytest.MonkeyPatch
):
    local_lake.write_month(JAN, small_frame(JAN, (20.0, 21.0, 22.0)))
    before = snapshot(local_lake)
    calls: list[str] = []
    monkeypatch.setattr(
        local_lake.fs, "pipe_file", _fail_after_half(local_lake.fs.pipe_file, calls)
    )

    with pytest.raises(LakeError, match=r"cannot write .*2025-01-data\.parquet.*No space left"):
        local_lake.write_month(JAN, small_frame(JAN, (30.0, 31.0, 32.0)))

    # the bytes went to a temporary file beside the partition, never to the partition itself
    assert len(calls) == 1
    assert calls[0] != local_lake.path(JAN)
    assert Path(calls[0]).parent == Path(local_lake.path(JAN)).parent
    monkeypatch.undo()
    assert snapshot(local_lake) == before  # previous bytes intact, the half-written temp gone
    assert local_lake.read_month(JAN)[0]["Precio"].tolist() == [20.0, 21.0, 22.0]


def test_local_write_failing_at_rename_keeps_previous_partition_and_no_temp(
    local_lake: Lake, monkeypatch: pytest.MonkeyPatch
):
    local_lake.write_month(JAN, small_frame(JAN, (20.0, 21.0, 22.0)))
    before = snapshot(local_lake)
    new = small_frame(JAN, (30.0, 31.0, 32.0))
    new_bytes = serialize_partition(validate_frame(new, origin="x")[0])
    seen: dict[str, object] = {}

    def mv(source: str, destination: str, *args: object, **kwargs: object) -> None:
        # the moment just before the rename: the new bytes are complete in the temp file
        seen["temp_bytes"] = Path(source).read_bytes()
        seen["same_folder"] = Path(source).parent == Path(destination).parent
        seen["reader_sees"] = Lake(local_lake.base_uri).read_month(JAN)[0]["Precio"].tolist()
        seen["listed"] = Lake(local_lake.base_uri).list_months()
        raise PermissionError(13, "Permission denied", destination)

    monkeypatch.setattr(local_lake.fs, "mv", mv)
    with pytest.raises(LakeError, match="Permission denied"):
        local_lake.write_month(JAN, new)
    monkeypatch.undo()

    assert seen["temp_bytes"] == new_bytes
    assert seen["same_folder"] is True  # same filesystem: the rename is atomic
    assert seen["reader_sees"] == [20.0, 21.0, 22.0]  # a concurrent reader sees the old month
    assert seen["listed"] == [JAN]  # the temp file is never taken for a partition
    assert snapshot(local_lake) == before


def test_local_write_of_a_new_month_failing_midway_leaves_nothing(
    local_lake: Lake, monkeypatch: pytest.MonkeyPatch
):
    local_lake.write_month(JAN, small_frame(JAN))
    before = snapshot(local_lake)
    monkeypatch.setattr(local_lake.fs, "pipe_file", _fail_after_half(local_lake.fs.pipe_file, []))
    with pytest.raises(LakeError):
        local_lake.write_month(FEB, small_frame(FEB))
    monkeypatch.undo()
    assert snapshot(local_lake) == before
    assert local_lake.list_months() == [JAN]


class CuttingProxy:
    """A TCP proxy to the S3 endpoint that drops the connection halfway through every PUT body.

    This is what "failing in the middle" means for S3: the upload is cut after part of the
    object's bytes have reached the server. Everything else is relayed untouched.
    """

    def __init__(self, target: str) -> None:
        host, port = target.removeprefix("http://").split(":")
        self.target = (host, int(port))
        self.server = socket.create_server(("127.0.0.1", free_port()))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.cut_puts = 0
        self.bytes_forwarded_before_cut: list[int] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def close(self) -> None:
        self.server.close()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    @staticmethod
    def _relay(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def _handle(self, client: socket.socket) -> None:
        upstream = socket.create_connection(self.target)
        threading.Thread(target=self._relay, args=(upstream, client), daemon=True).start()
        try:
            while data := client.recv(65536):
                if data.startswith(b"PUT "):
                    self._cut(client, upstream, data)
                    return
                upstream.sendall(data)
        except OSError:
            pass
        finally:
            client.close()
            upstream.close()

    def _cut(self, client: socket.socket, upstream: socket.socket, data: bytes) -> None:
        while b"\r\n\r\n" not in data:
            data += client.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.lower().split(b"\r\n")
            if line.startswith(b"content-length:")
        )
        # the head goes through at once: with "Expect: 100-continue" the client sends the body
        # only after the server's interim answer, which the other relay passes back
        upstream.sendall(head + b"\r\n\r\n")
        while len(body) < length // 2:
            body += client.recv(65536)
        upstream.sendall(body[: length // 2])
        self.cut_puts += 1
        self.bytes_forwarded_before_cut.append(length // 2)
        time.sleep(0.05)  # let the server take in the partial body before the connection drops
        for sock in (upstream, client):
            sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def cutting_proxy(s3_endpoint: str) -> Iterator[CuttingProxy]:
    proxy = CuttingProxy(s3_endpoint)
    yield proxy
    proxy.close()


def test_s3_put_cut_midway_keeps_previous_object(s3_lake: Lake, cutting_proxy: CuttingProxy):
    s3_lake.write_month(JAN, small_frame(JAN, (20.0, 21.0, 22.0)))
    before = snapshot(s3_lake)
    # one botocore attempt per s3fs try keeps the test short; s3fs still retries the cut PUT
    # a few times, and every attempt is cut again
    through_proxy = Lake(
        s3_lake.base_uri,
        {
            "endpoint_url": cutting_proxy.url,
            "config_kwargs": {"retries": {"total_max_attempts": 1}},
        },
    )

    with pytest.raises(LakeError, match=r"cannot write .*2025-01-data\.parquet"):
        through_proxy.write_month(JAN, small_frame(JAN, (30.0, 31.0, 32.0)))

    assert cutting_proxy.cut_puts > 1  # the PUT was retried; every attempt was cut
    assert min(cutting_proxy.bytes_forwarded_before_cut) > 0
    assert snapshot(s3_lake) == before
    bucket, _ = _s3_location(s3_lake)
    client = boto3.client("s3", endpoint_url=s3_lake.storage_options["endpoint_url"])
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert s3_lake.read_month(JAN)[0]["Precio"].tolist() == [20.0, 21.0, 22.0]


def test_s3_write_is_one_put_to_the_final_key(s3_lake: Lake, monkeypatch: pytest.MonkeyPatch):
    """The S3 write is atomic because it is a single PutObject: no temp key, copy or delete."""
    s3_lake.write_month(JAN, small_frame(JAN, (20.0, 21.0, 22.0)))
    calls: list[tuple[str, str | None]] = []
    real_call = s3_lake.fs._call_s3

    async def recording_call(method: str, *args: object, **kwargs: object) -> object:
        calls.append((method, kwargs.get("Key")))  # type: ignore[arg-type]
        return await real_call(method, *args, **kwargs)

    monkeypatch.setattr(s3_lake.fs, "_call_s3", recording_call)
    s3_lake.write_month(JAN, small_frame(JAN, (30.0, 31.0, 32.0)))

    read_only = {"head_bucket", "head_object", "get_object", "list_objects_v2"}
    writes = [call for call in calls if call[0] not in read_only]
    assert writes == [("put_object", "monthly/2025/01/2025-01-data.parquet")]


def test_s3_put_failing_keeps_previous_object(s3_lake: Lake, monkeypatch: pytest.MonkeyPatch):
    s3_lake.write_month(JAN, small_frame(JAN, (20.0, 21.0, 22.0)))
    before = snapshot(s3_lake)
    real_call = s3_lake.fs._call_s3

    async def failing_put(method: str, *args: object, **kwargs: object) -> object:
        if method == "put_object":
            raise ConnectionResetError(104, "Connection reset by peer")
        return await real_call(method, *args, **kwargs)

    monkeypatch.setattr(s3_lake.fs, "_call_s3", failing_put)
    with pytest.raises(LakeError, match="Connection reset by peer"):
        s3_lake.write_month(JAN, small_frame(JAN, (30.0, 31.0, 32.0)))
    monkeypatch.undo()
    assert snapshot(s3_lake) == before


# --------------------------------------------------------------------------- S3 reachability


def test_missing_bucket_is_named_by_every_operation(s3_endpoint: str, s3_env):
    lake = Lake("s3://no-such-milk-bucket", {"endpoint_url": s3_endpoint})
    operations: dict[str, Callable[[], object]] = {
        "check_reachable": lake.check_reachable,
        "list_months": lake.list_months,
        "read_month": lambda: lake.read_month(JAN),
        "read_window": lambda: lake.read_window([JAN]),
        "write_month": lambda: lake.write_month(JAN, small_frame(JAN)),
    }
    for name, operation in operations.items():
        with pytest.raises(LakeError) as raised:
            operation()
        message = str(raised.value)
        assert "bucket 'no-such-milk-bucket' does not exist" in message, name
        assert s3_endpoint in message, name
        assert "S3_BUCKET" in message, name


def test_unreachable_endpoint_fails_fast_naming_the_endpoint(
    s3_env, monkeypatch: pytest.MonkeyPatch
):
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("AWS_ENDPOINT_URL", dead)
    lake = Lake.from_settings(get_settings(), "s3")

    operations: dict[str, Callable[[], object]] = {
        "list_months": lake.list_months,  # goes through check_reachable
        "read_month": lambda: lake.read_month(JAN),
    }
    for name, operation in operations.items():
        started = time.monotonic()
        with pytest.raises(LakeError) as raised:
            operation()
        elapsed = time.monotonic() - started
        message = str(raised.value)
        assert dead in message, name
        assert "does not exist" not in message, name  # down is not the same as missing
        assert elapsed < 8, f"{name} took {elapsed:.1f}s to report an endpoint that is down"
        if name == "list_months":
            assert "check AWS_ENDPOINT_URL" in message


def test_storage_options_given_by_the_caller_win_over_lake_defaults(s3_endpoint: str, s3_env):
    lake = Lake(
        f"s3://{s3_env['S3_BUCKET']}",
        {"endpoint_url": s3_endpoint, "config_kwargs": {"retries": {"total_max_attempts": 7}}},
    )
    lake.write_month(JAN, small_frame(JAN))
    assert lake.list_months() == [JAN]
    config = lake.fs.config_kwargs
    assert config["retries"]["total_max_attempts"] == 7
    assert config["connect_timeout"] == 5
    assert lake.storage_options["config_kwargs"] == {"retries": {"total_max_attempts": 7}}
