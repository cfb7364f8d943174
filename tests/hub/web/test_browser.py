"""The coordinators' web console in a real browser: headless Chromium driven by Selenium.

The console runs under uvicorn on a free loopback port (a thread of this process) over an SQLite
hub seeded with a small forum through the hub's services (``tests.support.review_seed``: members'
filters, confirmations and cluster sets), plus a few dozen extra shared indicators confirmed at the
storage layer so that the listings have pages to turn. Each test signs in with the coordinator's
credential and drives one part of the console the way a coordinator would: the overview and
overlap heatmap, the indicator review (filter, sort, paginate, open, triage with a note,
confirm, history), a campaign assignment, the audit search, the three downloads, and signing
out. Every page visited is saved as ``test-output/screenshots/<name>.png``.

Chromium and chromedriver are Debian's (``/usr/bin/chromium``, ``/usr/bin/chromedriver``);
Selenium Manager is never asked to download anything. Without them the tests skip locally and
fail in CI (``$CI`` set), which ``.ci/run`` provides them for.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from selenium import webdriver
from selenium.common.exceptions import (
    StaleElementReferenceException,
    TimeoutException,
    WebDriverException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.wait import WebDriverWait
from sqlalchemy import Engine
from stix2validator import ValidationOptions, validate_string  # type: ignore[import-untyped]

from sigshare.hub.domain import RecordType, ReviewStatus
from sigshare.hub.listing import AuditQuery, RecordQuery
from sigshare.hub.services import reviews
from sigshare.hub.services.audit import search_audit_log
from sigshare.hub.services.exports import CSV_COLUMNS
from sigshare.hub.storage import make_engine, migrate, session_scope
from sigshare.hub.storage.indicators import IndicatorRepository, TokenConfirmation
from sigshare.hub.storage.principals import PrincipalRepository
from sigshare.hub.web import create_app
from tests.support.console import serve_console
from tests.support.hub import ADMIN, COORDINATOR, EMAIL, KEY_ID, MEMBERS, provision
from tests.support.review_seed import SEEDED_AT, SeededForum, seed_forum

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOTS = Path(__file__).resolve().parents[3] / "test-output" / "screenshots"
WINDOW = (1366, 900)
MAX_SCREENSHOT_HEIGHT = 6000
WAIT_SECONDS = 15.0
EXTRA_INDICATORS = 70
"""Shared indicators added at the storage layer: with the seed's three, four pages of 25."""
EXTRA_CATEGORIES = ("account-farm", "card-testing", "proxy-rotation", "scraper")
SETUP_ACTOR = "cli:setup"


