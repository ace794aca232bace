"""The study dashboard in headless chromium with simulated data: every chart's text stays inside its SVG
and inside the page, no two tick labels overlap, long metric names are whole, and screenshots of each
chart land in artifacts/dashboard/ for a person to look at."""

import re
import uuid
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "dashboard"

LONG_NAMES = [
    "trained alex-kmeans lin",
    "alex-kmeans untrained (init heads)",
    "alex-kmeans unweighted",
    "lpips-alex v0.1 (official)",
    "l2_lab",
    "dssim_lab",
    "a deliberately long metric name to test wrapping in every chart (64 chars)",
]

# Every <text> of every chart: its box in the SVG's own units (a tspan line counts on its own), the
# SVG's viewBox, and whether it leaves the viewBox or the page. Then pairs of overlapping texts.
MEASURE = """
const out = [];
for (const svg of document.querySelectorAll('svg.chart')) {
  const vb = svg.viewBox.baseVal, boxes = [];
  for (const t of svg.querySelectorAll('text')) {
    const parts = t.querySelectorAll('tspan').length ? [...t.querySelectorAll('tspan')] : [t];
    for (const p of parts) {
      const b = p.getBBox();
      if (!p.textContent.trim()) continue;
      boxes.push({text: p.textContent, x: b.x, y: b.y, w: b.width, h: b.height,
                  rotated: !!t.getAttribute('transform')});
    }
  }
  const r = svg.getBoundingClientRect();
  out.push({cls: svg.classList[1], vb: [vb.width, vb.height], boxes,
            page: [r.left, r.right, document.documentElement.clientWidth]});
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
        for category in ("all", "traditional", "cnn"):
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


def _login(browser, live_server):
    browser.get(live_server.url + "/accounts/login/?next=/dashboard/")
    browser.find_element("id", "id_username").send_keys("carol")
    browser.find_element("id", "id_password").send_keys("carol-pass-123")
    browser.find_element("id", "login-submit").click()


@pytest.mark.parametrize("window", [1200, 800])
def test_no_chart_text_overflows_or_overlaps_and_names_are_whole(
    live_server, browser, researcher_carol, populated_study, window
):
    _login(browser, live_server)
    browser.set_window_size(window, 900)
    browser.get(f"{live_server.url}/dashboard/{populated_study.pk}/")
    charts = browser.execute_script(MEASURE)
    assert {c["cls"] for c in charts} >= {"bars", "columns", "hist", "scores", "lines"}
    problems = []
    for c in charts:
        width, height = c["vb"]
        left, right, page = c["page"]
        if left < 0 or right > page + 0.5:
            problems.append(f"{c['cls']}: the chart leaves the page ({left:.0f}..{right:.0f} of {page})")
        for b in c["boxes"]:
            if b["rotated"]:
                continue  # axis titles turned 90 degrees: getBBox is in their own rotated frame
            if (
                b["x"] < -0.5
                or b["x"] + b["w"] > width + 0.5
                or b["y"] < -0.5
                or b["y"] + b["h"] > height + 0.5
            ):
                problems.append(f"{c['cls']}: {b['text']!r} leaves the {width}x{height} box: {b}")
        flat = [b for b in c["boxes"] if not b["rotated"]]
        for i, a in enumerate(flat):
            for b in flat[i + 1 :]:
                if _overlaps(a, b):
                    problems.append(f"{c['cls']}: {a['text']!r} overlaps {b['text']!r}")
    assert not problems, "\n".join(problems)
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
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for k, svg in enumerate(browser.find_elements("css selector", "svg.chart")):
        browser.execute_script("arguments[0].scrollIntoView()", svg)
        svg.screenshot(str(ARTIFACTS / f"w{window}_{k}_{svg.get_attribute('class').split()[1]}.png"))
    browser.set_window_size(window, 3600)
    browser.save_screenshot(str(ARTIFACTS / f"w{window}_page.png"))
