"""What the bad-input table runs against, how its bad inputs are made, and the snapshots.

A :class:`World` is built for each case from module-wide parts (a trained champion in an MLflow
SQLite store, a demo lake template, a moto bucket holding the same lake, the API in process and
on a real uvicorn). :func:`snapshot` hashes every byte a case could change: every file under the
case's lake and the registry (database and artifacts), and every object and bucket of the S3
endpoint.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import httpx
import openpyxl
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from fastapi.testclient import TestClient
from sniim_workbook import small_frame, write_leche_workbook, write_rows
from typer.testing import CliRunner

from milkprice.data.lake import Lake
from milkprice.data.lake_guard import LOCK_FOLDER
from milkprice.months import Month

__all__ = [
    "Case",
    "Outcome",
    "World",
    "both",
    "cli",
    "env",
    "html_xlsx",
    "many_rows",
    "other_xlsx",
    "parquet_bytes",
    "post",
    "put_partition",
    "refused",
    "rows",
    "run_python_cli",
    "snapshot",
    "with_price",
    "with_time_of_day",
    "workbook",
]

_RUNNER = CliRunner()


@dataclass(frozen=True)
class Outcome:
    """What a user sees: an exit code (or HTTP status) and the text printed (or answered)."""

    code: int
    text: str


@dataclass
class World:
    """One case's surroundings; ``names`` fill the ``{placeholders}`` of expected messages."""

    root: Path
    lake_root: Path
    registry: Path
    tracking_uri: str
    s3_endpoint: str
    bucket: str
    api: TestClient
    api_url: str
    api_catalog: dict
    setenv: Callable[[str, str], None]
    names: dict[str, str] = field(default_factory=dict)

    @property
    def lake(self) -> Lake:
        """The case's local lake."""
        return Lake(str(self.lake_root))

    def partition(self, month: str) -> Path:
        """Local path of a month's partition file."""
        parsed = Month.parse(month)
        return (
            self.lake_root
            / "monthly"
            / f"{parsed.year}"
            / f"{parsed.month:02d}"
            / (f"{parsed}-data.parquet")
        )

    def s3(self):
        """A boto3 client of the moto endpoint."""
        return boto3.client("s3", endpoint_url=self.s3_endpoint, region_name="us-east-1")

    def post(self, body: object | None = None, content: bytes | None = None) -> Outcome:
        """POST /predict in process (TestClient); status and body."""
        if content is not None:
            answer = self.api.post(
                "/predict", content=content, headers={"Content-Type": "application/json"}
            )
        else:
            answer = self.api.post("/predict", json=body)
        return Outcome(answer.status_code, answer.text)

    def post_real(self, content: bytes) -> Outcome:
        """POST /predict to the real uvicorn server over loopback."""
        answer = httpx.post(
            f"{self.api_url}/predict",
            content=content,
            headers={"Content-Type": "application/json"},
            timeout=60,
        )
        return Outcome(answer.status_code, answer.text)

    def row(self, **change: object) -> dict:
        """A valid /predict row (first forecastable series, day after the cut-off), changed."""
        series = self.api_catalog["series"][0]
        first = self.api_catalog["first_date"]
        base = {k: series[k] for k in ("estado", "ciudad", "tipo", "canal")}
        return {**base, "fecha": str(first), **change}


@dataclass(frozen=True)
class Case:
    """One bad input: how to make it, how to feed it, and what the user must be told.

    Attributes:
        id: Test id.
        act: Feeds the input; returns what the user sees.
        code: Expected exit code (CLI, 0 = accepted), 1 for a refused call, or HTTP status.
        says: Fragments the message must hold; ``{name}`` placeholders come from World.names.
        arrange: Makes the bad input (files) before the snapshot is taken.
        changes: Files (relative to the lake) the case is expected to write; default none.
        then: Further checks on the world after the case.
    """

    id: str
    act: Callable[[World], Outcome]
    code: int
    says: tuple[str, ...]
    arrange: Callable[[World], None] | None = None
    changes: Callable[[World], set[str]] | None = None
    then: Callable[[World, Outcome], None] | None = None


