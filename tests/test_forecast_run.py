"""The batch forecast without Prefect: files on a local and an S3 lake, refusals, pure tables."""

from __future__ import annotations

import io
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from milkprice.data.demo import write_demo_lake
from milkprice.data.lake import Lake
from milkprice.data.sync import push_lake
from milkprice.model.aggregate import dependence_of
from milkprice.months import Month
from milkprice.pipeline.forecast_run import (
    FORECAST_TABLE_COLUMNS,
    forecast_keys,
    forecast_summary_markdown,
    forecast_table_rows,
    parse_series,
    run_forecast,
    series_slug,
)
from milkprice.pipeline.training_run import run_training
from milkprice.serving.loader import NoChampionError, load_predictor, read_history
from milkprice.serving.predictor import forecast_dates
from milkprice.settings import Settings, get_settings

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SERIES = "Aguascalientes/Aguascalientes/Pasteurizada/Tiendas"
CUTOFF = pd.Timestamp("2025-03-31")  # the newest publication date of the demo lake


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, mlflow_db_template: Path) -> Settings:
    """A seeded demo lake 2024-01..2025-03 and a champion trained on 2025-02 (once)."""
    import shutil

    root = tmp_path_factory.mktemp("forecast-run")
    write_demo_lake(Lake(str(root / "lake")), Month(2024, 1), Month(2025, 3), seed=0)
    shutil.copyfile(mlflow_db_template, root / "mlflow.db")
    settings = get_settings(
        data_root=root / "lake", mlflow_tracking_uri=f"sqlite:///{root / 'mlflow.db'}", n_trials=0
    )
    assert run_training(settings, "local", 2025, 2).promoted
    return settings


def _nested(frame: pd.DataFrame) -> bool:
    order = ["lower_95", "lower_80", "price", "upper_80", "upper_95"]
    values = frame[order].to_numpy()
    return bool((values[:, :-1] <= values[:, 1:] + 1e-9).all())


def _check_outputs(lake: Lake, result, settings: Settings, source: str) -> None:
    keys = forecast_keys(CUTOFF)
    frame = pd.read_parquet(io.BytesIO(lake.get_object(keys.parquet)))
    predictor = load_predictor(settings, source)  # type: ignore[arg-type]
    dates = forecast_dates(CUTOFF)
    assert list(frame.columns) == FORECAST_TABLE_COLUMNS
    assert len(frame) == result.rows == len(predictor.series) * len(dates)
    assert frame["Fecha"].min() == dates[0] and frame["Fecha"].max() == dates[-1]
    assert (frame["cutoff"] == CUTOFF).all() and (frame["model_version"] == "1").all()
    assert frame[["price", "lower_80", "upper_80", "lower_95", "upper_95"]].notna().all().all()
    assert _nested(frame)
    # every series of the history is either forecast or listed as skipped, with its reason
    seen = read_history(lake, CUTOFF)[["Estado", "Ciudad", "Tipo", "Canal"]].drop_duplicates()
    assert result.series_forecast + result.series_skipped == len(seen)
    assert result.series_skipped == len(predictor.skipped) > 0
    assert predictor.skipped["reason"].str.len().gt(0).all()
    csv = pd.read_csv(io.BytesIO(lake.get_object(keys.csv)))
    assert len(csv) == len(frame) and list(csv.columns) == FORECAST_TABLE_COLUMNS
    for key in keys.plots:
        assert lake.get_object(key).startswith(PNG_MAGIC)
    assert result.parquet_uri == lake.object_uri(keys.parquet)


def test_local_forecast_writes_parquet_csv_and_plots(trained):
    result = run_forecast(trained, "local", series=[SERIES])

    lake = Lake.from_settings(trained, "local")
    _check_outputs(lake, result, trained, "local")
    slug = series_slug(tuple(SERIES.split("/")))  # type: ignore[arg-type]
    assert slug == "series-aguascalientes-aguascalientes-pasteurizada-tiendas"
    own = lake.get_object(f"reports/cutoff=2025-03-31/{slug}.png")
    assert own is not None and own.startswith(PNG_MAGIC)
    assert len(result.plot_uris) == 2
    assert result.validation_month == "2025-02" and result.cutoff == "2025-03-31"


def test_s3_forecast_writes_through_the_same_code_path(trained, s3_env):
    # settings read again: s3_env has just pointed S3_BUCKET and AWS_ENDPOINT_URL at moto
    settings = trained.model_copy(
        update={"s3_bucket": s3_env["S3_BUCKET"], "aws_endpoint_url": s3_env["AWS_ENDPOINT_URL"]}
    )
    pushed = push_lake(Lake.from_settings(settings, "local"), Lake.from_settings(settings, "s3"))
    assert pushed

    result = run_forecast(settings, "s3")

    assert result.parquet_uri.startswith(f"s3://{s3_env['S3_BUCKET']}/forecasts/cutoff=")
    _check_outputs(Lake.from_settings(settings, "s3"), result, settings, "s3")