def _require_browser() -> None:
    """Skip without Debian's Chromium and chromedriver, except in CI: there it is a failure."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if not missing:
        return
    reason = (
        f"headless Chromium tests need {' and '.join(missing)} "
        "(Debian: apt-get install chromium chromium-driver)"
    )
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the browser tests, but {reason}", pytrace=False)
    pytest.skip(reason)


# ---------------------------------------------------------------------------------- the console


@dataclass
class Console:
    url: str
    engine: Engine
    credentials: dict[str, str]
    forum: SeededForum

    def indicators(self) -> list[Any]:
        with session_scope(self.engine) as session:
            return reviews.indicators(
                session, RecordQuery(RecordType.INDICATOR, descending=False, size=500)
            ).items

    def campaigns(self) -> list[Any]:
        with session_scope(self.engine) as session:
            return reviews.campaigns(
                session, RecordQuery(RecordType.CAMPAIGN, descending=False, size=500)
            ).items


def _add_indicators(engine: Engine, count: int) -> None:
    """``count`` more shared indicators: random tokens confirmed by two to four members, with
    varied categories and dates; every fifth is triaged, every ninth dismissed."""
    rng = random.Random(5)  # reproducible test data
    with session_scope(engine) as session:
        members = {name: PrincipalRepository(session).get_by_name(name) for name in MEMBERS}
    tokens = [rng.randbytes(16) for _ in range(count)]
    moment = SEEDED_AT + timedelta(hours=1)
    for index, token in enumerate(tokens):
        holders = rng.sample(MEMBERS, rng.randint(2, 4))
        seen = SEEDED_AT - timedelta(days=rng.randint(1, 90))
        with session_scope(engine) as session:
            repository = IndicatorRepository(session)
            for name in holders:
                member = members[name]
                assert member is not None
                repository.confirm(
                    kind=EMAIL,
                    key_id=KEY_ID,
                    member_id=member.id,
                    confirmations=[
                        TokenConfirmation(
                            token=token,
                            category=rng.choice(EXTRA_CATEGORIES),
                            first_seen=seen,
                            last_seen=seen + timedelta(days=rng.randint(0, 30)),
                        )
                    ],
                    at=moment + timedelta(seconds=index),
                )
            repository.refresh_shared(
                kind=EMAIL,
                key_id=KEY_ID,
                tokens=[token],
                quorum=2,
                at=moment + timedelta(seconds=index),
            )
    with session_scope(engine) as session:
        records = reviews.indicators(
            session, RecordQuery(RecordType.INDICATOR, descending=False, size=500)
        ).items
        for index, record in enumerate(records[3:]):
            if index % 5 == 0:
                target = ReviewStatus.TRIAGED
            elif index % 9 == 0:
                target = ReviewStatus.DISMISSED
            else:
                continue
            reviews.set_status(
                session, actor=SETUP_ACTOR, record_id=record.id, status=target, now=moment
            )


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    _require_browser()
    directory = tmp_path_factory.mktemp("browser")
    url = f"sqlite:///{directory / 'hub.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    credentials = provision(engine, now=SEEDED_AT)
    forum = seed_forum(engine, provisioned=True)
    _add_indicators(engine, EXTRA_INDICATORS)
    try:
        with serve_console(create_app(engine, secure_cookies=False)) as base:
            yield Console(base, engine, credentials, forum)
    finally:
        engine.dispose()


# ---------------------------------------------------------------------------------- the browser


class Browser:
    """A Chromium session on the console, with the few moves the tests repeat."""

    def __init__(self, driver: WebDriver, base: str, downloads: Path) -> None:
        self.driver = driver
        self.base = base
        self.downloads = downloads

    # navigation and waiting

    def open(self, path: str) -> None:
        self.driver.get(self.base + path)

    @property
    def path(self) -> str:
        """The current URL without the origin (path and query)."""
        url: str = self.driver.current_url
        assert url.startswith(self.base), url
        return url[len(self.base) :]

    def wait(self, condition: Callable[[WebDriver], Any], what: str) -> Any:
        try:
            return WebDriverWait(self.driver, WAIT_SECONDS).until(condition)
        except TimeoutException:
            raise AssertionError(f"timed out waiting for {what} (at {self.path})") from None

    def submit(self, button: WebElement, landed: Callable[[WebDriver], Any], what: str) -> None:
        """Click ``button`` and wait until the old page is gone and ``landed`` holds."""
        old = self.driver.find_element(By.TAG_NAME, "html")
        button.click()
        self.wait(lambda d: _stale(old) and landed(d), what)

    def nav(self, label: str, path: str) -> None:
        """Follow the main navigation link ``label`` to ``path``."""
        link = self.driver.find_element(By.CSS_SELECTOR, "header nav").find_element(
            By.LINK_TEXT, label
        )
        self.submit(link, lambda d: self.path.split("?")[0] == path, f"the {label} page")
        assert self.h1().startswith(label if label != "Indicators" else "Shared indicators")

    # reading the page

    def h1(self) -> str:
        text: str = self.driver.find_element(By.TAG_NAME, "h1").text
        return text

    def flash(self) -> str:
        text: str = self.driver.find_element(By.CSS_SELECTOR, ".flash").text
        return text

    def rows(self) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, "table.records tbody tr")

    def column(self, index: int) -> list[str]:
        """The rendered texts of column ``index`` (0-based) of the records table (read in one
        round trip: a WebDriver call per cell makes long tables slow)."""
        texts: list[str] = self.driver.execute_script(
            "return Array.from(document.querySelectorAll('table.records tbody tr'),"
            " row => row.cells[arguments[0]].innerText.trim())",
            index,
        )
        return texts

    def page_label(self) -> str:
        text: str = self.driver.find_element(By.CSS_SELECTOR, ".pager .range").text
        return text

    # forms

    def choose(self, form: WebElement, name: str, value: str) -> None:
        Select(form.find_element(By.NAME, name)).select_by_value(value)

    def type(self, form: WebElement, name: str, text: str) -> None:
        field = form.find_element(By.NAME, name)
        field.clear()
        field.send_keys(text)

    def form(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def sign_in(self, credential: str, *, landing: str = "/") -> None:
        if not self.driver.current_url.startswith(f"{self.base}/login"):
            self.open("/login")
        form = self.form("form[action='/login']")
        field = form.find_element(By.ID, "credential")
        assert field.get_attribute("type") == "password"
        field.send_keys(credential)
        self.submit(
            form.find_element(By.CSS_SELECTOR, "button[type=submit]"),
            lambda d: not self.path.startswith("/login"),
            "the console after signing in",
        )
        assert self.path == landing, self.path
        who = self.driver.find_element(By.CSS_SELECTOR, "header .who").text
        assert who.startswith(COORDINATOR)

    # evidence

    def shot(self, name: str) -> Path:
        """Save a screenshot of the whole page (the window is stretched to the content)."""
        # The window's height includes the (invisible) browser frame: add it to the content's.
        height = self.driver.execute_script(
            "return Math.max(document.body.scrollHeight, document.documentElement.scrollHeight)"
            " + window.outerHeight - window.innerHeight"
        )
        self.driver.set_window_size(
            WINDOW[0], min(max(int(height), WINDOW[1]), MAX_SCREENSHOT_HEIGHT)
        )
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        assert self.driver.save_screenshot(str(path)), f"screenshot {name} failed"
        self.driver.set_window_size(*WINDOW)
        assert path.stat().st_size > 1000
        return path


_DETACHED = "Node with given id does not belong to the document"
"""What Chromium answers, instead of a stale-element error, when asked about a node while its
document is being replaced."""


def _stale(element: WebElement) -> bool:
    """Whether ``element``'s page has been replaced (the navigation happened)."""
    try:
        element.is_enabled()
    except StaleElementReferenceException:
        return True
    except WebDriverException as error:
        if _DETACHED in str(error):
            return True
        raise
    return False


