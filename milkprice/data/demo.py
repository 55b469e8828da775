"""Seeded synthetic SNIIM-like prices: the quickstart's lake and the unit tests' data.

The generator imitates the structure of the real publication (``../shared/data/sniim``), not
its values: the real 54 cities in 32 states, 2 ``Tipo`` x 2 ``Canal``, publications on Monday,
Wednesday and Friday except public holidays, sticky prices (about four in five series keep
their price from one publication to the next), levels of 22-32 MXN per litre that differ by
city, tipo and canal, a slow upward drift, about 12% missing prices (mostly series a city never
reports) and zero prices in one Sonora city, as published. Everything comes from one
``numpy.random.Generator`` seeded by the caller, so a seed always gives the same frame.

For scale tests, ``cities`` asks for more (or fewer) cities than the real 54: the extra ones
are synthetic cities spread over the same states, each with the 4 series of a real one.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta

import numpy as np
import pandas as pd

from milkprice.data.lake import Lake, PartitionWrite
from milkprice.data.schema import CANALES, COLUMNS, KEY_COLUMNS, TIPOS
from milkprice.months import Month, month_range, previous_month

__all__ = [
    "CITIES",
    "DEMO_MONTHS",
    "default_demo_range",
    "demo_cities",
    "generate_demo_frame",
    "publication_dates",
    "write_demo_lake",
]

# (Estado, Ciudad) of the 54 cities of the real publication, as SNIIM spells them (trailing
# spaces of two names stripped; the two national-average rows under Zacatecas left out).
CITIES: tuple[tuple[str, str], ...] = (
    ("Aguascalientes", "Aguascalientes"),
    ("Baja California", "Mexicali"),
    ("Baja California", "Tijuana"),
    ("Baja California Sur", "La Paz"),
    ("CDMX", "Ciudad de México"),
    ("CDMX", "ZM Ciudad de México"),
    ("Campeche", "Campeche"),
    ("Chiapas", "Tapachula"),
    ("Chiapas", "Tuxtla Gutiérrez"),
    ("Chihuahua", "Cd.Juárez"),
    ("Chihuahua", "Chihuahua"),
    ("Coahuila", "Piedras Negras"),
    ("Coahuila", "Saltillo"),
    ("Coahuila", "Torreón"),
    ("Colima", "Colima"),
    ("Durango", "Durango"),
    ("Durango", "Gómez Palacio"),
    ("Edo. México", "Toluca"),
    ("Guanajuato", "Celaya"),
    ("Guanajuato", "León"),
    ("Guerrero", "Acapulco"),
    ("Guerrero", "Chilpancingo"),
    ("Hidalgo", "Pachuca"),
    ("Jalisco", "Guadalajara"),
    ("Jalisco", "ZM Guadalajara"),
    ("Michoacán", "Morelia"),
    ("Morelos", "Cuernavaca"),
    ("Nayarit", "Tepic"),
    ("Nuevo León", "Monterrey"),
    ("Nuevo León", "ZM Monterrey"),
    ("Oaxaca", "Oaxaca"),
    ("Puebla", "Puebla"),
    ("Puebla", "ZM Puebla"),
    ("Querétaro", "Querétaro"),
    ("Quintana Roo", "Cancún"),
    ("Quintana Roo", "Chetumal"),
    ("San Luis Potosí", "San Luis Potosí"),
    ("Sinaloa", "Culiacán"),
    ("Sonora", "Cd. Obregón"),
    ("Sonora", "Hermosillo"),
    ("Sonora", "Nogales"),
    ("Sonora", "San Luis Río Colorado"),
    ("Tabasco", "Villahermosa"),
    ("Tamaulipas", "Cd. Victoria"),
    ("Tamaulipas", "Matamoros"),
    ("Tamaulipas", "Nuevo Laredo"),
    ("Tamaulipas", "Reynosa"),
    ("Tamaulipas", "Tampico"),
    ("Tlaxcala", "Tlaxcala"),
    ("Veracruz", "Coatzacoalcos"),
    ("Veracruz", "Veracruz"),
    ("Veracruz", "Xalapa"),
    ("Yucatán", "Mérida"),
    ("Zacatecas", "Zacatecas"),
)
DEMO_MONTHS = 18
_ZERO_CITY = ("Sonora", "San Luis Río Colorado")  # publishes 0.0 on many dates, like the real one
_PUBLICATION_WEEKDAYS = (0, 2, 4)  # Monday, Wednesday, Friday
_DRIFT_ORIGIN = pd.Timestamp("2024-01-01")  # the drift is anchored in time, not in the range
_BASE_PRICE = 25.5
_ANNUAL_DRIFT = 0.045
_TIPO_PREMIUM = {"Pasteurizada": 0.0, "Ultrapasteurizada": 2.0}
_CANAL_PREMIUM = {"Tiendas": 0.0, "Autoservicios": 0.4}
_LEVEL_BOUNDS = (22.0, 32.0)
_CHANGE_PROBABILITY = 0.19  # real data: ~18% of consecutive prices of a series differ
_TICK = 0.05  # prices are posted in 5-centavo steps
_SILENT_SERIES = 20  # series a city never reports (real data: 27, mostly Pasteurizada)
_CITY_GAP_SHARE = 0.015  # a city sends nothing on a date
_CELL_GAP_SHARE = 0.008  # one price left blank
_ZERO_DATE_SHARE = 0.35


def _easter(year: int) -> date:
    """Easter Sunday (anonymous Gregorian algorithm)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = b // 4, b % 4
    g = (8 * b + 13) // 25
    h = (19 * a + b - d - g + 15) % 30
    i, k = c // 4, c % 4
    l_ = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * l_) // 451
    month, day = divmod(h + l_ - 7 * m + 114, 31)
    return date(year, month, day + 1)


