import pandas as pd

from milkprice.months import Month


def test_s3_and_local_round_trip_same_bytes(s3_lake, local_lake):
    month = Month(2025, 1)
    frame = pd.DataFrame(
        {
            "Fecha": pd.to_datetime(["2025-01-03", "2025-01-06"]),
            "Estado": ["Jalisco", "Jalisco"],
            "Ciudad": ["Guadalajara", "Guadalajara"],
            "Tipo": ["Pasteurizada", "Pasteurizada"],
            "Canal": ["Tiendas", "Tiendas"],
            "Precio": [25.5, 0.0],
        }
    )
    written = [lake.write_month(month, frame) for lake in (s3_lake, local_lake)]
    assert s3_lake.base_uri.startswith("s3://")
    assert s3_lake.read_bytes(month) == local_lake.read_bytes(month)
    assert [w.fingerprint for w in written][0] == written[1].fingerprint
    back, summary = s3_lake.read_month(month)
    assert summary.non_positive_prices == 0
    assert back["Precio"].isna().sum() == 1
    assert s3_lake.list_months() == [month]