@pytest.fixture
def browser(console: Console, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Browser]:
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--disable-extensions",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--password-store=basic",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
    ):
        options.add_argument(argument)
    options.add_experimental_option(
        "prefs",
        {
            "download.default_directory": str(downloads),
            "download.prompt_for_download": False,
            "download.directory_upgrade": True,
            "safebrowsing.enabled": False,
            "credentials_enable_service": False,
            "profile.password_manager_enabled": False,
        },
    )
    # The explicit driver path means Selenium Manager is never consulted (and it must not
    # download anything even if it were).
    monkeypatch.setenv("SE_OFFLINE", "true")
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(WAIT_SECONDS * 2)
    try:
        yield Browser(driver, console.url, downloads)
    finally:
        driver.quit()


# ---------------------------------------------------------------------------------- the tests


def test_sign_in_overview_and_overlap_heatmap(browser: Browser, console: Console) -> None:
    browser.open("/indicators")
    assert browser.path == "/login?next=%2Findicators"
    assert browser.driver.find_element(By.ID, "credential").is_displayed()
    browser.shot("01-login")

    # A member's credential is refused with the same answer as a wrong one.
    browser.driver.find_element(By.ID, "credential").send_keys(console.credentials["m1"])
    browser.submit(
        browser.form("form[action='/login'] button[type=submit]"),
        lambda d: d.find_elements(By.CSS_SELECTOR, ".flash-error"),
        "the refusal",
    )
    assert browser.flash() == "unknown credential or not a coordinator"
    assert not browser.driver.find_elements(By.CSS_SELECTOR, "header nav")
    browser.shot("02-login-refused")

    browser.sign_in(console.credentials[COORDINATOR], landing="/indicators")
    browser.nav("Overview", "/")
    members = browser.driver.find_elements(
        By.CSS_SELECTOR, "section[aria-labelledby=members-heading] tbody th[scope=row]"
    )
    assert {m.text for m in members} >= set(MEMBERS)
    health = browser.driver.find_elements(By.CSS_SELECTOR, ".badge-ok")
    assert len(health) == len(MEMBERS), "every member's e-mail filter is healthy"
    counts = browser.driver.find_elements(By.CSS_SELECTOR, ".cards .card")[0]
    assert "new" in counts.text
    browser.shot("03-overview")

    browser.nav("Overlaps", "/overlaps")
    heatmap = browser.driver.find_element(By.CSS_SELECTOR, "figure.heatmap-figure svg.heatmap")
    assert heatmap.is_displayed()
    assert heatmap.size["width"] > 200
    assert heatmap.size["height"] > 200
    cells = heatmap.find_elements(By.CSS_SELECTOR, "g.cell")
    assert len(cells) == len(MEMBERS) ** 2
    labels = {cell.text for cell in cells}
    assert labels - {"0"}, "some pair of members overlaps"
    header = browser.driver.find_elements(By.CSS_SELECTOR, "table.matrix thead th.num")
    assert [th.text for th in header] == list(MEMBERS)
    browser.shot("04-overlaps")


