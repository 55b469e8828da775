"""Debian's chromium driven by Playwright for Python (sync API), for the UI tests.

Playwright never downloads a browser here: the tests drive ``/usr/bin/chromium`` from Debian's
``chromium`` package, which the set-up step (``make system-packages``, run by ``make test``)
installs when it is missing; a test without it fails naming that step. The browser resolves no
host but 127.0.0.1, so a page that tries to reach the internet (a CDN, analytics) fails the way
it would on an offline machine.

Screenshots go to ``test-output/browser/`` in the checkout (gitignored); the terminal summary
lists what was written. A failed test leaves a ``failure`` screenshot of its page there too.

The browser lives for one test module, not the session: while Playwright's sync API runs, the
main thread has a running event loop and ``asyncio.run`` (Prefect's client, flows called in
process) fails with "cannot be called from a running event loop" in any later test.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page

CHROMIUM = Path("/usr/bin/chromium")
OUTPUT_DIR = Path(__file__).resolve().parents[1] / "test-output" / "browser"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Nothing but loopback: every other host name fails to resolve.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]
# Generous: a loaded 2-core machine renders the Prefect and MLflow apps slowly.
DEFAULT_TIMEOUT_MS = 60_000
_INSTALL_HINT = (
    "`make test` installs it (`make system-packages`; as root: `apt-get install -y chromium`); the tests drive "
    f"{CHROMIUM} through Playwright and never download a browser)"
)
_FAILED = pytest.StashKey[bool]()


def ensure_chromium() -> Path:
    """Return Debian's chromium, or fail naming the set-up step that installs it."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: {_INSTALL_HINT}")
    return CHROMIUM


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()


class Browser:
    """One chromium with an empty profile; pages and screenshots for the module's tests."""

    def __init__(self, context: BrowserContext, output_dir: Path) -> None:
        self.context = context
        self.output_dir = output_dir
        self._counts: dict[str, int] = {}

    def new_page(self) -> Page:
        """A new tab with the generous default timeouts."""
        page = self.context.new_page()
        page.set_default_timeout(DEFAULT_TIMEOUT_MS)
        page.set_default_navigation_timeout(2 * DEFAULT_TIMEOUT_MS)
        return page

    def screenshot(self, page: Page, test: str, step: str, *, full_page: bool = True) -> Path:
        """Save a screenshot as ``<test>-<nn>-<step>.png`` (the whole page, or the viewport)."""
        number = self._counts.get(test, 0) + 1
        self._counts[test] = number
        path = self.output_dir / f"{_slug(test)}-{number:02d}-{_slug(step)}.png"
        page.screenshot(path=str(path), full_page=full_page)
        return path


class Screens:
    """A test's tab: ``shot(step)`` saves a numbered screenshot of it."""

    def __init__(self, browser: Browser, test: str) -> None:
        self.browser = browser
        self.test = test
        self.page = browser.new_page()

    def shot(self, step: str, *, full_page: bool = True) -> Path:
        """Screenshot the tab now, named after the test and ``step``."""
        return self.browser.screenshot(self.page, self.test, step, full_page=full_page)


@pytest.fixture(scope="session")
def chromium_executable() -> Path:
    """Debian's chromium, installed once per session when missing (see :func:`ensure_chromium`)."""
    return ensure_chromium()


def pytest_sessionstart(session: pytest.Session) -> None:
    """Empty ``test-output/browser/`` of the last run's screenshots, once per run.

    Under pytest-xdist only the controller does it (a worker has ``workerinput``): a worker
    starting late must not delete the screenshots another worker has just taken.
    """
    if not hasattr(session.config, "workerinput"):
        OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
        for old in OUTPUT_DIR.glob("*.png"):
            old.unlink()


@pytest.fixture(scope="session")
def browser_output_dir() -> Path:
    """``test-output/browser/`` in the checkout (emptied at the start of the run)."""
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    return OUTPUT_DIR


@pytest.fixture(scope="module")
def browser(
    chromium_executable: Path,
    browser_output_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Browser]:
    """Chromium launched by Playwright with a new, empty user-data dir; closed after the module."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright for Python is missing: pip install -e '.[dev]' (or `make .venv`)")
    playwright = sync_playwright().start()
    try:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(chromium_executable),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 900},
        )
        context.set_default_timeout(DEFAULT_TIMEOUT_MS)
        try:
            yield Browser(context, browser_output_dir)
        finally:
            context.close()
    finally:
        playwright.stop()


@pytest.fixture
def screens(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Screens]:
    """A new tab for one test; a ``failure`` screenshot of it is saved when the test fails."""
    screens = Screens(browser, request.node.name)
    try:
        yield screens
    finally:
        if request.node.stash.get(_FAILED, False):
            with contextlib.suppress(Exception):  # a dead page must not hide the real failure
                screens.shot("failure")
        screens.page.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Remember on the item whether its set-up or call failed (for the failure screenshot)."""
    report = yield
    if report.failed and call.when in {"setup", "call"}:
        item.stash[_FAILED] = True
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say where this run's screenshots are (every worker's: the folder was emptied at start)."""
    if hasattr(terminalreporter.config, "workerinput"):
        return
    written = sorted(OUTPUT_DIR.glob("*.png")) if OUTPUT_DIR.is_dir() else []
    if written:
        terminalreporter.write_line(f"browser screenshots ({len(written)}): {OUTPUT_DIR}/")