def _nth_monday(year: int, month: int, n: int) -> date:
    first = date(year, month, 1)
    return date(year, month, 1 + (-first.weekday()) % 7 + 7 * (n - 1))


def _holidays(year: int) -> set[date]:
    """Days SNIIM did not publish in the real data: Mexican public holidays and Good Friday."""
    return {
        date(year, 1, 1),
        _nth_monday(year, 2, 1),  # Constitution day
        _nth_monday(year, 3, 3),  # Benito Juárez
        _easter(year) - timedelta(days=2),  # Good Friday
        date(year, 5, 1),
        date(year, 9, 16),
        _nth_monday(year, 11, 3),  # Revolution day
        date(year, 12, 25),
    }


def publication_dates(start: Month, end: Month) -> pd.DatetimeIndex:
    """Monday, Wednesday and Friday publication dates from ``start`` to ``end``, holidays out."""
    days = pd.date_range(start.start, end.end, freq="D")
    days = days[days.day_of_week.isin(_PUBLICATION_WEEKDAYS)]
    closed = set().union(*(_holidays(year) for year in range(start.year, end.year + 1)))
    return days[~days.isin(pd.DatetimeIndex(sorted(closed)))]


def demo_cities(count: int = len(CITIES)) -> tuple[tuple[str, str], ...]:
    """``count`` (Estado, Ciudad) pairs: the real cities first, then synthetic ones.

    Synthetic city ``i`` (from 55 on) is ``Sintética NNNNN`` in the state of real city
    ``i mod 54``, so the states keep their share of cities as the count grows.

    Raises:
        ValueError: ``count`` is not positive.
    """
    if count < 1:
        raise ValueError(f"cities must be at least 1, got {count}")
    extra = tuple(
        (CITIES[i % len(CITIES)][0], f"Sintética {i + 1:05d}") for i in range(len(CITIES), count)
    )
    return (CITIES + extra)[:count]


def default_demo_range(today: date | None = None) -> tuple[Month, Month]:
    """Return the 18 months up to the previous calendar month (the quickstart's demo lake)."""
    end = previous_month(today)
    return end.shift(-(DEMO_MONTHS - 1)), end