def test_indicator_review_filter_sort_paginate_triage_confirm(
    browser: Browser, console: Console
) -> None:
    browser.sign_in(console.credentials[COORDINATOR])
    browser.nav("Indicators", "/indicators")
    total = len(console.indicators())
    assert f"of {total} indicators" in browser.driver.find_element(By.CSS_SELECTOR, ".range").text
    browser.shot("05-indicators")

    # Filter by status.
    filters = browser.form("form.filters")
    browser.choose(filters, "status", "triaged")
    browser.submit(
        filters.find_element(By.CSS_SELECTOR, "button[type=submit]"),
        lambda d: "status=triaged" in browser.path,
        "the triaged filter",
    )
    assert set(browser.column(6)) == {"triaged"}
    triaged = sum(i.status is ReviewStatus.TRIAGED for i in console.indicators())
    assert len(browser.rows()) == triaged
    browser.shot("06-indicators-triaged")

    # Back to new ones only, sorted by reporters (descending, then ascending).
    filters = browser.form("form.filters")
    browser.choose(filters, "status", "new")
    browser.choose(filters, "size", "25")
    browser.submit(
        filters.find_element(By.CSS_SELECTOR, "button[type=submit]"),
        lambda d: "status=new" in browser.path,
        "the new filter",
    )
    assert set(browser.column(6)) == {"new"}
    sort = browser.driver.find_element(By.CSS_SELECTOR, "thead").find_element(
        By.PARTIAL_LINK_TEXT, "Reporters"
    )
    browser.submit(sort, lambda d: "sort=reporters" in browser.path, "sort by reporters")
    assert "order=desc" in browser.path
    reporters = [int(text.split()[0]) for text in browser.column(2)]
    assert reporters == sorted(reporters, reverse=True)
    assert len(set(reporters)) > 1
    sort = browser.driver.find_element(By.CSS_SELECTOR, "thead").find_element(
        By.PARTIAL_LINK_TEXT, "Reporters"
    )
    browser.submit(sort, lambda d: "order=asc" in browser.path, "ascending reporters")
    ascending = [int(text.split()[0]) for text in browser.column(2)]
    assert ascending == sorted(ascending)
    assert set(browser.column(6)) == {"new"}, "sorting keeps the filter"
    browser.shot("07-indicators-new-by-reporters")

    # Paginate: 25 per page, the next page continues the order.
    new_total = sum(i.status is ReviewStatus.NEW for i in console.indicators())
    assert new_total > 25
    assert browser.page_label() == f"1–25 of {new_total} indicators"
    first_page = browser.column(0)
    assert len(first_page) == 25
    browser.submit(
        browser.driver.find_element(By.CSS_SELECTOR, ".pager a[rel=next]"),
        lambda d: "cursor=" in browser.path,
        "page 2",
    )
    assert browser.page_label() == f"26–{min(50, new_total)} of {new_total} indicators"
    assert "sort=reporters" in browser.path
    assert "status=new" in browser.path
    second_page = browser.column(0)
    assert second_page
    assert not set(first_page) & set(second_page)
    second_reporters = [int(text.split()[0]) for text in browser.column(2)]
    assert min(second_reporters) >= max(ascending)
    browser.shot("08-indicators-page-2")

    # Open one and review it: triage with a note, then confirm.
    link = browser.rows()[0].find_element(By.CSS_SELECTOR, "a.id")
    record_id = link.text
    browser.submit(link, lambda d: browser.path == f"/indicators/{record_id}", "the record")
    assert record_id in browser.h1()
    assert browser.driver.find_element(By.CSS_SELECTOR, "h1 .badge").text == "new"
    assert browser.driver.find_element(By.CSS_SELECTOR, "#history-heading + .empty")
    browser.shot("09-indicator")

    note = "Triaged in the browser: the same account-farm pattern as last week."
    form = browser.form(f"form[action='/records/{record_id}/status']")
    browser.choose(form, "status", "triaged")
    browser.type(form, "note", note)
    browser.submit(
        form.find_element(By.CSS_SELECTOR, "button[type=submit]"),
        lambda d: d.find_elements(By.CSS_SELECTOR, ".flash"),
        "the triage",
    )
    assert browser.flash() == "Status changed to triaged."
    assert browser.driver.find_element(By.CSS_SELECTOR, "h1 .badge").text == "triaged"
    browser.shot("10-indicator-triaged")

    form = browser.form(f"form[action='/records/{record_id}/status']")
    browser.choose(form, "status", "confirmed")
    browser.submit(
        form.find_element(By.CSS_SELECTOR, "button[type=submit]"),
        lambda d: d.find_elements(By.CSS_SELECTOR, ".flash"),
        "the confirmation",
    )
    assert browser.flash() == "Status changed to confirmed."
    assert browser.driver.find_element(By.CSS_SELECTOR, "h1 .badge").text == "confirmed"
    steps = browser.driver.find_elements(By.CSS_SELECTOR, "ol.history > li")
    assert len(steps) == 2
    newest, oldest = steps
    assert newest.get_attribute("class") == "step-status"
    assert [b.text for b in newest.find_elements(By.CSS_SELECTOR, ".badge")] == [
        "triaged",
        "confirmed",
    ]
    assert [b.text for b in oldest.find_elements(By.CSS_SELECTOR, ".badge")] == [
        "new",
        "triaged",
    ]
    assert oldest.find_element(By.CSS_SELECTOR, "blockquote.note").text == note
    assert all(COORDINATOR in s.find_element(By.CSS_SELECTOR, ".meta").text for s in steps)
    browser.shot("11-indicator-confirmed")

    with session_scope(console.engine) as session:
        state, events = reviews.history(session, record_id)
    assert state.status is ReviewStatus.CONFIRMED
    assert [(e.actor, e.from_status, e.to_status, e.note) for e in events] == [
        (COORDINATOR, ReviewStatus.NEW, ReviewStatus.TRIAGED, note),
        (COORDINATOR, ReviewStatus.TRIAGED, ReviewStatus.CONFIRMED, None),
    ]


