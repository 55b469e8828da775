"""Debian's chromium driven by Playwright."""

from __future__ import annotations
