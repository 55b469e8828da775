"""A private PostgreSQL cluster on loopback (initdb in a temporary folder)."""

from __future__ import annotations