def test_campaign_open_and_assign(browser: Browser, console: Console) -> None:
    browser.sign_in(console.credentials[COORDINATOR])
    browser.nav("Campaigns", "/campaigns")
    campaigns = console.campaigns()
    assert len(browser.rows()) == len(campaigns) == len(console.forum.campaign_templates())
    members = {row.find_element(By.CSS_SELECTOR, ".names").text for row in browser.rows()}
    assert members == {", ".join(m) for m in console.forum.campaign_templates().values()}
    browser.shot("12-campaigns")

    link = browser.rows()[-1].find_element(By.CSS_SELECTOR, "a.id")
    record_id = link.text
    browser.submit(link, lambda d: browser.path == f"/campaigns/{record_id}", "the campaign")
    facts = browser.driver.find_element(By.CSS_SELECTOR, "dl.facts").text
    assert "prompt" in facts
    assert "Members" in facts
    assert "First seen" in facts
    assert "Last seen" in facts
    browser.shot("13-campaign")

    form = browser.form(f"form[action='/records/{record_id}/assign']")
    offered = Select(form.find_element(By.NAME, "assignee")).options
    assert [(o.get_attribute("value"), o.text) for o in offered] == [
        ("", "nobody"),
        (ADMIN, ADMIN),
        (COORDINATOR, COORDINATOR),
    ]
    browser.choose(form, "assignee", COORDINATOR)
    browser.type(form, "note", "Mine: I will contact both members.")
    browser.submit(
        form.find_element(By.CSS_SELECTOR, "button[type=submit]"),
        lambda d: d.find_elements(By.CSS_SELECTOR, ".flash"),
        "the assignment",
    )
    assert browser.flash() == f"Assigned to {COORDINATOR}."
    assigned = {
        fact.find_element(By.TAG_NAME, "dt").text: fact.find_element(By.TAG_NAME, "dd").text
        for fact in browser.driver.find_elements(By.CSS_SELECTOR, "dl.facts > div")
    }
    assert assigned["Assignee"] == COORDINATOR
    newest = browser.driver.find_elements(By.CSS_SELECTOR, "ol.history > li")[0]
    assert newest.get_attribute("class") == "step-assign"
    assert f"assigned to {COORDINATOR}" in newest.text
    browser.shot("14-campaign-assigned")

    browser.open(f"/campaigns?assignee={COORDINATOR}")
    assert record_id in browser.column(0)
    assert set(browser.column(9)) == {COORDINATOR}
    browser.shot("15-campaigns-assigned-to-coord")


