"""A researcher's whole study in headless chromium, on a live server with a real Celery worker on Postgres:
log in, create a small engine study with the guided form (one distortion only, checked in the live preview),
watch it build, pause and start it, try it as an annotator, let a simulated crowd answer it through the
annotator API, reject one worker, export the dataset and download it (its sha256 as the page shows it, the
BAPPS tree and the manifest, none of the rejected worker's judgments), and download the trained model
(metric.bundle.load_bundle loads it), then make an API token and list the studies with it. Each researcher
page is photographed at 1280 and 1024 px into artifacts/researcher/; none of them scrolls sideways, has a
control without a label or a keyboard stop without visible focus, and the new-study page does not move
while its preview loads."""

import io
import json
import re
import sys
import urllib.request
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from researcher import (  # noqa: E402
    click,
    css,
    css_all,
    download,
    login,
    present,
    researcher_stack,  # noqa: F401  (a fixture)
    reveal,
    set_checked,
    set_field,
    sha256,
    shoot,
    text_of,
    wait_reloading,
    wait_text,
    wait_until,
)
from test_annotator import answer_trials, consent_and_start  # noqa: E402

pytestmark = [
    pytest.mark.browser,
    pytest.mark.integration,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
]
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
ONLY = "gaussian_blur"  # the one distortion the study uses
SEVERITY = (0.3, 0.5)  # and its severity range
INSTRUCTIONS = "Take your time: there is no right answer on most trials."
REASON = "answered at random in the browser test"
# The page's cumulative layout shift so far (Chrome's layout-shift entries, shifts right after input left
# out as the metric does); below 0.1 is what Core Web Vitals call good.
LAYOUT_SHIFT = """
const done = arguments[arguments.length - 1];
let total = 0;
new PerformanceObserver(list => {
  for (const e of list.getEntries()) if (!e.hadRecentInput) total += e.value;
}).observe({type: 'layout-shift', buffered: true});
setTimeout(() => done(total), 300);
"""
CAPTION_OP = re.compile(r"([a-z][a-z0-9_]*)\s+(\d+(?:\.\d+)?)")


def _preview(browser) -> list[dict]:
    """Each preview sample: its caption and whether its images are data: PNGs that loaded, with fixed
    width and height attributes."""
    return browser.execute_script(
        """
        return [...document.querySelectorAll('#preview figure.preview-item')].map(f => ({
          caption: (f.querySelector('figcaption') || {}).textContent || '',
          images: [...f.querySelectorAll('img')].map(i => ({
            png: i.src.startsWith('data:image/png'), loaded: i.complete && i.naturalWidth > 0,
            sized: i.hasAttribute('width') && i.hasAttribute('height')})),
        }));
        """
    )


def _only_the_chosen_distortion(samples) -> bool:
    """Every sample's caption names only ONLY, each severity within SEVERITY."""
    if not samples:
        return False
    for sample in samples:
        ops = CAPTION_OP.findall(sample["caption"])
        if not ops or {name for name, _ in ops} != {ONLY}:
            return False
        if not all(SEVERITY[0] - 0.006 <= float(value) <= SEVERITY[1] + 0.006 for _, value in ops):
            return False
    return True


def _status(browser) -> str:
    return text_of(browser, "#study-status").lower()


def _fill_new_study(browser) -> None:
    """The guided form: a tiny 2AFC engine study, one distortion, two judgments per item, HITs of 8, one
    cheap backbone retrained every 30 judgments."""
    set_field(browser, "name", "Lifecycle study (browser test)")
    set_checked(browser, "input[name=kind][value='2afc']", True)
    set_checked(browser, "input[name=source][value=engine]", True)
    for name, value in (
        ("n_items", 24),
        ("seed", 7),
        ("n_sentinels", 6),
        ("n_practice", 2),
        ("jpi_train", 2),
        ("jpi_val", 2),
        ("hit_size", 8),
        ("training_every", 30),
    ):
        set_field(browser, name, value)
    for box in css_all(browser, "input[name=backbones]"):
        set_checked(browser, f"input[name=backbones][value='{box.get_attribute('value')}']", False)
    set_checked(browser, "input[name=backbones][value='squeeze:random']", True)


