"""Programs that write the lake from other processes, for tests/test_lake_concurrency.py.

Kept apart from the test modules so that a spawned process (which gets the parent's
``sys.path``, holding ``tests/``) imports only milkprice's ingest, not pytest and the fixtures.
Run as a script it ingests its workbooks in turn, forever (the crash test kills it):
``python tests/lake_writers.py LAKE_ROOT BOOK.xlsx [BOOK.xlsx ...]``.
"""

from __future__ import annotations

import itertools
import sys
from typing import Any

from milkprice.data.ingest import ingest_publication
from milkprice.data.lake import Lake

__all__ = ["ingest_in_step"]


def ingest_in_step(
    base_uri: str, storage_options: dict[str, object], workbooks: list[str], barrier: Any
) -> list[str]:
    """Ingest each workbook in turn, all writers released together by ``barrier`` each round.

    Returns:
        The months each ingest changed (so the parent sees the worker really wrote).
    """
    lake = Lake(base_uri, storage_options)
    written = []
    for workbook in workbooks:
        barrier.wait()
        report = ingest_publication(workbook, lake)
        written.extend(str(month) for month in report.changed_partitions)
    return written


if __name__ == "__main__":
    lake = Lake(sys.argv[1])
    books = sys.argv[2:]
    print("ready", flush=True)
    for round_number in itertools.count():
        ingest_publication(books[round_number % len(books)], lake)