def test_audit_log_search(browser: Browser, console: Console) -> None:
    browser.sign_in(console.credentials[COORDINATOR])
    browser.nav("Audit", "/audit")
    actions = browser.column(3)
    assert "web.sign_in" in actions
    assert "web.overview" in actions
    browser.shot("16-audit")

    form = browser.form("form.filters")
    browser.type(form, "actor", COORDINATOR)
    browser.type(form, "action", "web.sign_in")
    browser.submit(
        form.find_element(By.CSS_SELECTOR, "button[type=submit]"),
        lambda d: "action=web.sign_in" in browser.path,
        "the audit search",
    )
    rows = browser.rows()
    assert rows
    assert set(browser.column(2)) == {COORDINATOR}
    assert set(browser.column(3)) == {"web.sign_in"}
    browser.shot("17-audit-search")

    form = browser.form("form.filters")
    browser.type(form, "actor", "")
    browser.type(form, "action", "no.such.action")
    browser.submit(
        form.find_element(By.CSS_SELECTOR, "button[type=submit]"),
        lambda d: "no.such.action" in browser.path,
        "an empty search",
    )
    assert not browser.rows()
    assert browser.driver.find_element(By.CSS_SELECTOR, "p.empty").text == "No audit entries match."
    browser.shot("18-audit-no-match")