def _change_the_distortions(browser) -> None:
    """The changed option: only ONLY, at SEVERITY (the preview must follow)."""
    set_field(browser, "severity_min", SEVERITY[0])
    set_field(browser, "severity_max", SEVERITY[1])
    for box in css_all(browser, "input[name=distortions]"):
        set_checked(browser, f"input[name=distortions][value='{box.get_attribute('value')}']", False)
    set_checked(browser, f"input[name=distortions][value='{ONLY}']", True)


def _open_details(browser) -> None:
    """Opens every <details> (a person would click its summary) so that rows inside can be clicked."""
    browser.execute_script("document.querySelectorAll('details').forEach(d => d.open = true)")


def _try_page_and_settings(browser, stack, study_url: str, study) -> None:
    from selenium.webdriver.common.keys import Keys

    from judgments.models import Assignment, Judgment

    click(browser, "a#try-annotator")
    wait_until(browser, lambda d: d.current_url.endswith("/try/"), what="the try-as-annotator page")
    wait_until(
        browser,
        lambda d: d.execute_script("return document.body.dataset.screen || ''") not in ("", "error"),
        what="the annotator page in try mode",
    )
    # the real annotator flow (tests/browser/test_annotator.py's helpers): consent, then answer three trials
    consent_and_start(browser, browser.current_url)
    given, state = answer_trials(browser, [Keys.ARROW_LEFT, Keys.ARROW_RIGHT], stop_after=3)
    assert (given, state) == (3, "trial"), (given, state)
    shoot(browser, stack, "06_try_as_annotator")
    assert not Assignment.objects.filter(study=study).exists()
    assert not Judgment.objects.filter(item__study=study).exists()
    browser.get(study_url)
    click(browser, "a#edit-settings")
    wait_until(browser, lambda d: d.current_url.endswith("/settings/"), what="the settings page")
    shoot(browser, stack, "07_settings")
    # a safe change is saved; the exclusion rule is locked once the study has started
    assert not css(browser, "[name=min_sentinel_accuracy]").is_enabled()
    set_field(browser, "instructions", INSTRUCTIONS)
    click(browser, "form#study-settings button[type=submit]")
    wait_until(browser, lambda d: d.current_url == study_url, what="back on the study page after saving")
    study.refresh_from_db()
    assert study.collection["instructions"] == INSTRUCTIONS


def _reject_one_worker(browser, stack, study) -> str:
    """Rejects the first worker in the table with REASON; returns its 16-character hash."""
    from training.services import accepted_judgments

    before = accepted_judgments(study_id=study.pk)
    _open_details(browser)
    hashes = wait_until(
        browser,
        lambda d: d.execute_script(
            "return [...document.querySelectorAll('section#workers tr[data-worker]')]"
            ".map(r => r.dataset.worker)"
        ),
        what="the workers table",
    )
    assert len(hashes) >= 2, "the simulated crowd shows up in the workers table"
    hash16 = hashes[0]
    assert re.fullmatch(r"[0-9a-f]{16}", hash16), hash16
    row = f"section#workers tr[data-worker='{hash16}']"
    reason = css(browser, f"{row} form.reject [name=reason]")
    reveal(browser, reason)
    reason.send_keys(REASON)
    click(browser, f"{row} form.reject button.reject")
    wait_until(
        browser,
        lambda d: text_of(d, f"{row} .review-status") == f"rejected: {REASON}",
        what="the rejected worker's status",
    )
    _open_details(browser)
    shoot(browser, stack, "08_workers_after_reject")
    assert accepted_judgments(study_id=study.pk) < before, "a rejected worker's judgments no longer count"
    return hash16


def _retrain_without_the_rejected(browser, stack, study) -> None:
    """After the rejection, "Retrain and evaluate now": the new model trains on exactly the accepted train
    judgments, which no longer hold the rejected worker's."""
    from django.db.models import Sum

    from training.models import ModelVersion

    def ready():
        return ModelVersion.objects.filter(study=study, status="ready").count()

    # a retrain the crowd started may still be running: let it end, so that the button starts a new one
    wait_reloading(
        browser,
        lambda b: ready() >= 1 and not ModelVersion.objects.filter(study=study, status="running").exists(),
        timeout=180,
        what=lambda: "the crowd's retrain to end:\n" + stack.log_tail(),
    )
    before = ready()
    click(browser, "button#action-evaluate")
    wait_reloading(
        browser,
        lambda b: ready() > before,
        timeout=180,
        what=lambda: "the retrain after the rejection\n" + stack.log_tail(),
    )
    latest = ModelVersion.objects.filter(study=study, status="ready").latest("version")
    counted = study.items.filter(role="test", split="train").aggregate(n=Sum("n_judgments"))["n"]
    assert latest.n_train_judgments == counted, (latest.n_train_judgments, counted)