def cli(app: object, *args: str) -> Callable[[World], Outcome]:
    """Run a typer app with ``args`` (``{placeholders}`` from World.names) through CliRunner."""

    def act(world: World) -> Outcome:
        result = _RUNNER.invoke(app, [arg.format(**world.names) for arg in args])  # type: ignore[arg-type]
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return Outcome(result.exit_code, result.output)

    return act


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    """Parquet bytes of any frame, written as another tool would (no milkprice validation)."""
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buffer)
    return buffer.getvalue()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def snapshot(world: World) -> dict[str, str]:
    """Hash of every file of the lake and the registry, and of every S3 bucket and object."""
    state: dict[str, str] = {}
    for name, folder in (("lake", world.lake_root), ("registry", world.registry)):
        for path in sorted(folder.rglob("*")):
            # the lake's month locks (kept on purpose, see milkprice.data.lake_guard) are no data
            if path.is_file() and path.relative_to(folder).parts[0] != LOCK_FOLDER:
                state[f"{name}:{path.relative_to(folder)}"] = _sha(path.read_bytes())
    client = world.s3()
    for bucket in client.list_buckets()["Buckets"]:
        state[f"s3:{bucket['Name']}"] = "bucket"
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket["Name"]):
            for item in page.get("Contents", []):
                body = client.get_object(Bucket=bucket["Name"], Key=item["Key"])["Body"].read()
                state[f"s3:{bucket['Name']}/{item['Key']}"] = _sha(body)
    return state


def run_python_cli(run: Callable[[list[str]], int], argv: list[str]) -> Outcome:
    """Call an argparse entry point in process; capture what it prints and its exit status."""
    import contextlib

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = run(argv)
        except SystemExit as exc:
            code = int(exc.code or 0)
    return Outcome(code, out.getvalue() + err.getvalue())


def refused(call: Callable[[World], object]) -> Callable[[World], Outcome]:
    """Outcome of a plain call: 0 when it returns, 1 with the message when it raises."""

    def act(world: World) -> Outcome:
        try:
            call(world)
        except Exception as exc:
            return Outcome(1, f"{type(exc).__name__}: {exc}")
        return Outcome(0, "")

    return act


# --- making bad inputs ----------------------------------------------------------------------


def put_partition(month: str, change: object) -> object:
    """Replace a partition of the case's lake by ``change(frame)`` (bytes or a frame)."""

    def arrange(world: World) -> None:
        frame, _ = world.lake.read_month(Month.parse(month))
        made = change(frame)  # type: ignore[operator]
        data = made if isinstance(made, bytes) else parquet_bytes(made)
        world.partition(month).write_bytes(data)

    return arrange


def with_price(value: float) -> object:
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.copy()
        frame.loc[5, "Precio"] = value
        return frame

    return change


def with_time_of_day(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame.loc[7, "Fecha"] = frame.loc[7, "Fecha"] + pd.Timedelta(hours=10, minutes=30)
    return frame


def workbook(extra: list[list[object]] | None = None, dates: list[str] | None = None) -> object:
    """A SNIIM workbook at {xlsx}; ``extra`` rows appended to the block of its first date."""

    def arrange(world: World) -> None:
        frame = small_frame(dates or ["2025-02-03", "2025-02-05"])
        first = pd.Timestamp(sorted(frame["Fecha"].unique())[0])
        path = Path(world.names["xlsx"])
        write_leche_workbook(frame, path, extra_rows={first: extra or []})
        world.names["row"] = str(_row_of(path, "Hermosillo"))

    return arrange


def _row_of(path: Path, text: str) -> int:
    sheet = openpyxl.load_workbook(path).active
    for number, row in enumerate(sheet.iter_rows(values_only=True), start=1):
        if text in row:
            return number
    return 0


def other_xlsx(world: World) -> None:
    write_rows(Path(world.names["xlsx"]), [["name", "value"], ["milk", 26.5]])


def html_xlsx(world: World) -> None:
    Path(world.names["xlsx"]).write_text("<!DOCTYPE html><html><body>Not found</body></html>")


def env(**values: str) -> object:
    def arrange(world: World) -> None:
        for key, value in values.items():
            world.setenv(key, value.format(**world.names))  # monkeypatch restores them

    return arrange


def both(*steps: object) -> object:
    def arrange(world: World) -> None:
        for step in steps:
            step(world)  # type: ignore[operator]

    return arrange


def post(body: object) -> object:
    return lambda world: world.post(body(world) if callable(body) else body)


def rows(**change: object) -> object:
    return lambda world: {"rows": [world.row(**change)]}


def many_rows(count: int) -> object:
    return lambda world: {"rows": [world.row()] * count}
