"""A real Dask scheduler and workers on loopback."""

from __future__ import annotations
