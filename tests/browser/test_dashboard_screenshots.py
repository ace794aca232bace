"""The study dashboard in headless chromium with simulated data: every chart's text stays inside its SVG
and inside the page, no two tick labels overlap, long metric names are whole, and screenshots of each
chart land in artifacts/dashboard/ for a person to look at."""

import re
import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from researcher import on_dashboard, wait_until  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "dashboard"

LONG_NAMES = [
    "trained alex-kmeans lin",
    "alex-kmeans untrained (init heads)",
    "alex-kmeans unweighted",
    "lpips-alex v0.1 (official)",
    "l2_lab",
    "dssim_lab",
    "a deliberately long metric name, 64 characters: the field limit.",  # Evaluation.metric max_length
]

# Every text line of every chart (a tspan counts on its own) as its box on the screen, with the SVG's box
# and the page width: the browser's own measure of the rendered glyphs, rotated axis titles included.
MEASURE = """
const out = [];
for (const svg of document.querySelectorAll('svg.chart')) {
  svg.scrollIntoView();
  const s = svg.getBoundingClientRect(), boxes = [];
  for (const t of svg.querySelectorAll('text')) {
    const parts = t.querySelectorAll('tspan').length ? [...t.querySelectorAll('tspan')] : [t];
    for (const p of parts) {
      if (!p.textContent.trim()) continue;
      const b = p.getBoundingClientRect();
      boxes.push({text: p.textContent, x: b.left - s.left, y: b.top - s.top, w: b.width, h: b.height});
    }
  }
  out.push({cls: svg.classList[1], box: [s.width, s.height], boxes,
            page: [s.left, s.right, document.documentElement.clientWidth]});
}
return out;
"""


def _overlaps(a, b):
    pad = 0.5
    return (
        a["x"] + pad < b["x"] + b["w"]
        and b["x"] + pad < a["x"] + a["w"]
        and a["y"] + pad < b["y"] + b["h"]
        and b["y"] + pad < a["y"] + a["h"]
    )


@pytest.fixture
def populated_study(make_study, researcher_carol, answer_trials):
    from judgments.assignments import assignment_start
    from judgments.qc import assignment_submit
    from training.models import Evaluation

    study = make_study(
        owner=researcher_carol,
        n_test=60,
        n_sentinels=15,
        n_practice=0,
        categories=("traditional", "cnn"),
        config={"hit_size": 30, "judgments_per_item": {"train": 5, "val": 5}, "training": {"every": None}},
        name="A study with a fairly long name for the dashboard header",
    )
    for w in range(8):
        a = assignment_start(study=study, platform="anonymous", worker_id=f"w{w}").assignment

        def policy(trial, item, w=w):
            if item.expected:  # sentinels: worker w gets about w of them wrong
                wrong = item.index % 8 < w // 2
                return ("p1" if item.expected == "p0" else "p0") if wrong else item.expected
            return "p0" if (item.index + w) % 3 else "p1"

        answer_trials(a, policy)
        assignment_submit(token=a.token)
    scores = {name: 0.58 + 0.022 * k for k, name in enumerate(LONG_NAMES)}
    for run, n in enumerate((60, 120, 240)):
        rid = uuid.uuid4()
        for category in ("all", "traditional", "cnn", "a long category name such as frame interpolation"):
            for name, base in scores.items():
                s = base + 0.01 * run + (0.01 if category == "cnn" else 0)
                Evaluation.objects.create(
                    study=study,
                    run=rid,
                    metric=name,
                    measure="2afc",
                    split="val",
                    category=category,
                    score=s,
                    ci_low=s - 0.04,
                    ci_high=min(1.0, s + 0.04),
                    n_items=15,
                    n_judgments=n,
                )
            Evaluation.objects.create(
                study=study,
                run=rid,
                metric="human",
                kind="human",
                measure="ceiling",
                split="val",
                category=category,
                score=0.74,
                n_items=15,
                n_judgments=n,
            )
    return study


def layout_problems(charts) -> list[str]:
    """Text that leaves its chart, a chart that leaves the page, and text lines that overlap."""
    problems = []
    for c in charts:
        width, height = c["box"]
        left, right, page = c["page"]
        if left < -0.5 or right > page + 0.5:
            problems.append(f"{c['cls']}: the chart leaves the page ({left:.0f}..{right:.0f} of {page})")
        for b in c["boxes"]:
            if (
                b["x"] < -0.5
                or b["x"] + b["w"] > width + 0.5
                or b["y"] < -0.5
                or b["y"] + b["h"] > height + 0.5
            ):
                problems.append(f"{c['cls']}: {b['text']!r} leaves the {width:.0f}x{height:.0f} box: {b}")
        for i, a in enumerate(c["boxes"]):
            for b in c["boxes"][i + 1 :]:
                if _overlaps(a, b):
                    problems.append(f"{c['cls']}: {a['text']!r} overlaps {b['text']!r}")
    return problems


