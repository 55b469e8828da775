"""Settings: the documented variables, read when asked for (never at import), and lake URIs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from milkprice.data.lake import Lake
from milkprice.settings import Settings, get_settings

VARIABLES = {
    "MILKPRICE_DATA_ROOT": "data_root",
    "S3_BUCKET": "s3_bucket",
    "MILKPRICE_S3_PREFIX": "s3_prefix",
    "AWS_ENDPOINT_URL": "aws_endpoint_url",
    "MILKPRICE_SOURCE": "source",
    "MLFLOW_TRACKING_URI": "mlflow_tracking_uri",
    "MILKPRICE_SEED": "seed",
    "MILKPRICE_N_TRIALS": "n_trials",
}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No milkprice variable from the outer shell, and a scratch working directory."""
    for name in [*VARIABLES, *(v.upper() for v in VARIABLES.values())]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def test_defaults_without_any_variable(tmp_path: Path):
    settings = get_settings()
    assert settings.data_root == Path("data/datalake")
    assert settings.s3_bucket == "mlops-milk-datalake"
    assert settings.s3_prefix == ""
    assert settings.aws_endpoint_url is None
    assert settings.source == "local"
    assert settings.lake_uri() == str(tmp_path / "data" / "datalake")


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("MILKPRICE_DATA_ROOT", "/srv/lake", Path("/srv/lake")),
        ("S3_BUCKET", "prices", "prices"),
        ("MILKPRICE_S3_PREFIX", "team/a", "team/a"),
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:9000", "http://127.0.0.1:9000"),
        ("MILKPRICE_SOURCE", "s3", "s3"),
        ("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("MILKPRICE_SEED", "42", 42),
        ("MILKPRICE_N_TRIALS", "3", 3),
    ],
)
def test_each_documented_variable_sets_its_field(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: object
):
    monkeypatch.setenv(variable, value)
    assert getattr(get_settings(), VARIABLES[variable]) == expected


@pytest.mark.parametrize(
    ("variable", "field"),
    [
        ("DATA_ROOT", "data_root"),
        ("SOURCE", "source"),
        ("SEED", "seed"),
        ("S3_PREFIX", "s3_prefix"),
    ],
)
def test_bare_field_names_in_the_environment_are_ignored(
    monkeypatch: pytest.MonkeyPatch, variable: str, field: str
):
    """A stray SEED or SOURCE in a shell must not change milkprice (only MILKPRICE_* does)."""
    default = getattr(get_settings(), field)
    monkeypatch.setenv(variable, {"source": "s3", "seed": "7"}.get(field, "/elsewhere"))
    assert getattr(get_settings(), field) == default


def test_settings_are_read_when_asked_not_at_import(monkeypatch: pytest.MonkeyPatch):
    # a fresh interpreter, so that the import really happens under the first value
    script = (
        "import os\n"
        "import milkprice.settings as module\n"
        "os.environ['S3_BUCKET'] = 'second'\n"
        "print(module.get_settings().s3_bucket)\n"
        "print(any(isinstance(v, module.Settings) for v in vars(module).values()))\n"
    )
    monkeypatch.setenv("S3_BUCKET", "first")
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.split() == ["second", "False"]
    monkeypatch.setenv("S3_BUCKET", "third")
    assert get_settings().s3_bucket == "third"


def test_keyword_overrides_win_over_the_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("S3_BUCKET", "from-env")
    monkeypatch.setenv("MILKPRICE_SEED", "5")
    settings = get_settings(s3_bucket="from-code", seed=9)
    assert (settings.s3_bucket, settings.seed) == ("from-code", 9)
    assert Settings(data_root="/x").data_root == Path("/x")


def test_a_bad_value_names_the_variable_to_fix(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MILKPRICE_N_TRIALS", "-1")
    with pytest.raises(ValueError, match="MILKPRICE_N_TRIALS"):
        get_settings()
    monkeypatch.setenv("MILKPRICE_N_TRIALS", "5")
    monkeypatch.setenv("MILKPRICE_SOURCE", "ftp")
    with pytest.raises(ValueError, match="MILKPRICE_SOURCE"):
        get_settings()


def test_local_lake_uri_is_absolute(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("MILKPRICE_DATA_ROOT", "lakes/../lake")
    assert get_settings().lake_uri("local") == str(tmp_path / "lake")
    monkeypatch.setenv("MILKPRICE_DATA_ROOT", "~/milk")
    assert get_settings().lake_uri("local") == str(Path("~/milk").expanduser())


@pytest.mark.parametrize(
    ("prefix", "uri"),
    [
        ("", "s3://prices"),
        ("/", "s3://prices"),
        ("lake", "s3://prices/lake"),
        ("/team/lake/", "s3://prices/team/lake"),
    ],
)
def test_s3_lake_uri_with_and_without_prefix(
    monkeypatch: pytest.MonkeyPatch, prefix: str, uri: str
):
    monkeypatch.setenv("S3_BUCKET", "prices")
    monkeypatch.setenv("MILKPRICE_S3_PREFIX", prefix)
    assert get_settings().lake_uri("s3") == uri


def test_source_chooses_the_default_lake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("S3_BUCKET", "prices")
    assert get_settings().lake_uri() == str(tmp_path / "data" / "datalake")
    monkeypatch.setenv("MILKPRICE_SOURCE", "s3")
    settings = get_settings()
    assert settings.lake_uri() == "s3://prices"
    assert settings.lake_uri("local") == str(tmp_path / "data" / "datalake")


def test_storage_options_carry_the_endpoint_for_s3_only(monkeypatch: pytest.MonkeyPatch):
    assert get_settings().storage_options("s3") == {}  # AWS itself
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    settings = get_settings()
    assert settings.storage_options("s3") == {"endpoint_url": "http://127.0.0.1:9000"}
    assert settings.storage_options("local") == {}


def test_lake_from_settings_uses_uri_and_options(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("S3_BUCKET", "prices")
    monkeypatch.setenv("MILKPRICE_S3_PREFIX", "v1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    remote = Lake.from_settings(get_settings(), "s3")
    assert remote.base_uri == "s3://prices/v1"
    assert remote.storage_options == {"endpoint_url": "http://127.0.0.1:9000"}
    local = Lake.from_settings(get_settings(), "local")
    assert local.base_uri == str(tmp_path / "data" / "datalake")
    assert local.storage_options == {}