def _export_and_check(browser, stack, rejected: str) -> None:
    click(browser, "button#export-create")
    shown, href = wait_until(
        browser,
        lambda d: d.execute_script(
            "const li = document.querySelector('section#exports li.export[data-status=done]');"
            " if (!li) return null;"
            " const code = li.querySelector('code.sha256'), a = li.querySelector('a.export-download');"
            " return [code ? code.textContent.trim() : '', a ? a.href : ''];"
        ),
        timeout=120,
        what=lambda: "a finished export:\n" + stack.log_tail(),
    )
    assert re.fullmatch(r"[0-9a-f]{64}", shown), shown
    data = download(browser, href)
    assert sha256(data) == shown, "the downloaded export is the one the page names"
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = zf.namelist()
        for member in ("export.json", "items.jsonl", "judgments.jsonl", "assignments.jsonl"):
            assert member in names, member
        for part in ("ref", "p0", "p1"):
            assert any(re.fullmatch(rf"2afc/(train|val)/[^/]+/{part}/[^/]+\.png", n) for n in names), part
        assert any(re.fullmatch(r"2afc/(train|val)/[^/]+/judge/[^/]+\.npy", n) for n in names)
        judgments = [json.loads(line) for line in zf.read("judgments.jsonl").decode().splitlines()]
        items = [json.loads(line) for line in zf.read("items.jsonl").decode().splitlines()]
        assignments = [json.loads(line) for line in zf.read("assignments.jsonl").decode().splitlines()]
        summary = json.loads(zf.read("export.json"))
    assert judgments and items
    # The judgment log keeps every row with its flags (as for QC-excluded HITs); the rejected worker's rows
    # are excluded and count nowhere: not in the votes of the BAPPS tree, not in the export's counts.
    theirs = [j for j in judgments if j["worker"].startswith(rejected)]
    assert theirs and all(j["excluded"] and not j["counted"] for j in theirs), theirs[:2]
    assert {a["status"] for a in assignments if a["worker"].startswith(rejected)} == {"rejected"}
    counted = [j for j in judgments if j["counted"]]
    assert counted and not [j for j in counted if j["worker"].startswith(rejected)]
    assert summary["n_counted_judgments"] == len(counted), summary
    shoot(browser, stack, "09_exports")


def _model_download_and_card(browser, stack, tmp_path) -> None:
    import torch

    from metric.bundle import load_bundle

    href = wait_reloading(
        browser,
        lambda b: b.execute_script(
            "const a = document.querySelector('section#models a.model-download'); return a && a.href"
        ),
        timeout=180,
        what=lambda: "a trained model:\n" + stack.log_tail(),
    )
    archive = tmp_path / "model.zip"
    archive.write_bytes(download(browser, href))
    model = load_bundle(archive, allow_download=False).eval()
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        assert float(model(x, x).flatten()[0]) == pytest.approx(0.0, abs=1e-6)
        assert float(model(x, -x).flatten()[0]) > 0
    click(browser, "section#models a.model-card")
    wait_until(browser, lambda d: "/dashboard/models/" in d.current_url, what="the model card")
    assert "squeeze" in css(browser, "main").text.lower()
    shoot(browser, stack, "10_model_card")