def screenshots(browser, prefix: str) -> None:
    """One PNG per chart, and the whole page, under artifacts/dashboard/."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for k, svg in enumerate(browser.find_elements("css selector", "svg.chart")):
        browser.execute_script("arguments[0].scrollIntoView()", svg)
        svg.screenshot(str(ARTIFACTS / f"{prefix}_{k}_{svg.get_attribute('class').split()[1]}.png"))
    browser.execute_script("document.querySelectorAll('details').forEach(d => d.open = true)")
    size = browser.get_window_size()
    browser.set_window_size(size["width"], 3600)
    browser.save_screenshot(str(ARTIFACTS / f"{prefix}_page.png"))
    browser.set_window_size(size["width"], size["height"])


def _login(browser, live_server):
    browser.get(live_server.url + "/accounts/login/?next=/dashboard/")
    browser.find_element("id", "id_username").send_keys("carol")
    browser.find_element("id", "id_password").send_keys("carol-pass-123")
    browser.find_element("id", "login-submit").click()
    # the login's redirect must land before the next page is asked for, or that request goes without the
    # session (the page asked for is then the login page)
    wait_until(browser, on_dashboard, what="the studies list after the login")


@pytest.mark.parametrize("window", [1200, 800])
def test_no_chart_text_overflows_or_overlaps_and_names_are_whole(
    live_server, browser, researcher_carol, populated_study, window
):
    _login(browser, live_server)
    browser.set_window_size(window, 900)
    browser.get(f"{live_server.url}/dashboard/{populated_study.pk}/")
    charts = browser.execute_script(MEASURE)
    assert {c["cls"] for c in charts} >= {"bars", "columns", "hist", "scores", "lines"}
    assert not layout_problems(charts), "\n".join(layout_problems(charts))
    page_text = browser.execute_script(
        "return [...document.querySelectorAll('svg.chart text')].map(t => t.textContent).join('|')"
    )
    for name in LONG_NAMES:
        assert name.replace(" ", "") in page_text.replace(" ", "").replace("|", ""), name
    rule = browser.find_element("id", "exclusion-rule").text
    assert "fewer than 5 of its 5 sentinels are right (below 93.3\u00a0%" in rule.replace(" %", "\u00a0%")
    hist_texts = browser.execute_script(
        "return [...document.querySelector('svg.hist').querySelectorAll('text')].map(t => t.textContent)"
    )
    assert [t for t in hist_texts if re.fullmatch(r"\d+\u00a0%", t)] == [
        "0\u00a0%",
        "25\u00a0%",
        "50\u00a0%",
        "75\u00a0%",
        "100\u00a0%",
    ]
    browser.execute_script("document.querySelectorAll('details').forEach(d => d.open = true)")
    widths = browser.execute_script(
        "return [...document.querySelectorAll('.table-scroll')].map(d => [d.scrollWidth, d.clientWidth])"
    )
    assert len(widths) == 2
    if window >= 1200:  # at the desktop width the tables fit; narrower, they scroll rather than squeeze
        assert all(scroll <= client for scroll, client in widths), widths
    screenshots(browser, f"w{window}")


def test_a_jnd_study_and_an_empty_study_render_cleanly(
    live_server, browser, researcher_carol, make_study, crowd
):
    """A JND study (mAP chart, timing rule) and a study with no judgments (charts that say so in words)."""
    from training.models import Evaluation

    empty = make_study(owner=researcher_carol, n_test=6, n_sentinels=2, n_practice=0, name="empty study")
    jnd = make_study(
        kind="jnd",
        owner=researcher_carol,
        n_test=40,
        n_sentinels=10,
        n_practice=0,
        name="jnd study",
        categories=("traditional", "cnn"),
        config={"hit_size": 20, "training": {"every": None}},
    )
    crowd(jnd, 4, lambda t, i: i.expected or ("same" if i.index % 3 else "different"))
    rid = uuid.uuid4()
    for k, name in enumerate(LONG_NAMES):
        for category in ("traditional", "cnn"):
            s = 0.3 + 0.09 * k
            Evaluation.objects.create(
                study=jnd,
                run=rid,
                metric=name,
                measure="jnd_map",
                split="val",
                category=category,
                score=s,
                ci_low=max(0.0, s - 0.1),
                ci_high=min(1.0, s + 0.1),
                n_items=20,
                n_judgments=80,
            )
    _login(browser, live_server)
    browser.set_window_size(1000, 900)
    for study, prefix in ((empty, "empty"), (jnd, "jnd")):
        browser.get(f"{live_server.url}/dashboard/{study.pk}/")
        charts = browser.execute_script(MEASURE)
        assert not layout_problems(charts), "\n".join(layout_problems(charts))
        screenshots(browser, prefix)
    browser.get(f"{live_server.url}/dashboard/{empty.pk}/")
    empty_text = browser.find_element("tag name", "main").text
    assert "No sentinel answers yet." in browser.page_source and "No workers yet." in browser.page_source
    assert "No judgments in the last 24 hours." in browser.page_source and "No evaluation yet" in empty_text
    browser.get(f"{live_server.url}/dashboard/{jnd.pk}/")
    text = browser.find_element("tag name", "main").text.replace("\u00a0", " ")
    assert "fewer than" in text and "Display timing: reference 1000 ms, blank 250 ms" in text
    assert browser.execute_script("return document.querySelectorAll('svg.scores').length") == 1
