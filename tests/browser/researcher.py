"""Helpers for the researcher-page browser tests: a live server with a real Celery worker on one Postgres
database, logging in, explicit waits, downloads with the browser's session, and screenshots of each page at
the desktop (1280 px) and laptop (1024 px) widths with a layout check at each.

The tests import this module by name (tests/browser on sys.path, as tests/integration does with
worker_process); `researcher_stack` is a fixture they import with it."""

from __future__ import annotations

import contextlib
import hashlib
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from worker_process import celery_worker, child_env  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "researcher"
WIDTHS = (1280, 1024)  # the desktop and the laptop the issue asks for
HEIGHT = 900
SHOT_MAX_HEIGHT = 6000  # a full-page screenshot stops here

# What a person would see as broken at this width: a page wider than the window (horizontal scroll), form
# controls without a label (label[for], a wrapping <label>, aria-label or aria-labelledby), and raw values in
# the text (a Python or JSON dict, a float with five or more decimals).
LAYOUT_PROBLEMS = r"""
const problems = [];
const page = document.scrollingElement;
if (page.scrollWidth > window.innerWidth) {
  problems.push(`horizontal scroll: ${page.scrollWidth} px of page in a ${window.innerWidth} px window`);
}
for (const el of document.querySelectorAll('input, select, textarea')) {
  if (el.type === 'hidden') continue;
  const byFor = el.id && document.querySelector(`label[for="${CSS.escape(el.id)}"]`);
  const labelled = byFor || el.closest('label') || (el.getAttribute('aria-label') || '').trim()
    || el.getAttribute('aria-labelledby');
  if (!labelled) {
    problems.push(`a ${el.tagName.toLowerCase()} without a label: name=${el.name || '-'} id=${el.id || '-'}`);
  }
}
const text = document.body.innerText;
const raw = [['a raw dict', /\{\s*['"][^'"\n]{1,40}['"]\s*:/], ['an unformatted float', /\b\d+\.\d{5,}\b/]];
for (const [what, re] of raw) {
  const m = text.match(re);
  if (m) problems.push(`${what}: ${JSON.stringify(text.slice(Math.max(0, m.index - 30), m.index + 40))}`);
}
return problems;
"""
# Not failures, but worth a look in the screenshots: boxes that scroll sideways inside the page (a wide
# table in a scroll container) at this width.
INNER_SCROLL = """
const out = [];
for (const el of document.querySelectorAll('body *')) {
  const style = getComputedStyle(el);
  if (['auto', 'scroll'].includes(style.overflowX) && el.scrollWidth > el.clientWidth + 1) {
    const classes = typeof el.className === 'string' ? el.className.trim().split(/\\s+/) : [];
    const name = el.tagName.toLowerCase() + (el.id ? '#' + el.id : '')
      + classes.filter(c => c).map(c => '.' + c).join('');
    const within = el.closest('section[id]');
    const where = within ? ' in section#' + within.id : '';
    out.push(`${name}${where} scrolls: ${el.scrollWidth} px in ${el.clientWidth} px`);
  }
}
return out;
"""
# The focused element after a Tab press, and whether it shows focus (an outline or a box shadow).
FOCUSED = """
const el = document.activeElement;
if (!el || el === document.body) return null;
const style = getComputedStyle(el);
const outline = style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) > 0;
const shadow = style.boxShadow && style.boxShadow !== 'none';
const name = el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + (el.name ? `[name=${el.name}]` : '')
  + (el.tagName === 'A' ? ` "${el.textContent.trim().slice(0, 30)}"` : '');
return {name, visible: outline || shadow};
"""
TAB_STOPS = 25  # the first controls of each page, in keyboard order
RESET_SCROLL = "window.scrollTo(0, 0); document.querySelectorAll('body *').forEach(e => e.scrollLeft = 0)"


