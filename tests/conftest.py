"""Shared fixtures: a real S3 endpoint on loopback (moto server mode), lakes, real data."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_http(url: str, timeout_s: float = 30.0) -> None:
    """Poll ``url`` until it answers (any HTTP status) or fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)  # noqa: S310 - loopback only
            return
        except urllib.error.HTTPError:
            return
        except OSError as exc:
            last = exc
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout_s}s: {last}")


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server (server mode, a real HTTP endpoint) on a free loopback port."""
    port = free_port()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(url)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment pointing milkprice at the moto endpoint, with a fresh empty bucket."""
    import boto3

    bucket = f"milk-{time.time_ns()}"
    values = {
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "S3_BUCKET": bucket,
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(
        Bucket=bucket
    )
    return values


@pytest.fixture
def s3_lake(s3_env: dict[str, str]):  # noqa: ANN201
    """A lake on the moto S3 endpoint, built from settings exactly as users' code does."""
    from milkprice.lake import Lake
    from milkprice.settings import get_settings

    return Lake.from_settings(get_settings(), "s3")


@pytest.fixture
def local_lake(tmp_path: Path):  # noqa: ANN201
    """An empty local lake in a temporary folder."""
    from milkprice.lake import Lake

    return Lake(str(tmp_path / "datalake"))


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The real SNIIM data beside the checkout; under CI its absence is a failure."""
    path = Path(os.environ.get("MILKPRICE_REAL_DATA", REPO_ROOT.parent / "shared" / "data" / "sniim"))
    if not (path / "monthly").is_dir():
        message = f"real SNIIM data not found at {path} (set MILKPRICE_REAL_DATA)"
        if os.environ.get("MILKPRICE_ALLOW_MISSING_REAL_DATA") == "1":
            pytest.skip(message)
        pytest.fail(message)
    return path