def _downloaded(directory: Path, count: int) -> list[Path] | None:
    files = sorted(directory.iterdir())
    if len(files) < count or any(f.suffix == ".crdownload" or f.stat().st_size == 0 for f in files):
        return None
    return files


def test_export_downloads(
    browser: Browser, console: Console, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> Any:
        raise AssertionError(f"the STIX validator tried the network: {args}")

    monkeypatch.setattr(requests, "get", refuse)
    monkeypatch.setattr(requests.Session, "request", refuse)

    browser.sign_in(console.credentials[COORDINATOR])
    browser.nav("Export", "/export")
    browser.shot("19-export")
    stix_form = browser.form("form[action='/export/stix']")
    browser.choose(stix_form, "tlp", "green")
    stix_form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    for label in ("Download CSV", "Download JSON"):
        browser.driver.find_element(By.LINK_TEXT, label).click()
    files = browser.wait(lambda d: _downloaded(browser.downloads, 3), "three downloads")
    assert browser.path == "/export", "downloads do not navigate away"
    by_suffix = {
        "".join(f.suffixes[-2:]) if f.name.endswith(".stix.json") else f.suffix: f for f in files
    }
    assert set(by_suffix) == {".stix.json", ".csv", ".json"}, [f.name for f in files]
    assert all(f.name.startswith("sigshare-export-") for f in files)

    indicators, campaigns = console.indicators(), console.campaigns()
    ids = {i.id for i in indicators} | {c.id for c in campaigns}

    stix = by_suffix[".stix.json"].read_text(encoding="utf-8")
    results = validate_string(stix, ValidationOptions(strict=True, enforce_refs=True))
    assert results.is_valid, [str(e) for e in results.errors]
    assert not results.errors
    bundle = json.loads(stix)
    types = [o["type"] for o in bundle["objects"]]
    assert types.count("indicator") == types.count("sighting") == len(indicators)
    assert types.count("campaign") == len(campaigns)
    (marking,) = [o for o in bundle["objects"] if o["type"] == "marking-definition"]
    assert marking["name"] == "TLP:GREEN"

    table = list(csv.reader(io.StringIO(by_suffix[".csv"].read_text(encoding="utf-8"))))
    assert tuple(table[0]) == CSV_COLUMNS
    assert {row[1] for row in table[1:]} == ids

    document = json.loads(by_suffix[".json"].read_text(encoding="utf-8"))
    assert {r["id"] for r in document["indicators"]} == {i.id for i in indicators}
    assert {r["id"] for r in document["campaigns"]} == {c.id for c in campaigns}

    with session_scope(console.engine) as session:
        exported = search_audit_log(
            session, AuditQuery(actor=COORDINATOR, action="export", size=1000)
        ).items
    assert {"stix", "csv", "json"} <= {entry.target for entry in exported}


def test_sign_out_then_pages_need_sign_in(browser: Browser, console: Console) -> None:
    browser.sign_in(console.credentials[COORDINATOR])
    browser.submit(
        browser.form("form.signout button[type=submit]"),
        lambda d: browser.path.startswith("/login"),
        "the sign-in page after signing out",
    )
    assert browser.path == "/login"
    assert not browser.driver.find_elements(By.CSS_SELECTOR, "header nav")
    browser.shot("20-signed-out")

    for path in ("/indicators", "/campaigns", "/audit", "/export/csv"):
        browser.open(path)
        browser.wait(lambda d: browser.path.startswith("/login"), f"{path} to redirect")
        assert browser.path == f"/login?next={path.replace('/', '%2F')}"
        assert browser.driver.find_element(By.ID, "credential").is_displayed()
    assert not list(browser.downloads.iterdir()), "nothing downloads without a session"
    browser.open("/indicators")
    browser.shot("21-protected-page-redirects")