@dataclass
class Stack:
    """The live server's URL and its Celery worker, started by `start_worker` (a test may first look at a
    page while its job is still queued); `problems` collects what `shoot` found."""

    url: str
    worker_log: Path
    _env: dict
    _exit: contextlib.ExitStack
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # inner sideways scrolling, written to notes.txt

    def start_worker(self) -> None:
        self._exit.enter_context(celery_worker(self._env, log_path=self.worker_log))

    def log_tail(self, n: int = 4000) -> str:
        return self.worker_log.read_text()[-n:] if self.worker_log.exists() else "(no worker log)"


@pytest.fixture
def researcher_stack(settings, redis_url, postgres, live_server, tmp_path):
    """A live server, and a real Celery worker (queues default and gpu, started by stack.start_worker()) on
    the same Postgres test database and media folder (a task an earlier run left queued names a study this
    database does not hold, and fails at once). The worker stops at teardown."""
    with contextlib.ExitStack() as exit_stack:
        yield Stack(
            url=live_server.url,
            worker_log=tmp_path / "worker.log",
            _env=child_env(settings, redis_url),
            _exit=exit_stack,
        )


# --- the browser ------------------------------------------------------------------------------------------
def login(browser, base_url: str, username: str = "carol", password: str = "carol-pass-123") -> None:
    browser.get(f"{base_url}/accounts/login/?next=/dashboard/")
    browser.find_element("id", "id_username").send_keys(username)
    browser.find_element("id", "id_password").send_keys(password)
    browser.find_element("id", "login-submit").click()
    wait_until(browser, on_dashboard, what="the studies list")


def on_dashboard(driver) -> bool:
    """A wait condition: the browser shows the studies list (its path, not the login page's ?next= query)
    and the list has loaded."""
    from urllib.parse import urlparse

    if urlparse(driver.current_url).path.rstrip("/") != "/dashboard":
        return False
    return bool(driver.find_elements("css selector", "a#new-study"))


def _say(what) -> str:
    return what() if callable(what) else what


def wait_until(browser, condition, *, timeout: float = 30.0, what="the condition", poll: float = 0.2):
    """WebDriverWait with a message saying what was awaited (`what`: a string, or a callable asked only on
    timeout, e.g. for the worker's log then) and where the browser was."""
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:  # a stale element (the page or an htmx swap replaced it) means: look again
        wait = WebDriverWait(
            browser, timeout, poll_frequency=poll, ignored_exceptions=(StaleElementReferenceException,)
        )
        return wait.until(condition)
    except TimeoutException:
        pytest.fail(f"waited {timeout:.0f} s for {_say(what)} at {browser.current_url}")


def css(browser, selector: str):
    return browser.find_element("css selector", selector)


def css_all(browser, selector: str) -> list:
    return browser.find_elements("css selector", selector)


def present(selector: str):
    """A wait condition: the first element matching `selector`, or False."""

    def condition(driver):
        found = driver.find_elements("css selector", selector)
        return found[0] if found else False

    return condition


def text_of(browser, selector: str) -> str:
    """The rendered text of the first match ('' when none), read in one step (htmx may swap it any time)."""
    return browser.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.innerText.trim() : ''", selector
    )


def wait_text(browser, selector: str, predicate, *, timeout: float = 30.0, what: str = "") -> str:
    """Waits until the text of `selector` satisfies predicate(text); returns the text."""
    return wait_until(
        browser,
        lambda d: (lambda t: t if predicate(t) else False)(text_of(d, selector)),
        timeout=timeout,
        what=what or f"the text of {selector}",
    )