def generate_demo_frame(
    start: Month, end: Month, seed: int = 0, *, cities: int = len(CITIES)
) -> pd.DataFrame:
    """Synthetic rows with the lake's columns for every publication date of ``start..end``.

    One row per series (216 with the real 54 cities) per publication date, ``Precio`` missing
    where the synthetic city did not report and ``0.0`` on some dates of one Sonora city, as in
    the real publication (:func:`milkprice.data.schema.validate_frame` turns those zeros into
    missing prices).

    Args:
        start: first month (included).
        end: last month (included).
        seed: seed of ``numpy.random.default_rng``; a seed always gives the same frame.
        cities: how many cities (see :func:`demo_cities`); 4 series each. The default, the
            real 54, gives the same frame as before this parameter existed.

    Raises:
        ValueError: ``end`` is before ``start``, or ``cities`` is not positive.

    """
    if end < start:
        raise ValueError(f"demo range is empty: end {end} is before start {start}")
    chosen = demo_cities(cities)
    rng = np.random.default_rng(seed)
    dates = publication_dates(start, end)
    pairs = [(tipo, canal) for tipo in TIPOS for canal in CANALES]
    n_cities, n_pairs, n_dates = len(chosen), len(pairs), len(dates)
    n_series = n_cities * n_pairs
    estados = np.repeat(np.array([e for e, _ in chosen], dtype=object), n_pairs)
    ciudades = np.repeat(np.array([c for _, c in chosen], dtype=object), n_pairs)
    tipos = np.tile(np.array([t for t, _ in pairs], dtype=object), n_cities)
    canales = np.tile(np.array([c for _, c in pairs], dtype=object), n_cities)

    # Level of each series: city effect + tipo and canal premiums + a little idiosyncrasy.
    premium = np.tile([_TIPO_PREMIUM[t] + _CANAL_PREMIUM[c] for t, c in pairs], n_cities)
    city_effect = np.repeat(rng.normal(0.0, 1.6, n_cities), n_pairs)
    level = np.clip(
        _BASE_PRICE + city_effect + premium + rng.normal(0.0, 0.5, n_series), *_LEVEL_BOUNDS
    )
    # The shop's target price: level x yearly drift x a slow random wander of its own.
    years = ((dates - _DRIFT_ORIGIN).days / 365.25).to_numpy()
    trend = np.exp(np.log1p(_ANNUAL_DRIFT) * years)
    wander = np.cumsum(rng.normal(0.0, 0.003, (n_series, n_dates)), axis=1)
    target = level[:, None] * trend[None, :] * np.exp(wander)
    offer = np.round(target * (1 + rng.normal(0.0, 0.012, target.shape)) / _TICK) * _TICK
    # Sticky prices: the posted price only moves on the (rare) dates the shop re-prices.
    reprice = rng.random(target.shape) < _CHANGE_PROBABILITY
    reprice[:, 0] = True
    last_reprice = np.maximum.accumulate(np.where(reprice, np.arange(n_dates), 0), axis=1)
    price = np.take_along_axis(offer, last_reprice, axis=1).round(2)

    # Missing reports: silent series (mostly Pasteurizada), cities absent on a date, blanks.
    is_zero_city = (estados == _ZERO_CITY[0]) & (ciudades == _ZERO_CITY[1])
    weights = np.where(tipos == TIPOS[0], 4.0, 1.0) * ~is_zero_city
    # The real share of never-reported series (20 of 216) at every size.
    n_silent = min(max(1, round(_SILENT_SERIES * n_series / (len(CITIES) * n_pairs))), n_series)
    silent = rng.choice(n_series, size=n_silent, replace=False, p=weights / weights.sum())
    missing = rng.random(target.shape) < _CELL_GAP_SHARE
    missing |= np.repeat(rng.random((n_cities, n_dates)) < _CITY_GAP_SHARE, n_pairs, axis=0)
    missing[silent, :] = True
    price[missing] = np.nan
    zero_dates = rng.random(n_dates) < _ZERO_DATE_SHARE
    zeros = is_zero_city[:, None] & zero_dates[None, :] & ~missing
    price[zeros] = 0.0

    # Date-major rows, like the publication: every series on one date, then the next date.
    frame = pd.DataFrame(
        {
            "Fecha": np.repeat(dates.to_numpy(), n_series),
            "Estado": np.tile(estados, n_dates),
            "Ciudad": np.tile(ciudades, n_dates),
            "Tipo": np.tile(tipos, n_dates),
            "Canal": np.tile(canales, n_dates),
            "Precio": price.T.ravel(),
        },
        columns=COLUMNS,
    )
    return frame.sort_values(KEY_COLUMNS, kind="stable").reset_index(drop=True)


def write_demo_lake(
    lake: Lake,
    start: Month,
    end: Month,
    seed: int = 0,
    *,
    cities: int = len(CITIES),
    on_write: Callable[[PartitionWrite], None] | None = None,
) -> list[PartitionWrite]:
    """Generate ``start..end`` and write one validated partition per month into ``lake``.

    Args:
        lake: where to write (local or S3).
        start: first month (included).
        end: last month (included).
        seed: seed of the generator.
        cities: how many cities (4 series each; default the real 54).
        on_write: called after each partition is written (progress bars).

    Returns:
        One :class:`~milkprice.data.lake.PartitionWrite` per month, oldest first.

    """
    frame = generate_demo_frame(start, end, seed, cities=cities)
    month_index = frame["Fecha"].dt.year * 12 + frame["Fecha"].dt.month - 1
    by_month = dict(iter(frame.groupby(month_index, sort=True)))
    writes = []
    for month in month_range(start, end):
        rows = by_month[month.year * 12 + month.month - 1]
        written = lake.write_month(month, rows)
        writes.append(written)
        if on_write is not None:
            on_write(written)
    return writes
