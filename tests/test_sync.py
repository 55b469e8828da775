"""Pushing a lake to S3 uploads exactly the partitions that differ; describing a lake."""

from __future__ import annotations

import pytest

from milkprice.data.demo import write_demo_lake
from milkprice.data.lake import Lake, LakeError
from milkprice.data.sync import describe_lake, push_lake
from milkprice.months import Month

MONTHS = [Month(2024, 1), Month(2024, 2), Month(2024, 3)]


@pytest.fixture
def filled_local(local_lake):
    write_demo_lake(local_lake, MONTHS[0], MONTHS[-1], seed=11)
    return local_lake


def test_push_uploads_only_partitions_that_differ(filled_local, s3_lake):
    seen = []
    first = push_lake(filled_local, s3_lake, on_result=seen.append)
    assert [(r.month, r.status) for r in first] == [(m, "pushed") for m in MONTHS]
    assert seen == first
    for month in MONTHS:
        assert s3_lake.read_bytes(month) == filled_local.read_bytes(month)
    assert first[0].target == s3_lake.uri(MONTHS[0]) and first[0].rows > 0

    second = push_lake(filled_local, s3_lake)
    assert [r.status for r in second] == ["skipped"] * 3
    assert [r.md5 for r in second] == [r.md5 for r in first]

    frame, _ = filled_local.read_month(MONTHS[1])
    frame.loc[frame.index[0], "Precio"] = 99.5
    assert filled_local.write_month(MONTHS[1], frame).changed
    third = push_lake(filled_local, s3_lake)
    assert [r.status for r in third] == ["skipped", "pushed", "skipped"]
    back, _ = s3_lake.read_month(MONTHS[1])
    assert back["Precio"].eq(99.5).sum() == 1


def test_push_of_selected_months_and_of_an_absent_month(filled_local, s3_lake):
    results = push_lake(filled_local, s3_lake, [MONTHS[2]])
    assert [r.month for r in results] == [MONTHS[2]]
    assert s3_lake.list_months() == [MONTHS[2]]
    with pytest.raises(FileNotFoundError, match="2023-12"):
        push_lake(filled_local, s3_lake, [Month(2023, 12)])


def test_push_to_a_missing_bucket_names_it(filled_local, s3_env):
    target = Lake("s3://no-such-milk-bucket", {"endpoint_url": s3_env["AWS_ENDPOINT_URL"]})
    with pytest.raises(LakeError, match="no-such-milk-bucket"):
        push_lake(filled_local, target)


def test_describe_lake(filled_local, local_lake):
    infos = describe_lake(filled_local)
    assert [i.month for i in infos] == MONTHS
    for info in infos:
        _, summary = filled_local.read_month(info.month)
        assert (info.rows, info.missing_prices, info.series, info.dates) == (
            summary.rows,
            summary.missing_prices,
            216,
            summary.dates,
        )
        assert info.rows == 216 * info.dates
        assert info.path == filled_local.uri(info.month)
    assert infos[0].to_dict()["month"] == "2024-01"
    assert describe_lake(Lake(local_lake.base_uri + "-empty")) == []