def wait_reloading(browser, condition, *, timeout: float = 120.0, every: float = 2.0, what="the condition"):
    """Reloads the page every `every` seconds until condition(browser) is truthy (for what no fragment
    polls); returns its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition(browser)
        if value:
            return value
        if time.monotonic() > deadline:
            where = browser.current_url
            pytest.fail(f"waited {timeout:.0f} s (reloading) for {_say(what)} at {where}")
        time.sleep(every)
        browser.refresh()


def set_field(browser, name: str, value) -> None:
    """Sets a text/number input or textarea by name (clears it first) and fires change, as a person would."""
    el = css(browser, f"[name='{name}']")
    reveal(browser, el)
    el.clear()
    el.send_keys(str(value))
    browser.execute_script("arguments[0].dispatchEvent(new Event('change', {bubbles: true}))", el)


def reveal(browser, el) -> None:
    """Opens the closed <details> around `el` by clicking their summaries, as a person would, and scrolls
    it into the middle of the window."""
    closed = browser.execute_script(
        "const out = []; for (let d = arguments[0].closest('details:not([open])'); d;"
        " d = d.parentElement.closest('details:not([open])')) out.unshift(d.querySelector('summary'));"
        " return out",
        el,
    )
    for summary in closed:
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", summary)
        summary.click()
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", el)


def set_checked(browser, selector: str, checked: bool) -> None:
    el = css(browser, selector)
    if el.is_selected() != checked:
        reveal(browser, el)
        el.click()


def click(browser, selector: str) -> None:
    el = css(browser, selector)
    reveal(browser, el)
    el.click()


# --- layout and screenshots -------------------------------------------------------------------------------
def _viewport(browser, width: int, height: int) -> None:
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )


def layout_problems(browser) -> list[str]:
    return browser.execute_script(LAYOUT_PROBLEMS)


def focus_problems(browser, stops: int = TAB_STOPS) -> list[str]:
    """Presses Tab from the top of the page up to `stops` times: every control it reaches must show that it
    has focus (an outline or a box shadow)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    browser.execute_script("document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0)")
    problems, seen = [], set()
    for _ in range(stops):
        ActionChains(browser).send_keys(Keys.TAB).perform()
        focused = browser.execute_script(FOCUSED)
        if focused is None:
            break
        if not focused["visible"] and focused["name"] not in seen:
            problems.append(f"no visible focus on {focused['name']}")
        seen.add(focused["name"])
    browser.execute_script("document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0)")
    return problems


def shoot(browser, stack: Stack, name: str) -> list[str]:
    """At each of WIDTHS: the page's layout problems (added to stack.problems, named by page and width), boxes
    that scroll sideways inside it (stack.notes, also appended to artifacts/researcher/notes.txt) and a
    full-page PNG artifacts/researcher/<name>_<width>.png, scrolled to the top left; then, at 1280 x 900
    again, the first TAB_STOPS keyboard stops, each of which must show its focus."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    found, notes = [], []
    try:
        for width in WIDTHS:
            _viewport(browser, width, HEIGHT)
            found += [f"{name} at {width} px: {p}" for p in layout_problems(browser)]
            notes += [f"{name} at {width} px: {n}" for n in browser.execute_script(INNER_SCROLL)]
            full = browser.execute_script("return document.scrollingElement.scrollHeight")
            _viewport(browser, width, max(HEIGHT, min(int(full), SHOT_MAX_HEIGHT)))
            browser.execute_script(RESET_SCROLL)
            browser.save_screenshot(str(ARTIFACTS / f"{name}_{width}.png"))
    finally:
        _viewport(browser, WIDTHS[0], HEIGHT)
    found += [f"{name} at {WIDTHS[0]} px: {p}" for p in focus_problems(browser)]
    stack.problems += found
    stack.notes += notes
    if notes:
        with (ARTIFACTS / "notes.txt").open("a") as out:
            out.write("".join(n + "\n" for n in notes))
    return found


# --- downloads --------------------------------------------------------------------------------------------
def download(browser, url: str, *, timeout: float = 60.0) -> bytes:
    """GET `url` (absolute, on the live server) with the browser's session cookie; the body (HTTP errors
    raise urllib's HTTPError)."""
    cookies = "; ".join(f"{c['name']}={c['value']}" for c in browser.get_cookies())
    request = urllib.request.Request(url, headers={"Cookie": cookies})
    with contextlib.closing(urllib.request.urlopen(request, timeout=timeout)) as response:
        return response.read()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