def test_explicit_cutoff_forecasts_from_that_day(trained):
    result = run_forecast(trained, "local", cutoff=date(2025, 3, 1))
    frame = pd.read_parquet(result.parquet_uri)
    assert result.cutoff == "2025-03-01"
    assert frame["Fecha"].min() == pd.Timestamp("2025-03-03")  # the first Monday after
    assert frame["Fecha"].max() == pd.Timestamp("2025-04-30")
    assert _nested(frame)


def test_unknown_series_are_refused_by_name_and_nothing_is_written(trained):
    lake = Lake.from_settings(trained, "local")
    cutoff = date(2025, 3, 14)
    with pytest.raises(ValueError, match=r"'Nowhere/Atlantis/Pasteurizada/Tiendas'.*not a series"):
        run_forecast(
            trained,
            "local",
            cutoff=cutoff,
            series=[SERIES, "Nowhere/Atlantis/Pasteurizada/Tiendas", "just-a-city"],
        )
    for key in [*forecast_keys(pd.Timestamp(cutoff)).model_dump().values()]:
        for one in key if isinstance(key, list) else [key]:
            assert lake.get_object(one) is None


def test_parse_series_names_malformed_and_skipped_series(trained):
    predictor = load_predictor(trained, "local")
    skipped = "/".join(predictor.skipped.iloc[0, :4])
    assert parse_series(None, predictor) == []
    assert parse_series([SERIES, SERIES], predictor) == [tuple(SERIES.split("/"))]
    with pytest.raises(ValueError, match=r"'a/b' is not Estado/Ciudad/Tipo/Canal"):
        parse_series(["a/b"], predictor)
    with pytest.raises(ValueError, match="not forecast at this cut-off: no price"):
        parse_series([skipped], predictor)


def test_artifact_table_and_markdown(trained):
    predictor = load_predictor(trained, "local")
    frame = predictor.forecast(forecast_dates(predictor.cutoff))

    rows = forecast_table_rows(predictor, frame)

    pairs = predictor.series[["Estado", "Tipo"]].drop_duplicates()
    assert len(rows) == len(pairs)
    assert {"Estado", "Tipo", "last_price", "forecast", "lower_80", "upper_80"} <= set(rows[0])
    assert all(r["lower_80"] <= r["forecast"] <= r["upper_80"] for r in rows)
    first = rows[0]
    at_end = frame.loc[
        (frame["Fecha"] == frame["Fecha"].max())
        & (frame["Estado"] == first["Estado"])
        & (frame["Tipo"] == first["Tipo"])
    ]
    # The state average's own band: inside the mean of the series' bounds (a typical series'
    # band), around a median between the series' own.
    assert at_end["price"].min() - 0.006 <= first["forecast"] <= at_end["price"].max() + 0.006
    assert first["lower_80"] >= at_end["lower_80"].mean() - 0.006
    assert first["upper_80"] <= at_end["upper_80"].mean() + 0.006
    old = frame.loc[frame["Fecha"] == frame["Fecha"].max()]
    old_width = (
        old.groupby(["Estado", "Tipo"])["upper_80"].mean()
        - old.groupby(["Estado", "Tipo"])["lower_80"].mean()
    ).sum()
    new_width = sum(r["upper_80"] - r["lower_80"] for r in rows)
    assert new_width <= old_width + 0.006 * len(rows)
    if dependence_of(predictor.forecaster) < 0.9:
        assert new_width < old_width

    text = forecast_summary_markdown(predictor, frame)
    assert "version **1**" in text and "validation month 2025-02" in text
    assert "cut-off 2025-03-31" in text and f"rows: {len(frame)}" in text
    assert "val_rmse" in text
    for row in predictor.skipped.itertuples(index=False, name=None):
        assert f"| {'/'.join(row[:4])} | {row[4]} |" in text


def test_no_champion_says_to_train_first(tmp_path, mlflow_uri):
    write_demo_lake(Lake(str(tmp_path / "lake")), Month(2025, 3), Month(2025, 3), seed=0)
    settings = get_settings(data_root=tmp_path / "lake", mlflow_tracking_uri=mlflow_uri)
    with pytest.raises(NoChampionError, match="run the training flow first"):
        run_forecast(settings, "local")
    assert not (tmp_path / "lake" / "forecasts").exists()
