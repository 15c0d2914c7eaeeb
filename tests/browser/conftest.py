"""Browser tests: a real ``suishen serve`` and the distribution's Chromium driven by
Playwright for Python (its own browser download is never used: ``executable_path``).

Chromium comes from Debian (``apt-get install chromium``; ``.ci/run`` installs it when
missing). Set ``CHROMIUM`` to use another binary. Without one the tests skip on a
developer's machine, and FAIL in CI (``CI=true`` or ``SUISHEN_TEST_REQUIRE_BACKENDS=1``):
a browser test that silently did not run is not a passing one.

Screenshots of every page are saved under ``test-artifacts/screenshots/`` (git-ignored; a
failed test adds ``<tab>-FAILED.png`` of each of its pages;
``SUISHEN_TEST_ARTIFACTS`` moves the ``test-artifacts`` folder).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import ROOT, Server

ARTIFACTS = Path(os.environ.get("SUISHEN_TEST_ARTIFACTS") or ROOT / "test-artifacts")
SCREENSHOTS = ARTIFACTS / "screenshots"
REQUIRED = (os.environ.get("SUISHEN_TEST_REQUIRE_BACKENDS") == "1"
            or os.environ.get("CI", "").lower() == "true")
# A phone: the citizen page must be readable at 360 px.
PHONE = {"width": 360, "height": 780}
DESKTOP = {"width": 1100, "height": 900}
# SUISHEN_CODE_TTL_SECONDS for the server under test: short, so that a refresh (at half
# life) happens within a test.
CODE_TTL = 8

pytestmark = pytest.mark.e2e


def find_chromium() -> str | None:
    """The Chromium binary: ``$CHROMIUM``, else ``chromium`` / ``chromium-browser``."""
    explicit = os.environ.get("CHROMIUM")
    if explicit:
        return explicit
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = find_chromium()
    if path is None:
        message = ("no Chromium: apt-get install chromium (or set CHROMIUM); "
                   ".ci/run installs it")
        if REQUIRED:
            pytest.fail(message + " -- required in CI", pytrace=False)
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def browser(chromium_path: str) -> Iterator[Any]:
    """Chromium under Playwright's sync API, per module: while it runs, its event loop is
    the thread's running loop, so it must be gone before the asyncio tests of the
    modules that follow (pytest-asyncio cannot start theirs inside it)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - a dev dependency (requirements/dev.txt)
        if REQUIRED:
            pytest.fail("playwright is not installed (scripts/install)", pytrace=False)
        pytest.skip("playwright is not installed")
    from playwright.sync_api import expect

    # Generous waits: on a loaded CI machine the page, the server and Chromium share
    # two cores; a slow answer is not a failure of the page (the 5 s default flaked).
    expect.set_options(timeout=20_000)
    with sync_playwright() as pw:
        # --no-sandbox: CI runs as root, where Chromium's sandbox cannot start.
        browser = pw.chromium.launch(executable_path=chromium_path,
                                     args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One embedded-default server for the module, with short-lived codes."""
    # The access log is on so that "no token in the logs" is checked against a log that
    # names every request.
    srv = Server(tmp_path_factory.mktemp("browser"), SUISHEN_CODE_TTL_SECONDS=str(CODE_TTL),
                 SUISHEN_ACCESS_LOG="true").start()
    yield srv
    srv.stop()


_FAILED_LOAD = re.compile(r"status of (\d{3})")


@dataclass
class Tab:
    """One page in its own browser context, with what it logged."""

    page: Any
    name: str
    errors: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    allowed_statuses: set[int] = field(default_factory=set)
    allowed_substrings: set[str] = field(default_factory=set)

    def shot(self, label: str, **kwargs: Any) -> Path:
        """Save a screenshot as a test artefact; returns its path."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{self.name}-{label}.png"
        self.page.screenshot(path=str(path), full_page=True, **kwargs)
        return path

    def unexpected_errors(self) -> list[str]:
        """Console errors and uncaught exceptions, less the failed loads of statuses
        the test expects (Chromium logs every 4xx answer to fetch as a console error) and the
        messages the test names (a fetch that fails while the context is offline)."""
        out = []
        for text in self.errors:
            m = _FAILED_LOAD.search(text)
            if m and "Failed to load resource" in text and int(m[1]) in self.allowed_statuses:
                continue
            if any(allowed in text for allowed in self.allowed_substrings):
                continue
            out.append(text)
        return out


@pytest.fixture
def open_tab(browser: Any, request: pytest.FixtureRequest) -> Iterator[Callable[..., Tab]]:
    """``open_tab(name, viewport=PHONE)``: a fresh context and page that records console
    errors and every request URL. At the end of the test: no unexpected console error,
    and no token in any URL."""
    tabs: list[tuple[Any, Tab]] = []

    def open_(name: str, viewport: dict[str, int] | None = None, **context: Any) -> Tab:
        ctx = browser.new_context(viewport=viewport or PHONE, **context)
        ctx.set_default_timeout(45_000)
        page = ctx.new_page()
        tab = Tab(page=page, name=name)
        page.on("console", lambda msg: msg.type == "error" and tab.errors.append(msg.text))
        page.on("pageerror", lambda exc: tab.errors.append(f"uncaught: {exc}"))
        page.on("request", lambda req: tab.urls.append(req.url))
        tabs.append((ctx, tab))
        return tab

    yield open_
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:  # what each page showed when the test failed
        for _, tab in tabs:
            try:
                tab.shot("FAILED")
            except Exception as exc:  # a closed page: nothing to show
                print(f"no failure screenshot of {tab.name}: {exc}")
    problems = []
    for ctx, tab in tabs:
        problems += [f"{tab.name}: {e}" for e in tab.unexpected_errors()]
        if any("token=" in u.lower() or "bearer" in u.lower() for u in tab.urls):
            problems.append(f"{tab.name}: a token in a URL: {tab.urls}")
        ctx.close()
    assert not problems, "\n".join(problems)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep the call phase's report on the item (``open_tab`` screenshots failures)."""
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report