def _token_page(browser, stack) -> None:
    browser.get(f"{stack.url}/accounts/token/")
    if css_all(browser, "button#token-create"):
        click(browser, "button#token-create")
    key = wait_until(
        browser,
        lambda d: d.execute_script(
            "const e = document.getElementById('api-token'); return e && e.value.trim()"
        ),
        what="the API token",
    )
    shoot(browser, stack, "11_api_token")
    headers = {"Authorization": f"Token {key}"}
    request = urllib.request.Request(f"{stack.url}/api/v1/studies/", headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
        assert "Lifecycle study (browser test)" in response.read().decode()


def test_it_runs_a_study_from_the_form_to_the_model_download(
    researcher_stack,  # noqa: F811
    browser,
    researcher_carol,
    tmp_path,
):
    from crowdsim.services import simulation_study_prepare
    from crowdsim.simulation import run_crowd
    from studies.models import Study

    stack = researcher_stack
    login(browser, stack.url)
    click(browser, "a#new-study")
    wait_until(browser, present("form#new-study"), what="the new-study form")
    wait_until(browser, lambda d: _preview(d), what="the first preview")
    shift = browser.execute_async_script(LAYOUT_SHIFT)
    if shift >= 0.1:
        stack.problems.append(f"new study: the page moved while the first preview loaded (CLS {shift:.3f})")
    _fill_new_study(browser)
    _change_the_distortions(browser)
    samples = wait_until(
        browser,
        lambda d: (lambda s: s if _only_the_chosen_distortion(s) else False)(_preview(d)),
        timeout=20,
        what=f"a preview of {ONLY} only at severity {SEVERITY}",
    )
    assert all(i["png"] and i["loaded"] and i["sized"] for s in samples for i in s["images"]), samples
    assert css(browser, "#preview").get_attribute("aria-live") == "polite"
    shoot(browser, stack, "02_new_study_preview")

    click(browser, "button#create-study")
    wait_until(browser, lambda d: re.search(rf"/dashboard/{UUID}/$", d.current_url), what="the study page")
    study_url = browser.current_url
    study = Study.objects.get(pk=re.search(UUID, study_url).group(0))
    assert study.owner == researcher_carol and study.kind == "2afc"
    assert study.collection["hit_size"] == 8
    assert study.collection["judgments_per_item"] == {"train": 2, "val": 2}
    assert study.collection["training"]["every"] == 30
    assert study.collection["training"]["backbones"] == [{"net": "squeeze", "weights": "random"}]
    # the worker is not running yet: the page should show the queued build (checked softly, so that the rest
    # of the lifecycle still runs; the test fails at the end with every such problem)
    polling = bool(css_all(browser, "div#build progress#build-progress"))
    if not polling:
        stack.problems.append(
            f"study page right after submit (build queued, worker not started): no progress#build-progress "
            f"and nothing polls, so the page would not update when the build ends; "
            f"status {_status(browser)!r}, build panel {text_of(browser, 'div#build')!r}"
        )
    shoot(browser, stack, "03_study_building")

    stack.start_worker()

    def built(b) -> bool:
        return "24 test items" in text_of(b, "#build-items")

    log = lambda: "the built study:\n" + stack.log_tail()  # noqa: E731
    if polling:  # the page follows the build on its own and reloads when it ends
        wait_until(browser, built, timeout=120, what=log)
    else:
        wait_reloading(browser, built, timeout=120, what=log)
    study.refresh_from_db()
    assert study.items.filter(role="test").count() == 24
    ops = {
        op["name"]
        for item in study.items.filter(role="test")
        for side in ("p0", "p1")
        for op in item.records[side]["ops"]
    }
    assert ops == {ONLY}, ops
    if "active" in _status(browser):  # built studies may start at once: pause, then start again
        click(browser, "button#action-pause")
        wait_text(browser, "#study-status", lambda t: "paused" in t.lower(), what="the paused study")
    click(browser, "button#action-start")
    wait_text(browser, "#study-status", lambda t: "active" in t.lower(), what="the active study")
    for share in ("#share-anonymous", "#share-prolific", "#share-mturk"):
        element = css(browser, share)
        url = element.get_attribute("value") or element.text
        assert f"/s/{study.pk}/" in url, (share, url)
    shoot(browser, stack, "04_study_active")
    _try_page_and_settings(browser, stack, study_url, study)

    # the simulated crowd (manage.py simulate_crowd --mark) through the annotator API of the live server
    simulation_study_prepare(study_id=str(study.pk), mark=True)
    crowd = run_crowd(
        base_url=stack.url,
        study_id=str(study.pk),
        n_workers=10,
        spammers=0.0,
        lapse=0.0,
        concurrency=2,
        max_hits=1,
        seed=1,
    )
    assert crowd.assignments >= 6 and crowd.judgments >= 48, crowd
    browser.get(study_url)
    shoot(browser, stack, "05_study_with_judgments")
    rejected = _reject_one_worker(browser, stack, study)
    _retrain_without_the_rejected(browser, stack, study)
    _export_and_check(browser, stack, rejected)
    _model_download_and_card(browser, stack, tmp_path)
    _token_page(browser, stack)

    browser.get(f"{stack.url}/dashboard/")
    assert "Lifecycle study (browser test)" in css(browser, "table#studies").text
    shoot(browser, stack, "01_studies_list")
    assert not stack.problems, "\n".join(stack.problems)
