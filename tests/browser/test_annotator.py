"""Real headless chromium through the annotator flow and the dashboard (Debian's chromium package)."""

import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


def wait(browser, condition, timeout=30, what="condition"):
    end = time.time() + timeout
    while time.time() < end:
        value = browser.execute_script(condition)
        if value:
            return value
        time.sleep(0.05)
    details = browser.execute_script(
        "return [document.body.dataset.screen, (document.getElementById('status') || {}).textContent,"
        " (document.getElementById('error-message') || {}).textContent, document.title]"
    )
    raise AssertionError(f"timed out waiting for {what}; screen, status, error = {details}")


def screen(browser):
    return browser.execute_script("return document.body.dataset.screen")


def click(browser, element_id):
    browser.find_element("id", element_id).click()


def consent_and_start(browser, url):
    browser.get(url)
    wait(browser, "return document.body.dataset.screen === 'landing'", what="landing")
    click(browser, "btn-begin")
    browser.find_element("id", "consent-check").click()
    click(browser, "btn-consent")
    wait(browser, "return document.body.dataset.screen === 'instructions'", what="instructions")
    if browser.execute_script("return !!document.querySelector('#screen-instructions figure')"):
        shown = browser.execute_script(
            "return !document.getElementById('example').hidden && "
            "[...document.querySelectorAll('#example img')].every(i => i.src)"
        )
        assert shown, "the instructions show an example"
    click(browser, "btn-start")


def answer_trials(browser, keys, *, stop_after=None):
    """Answer trials with the keyboard until done (or after `stop_after` answers). Returns answers given."""
    from selenium.webdriver.common.action_chains import ActionChains

    given, last = 0, None
    while stop_after is None or given < stop_after:
        state = wait(
            browser,
            """
            const s = document.body.dataset.screen;
            if (s === 'done' || s === 'error' || s === 'practice-done') return s;
            if (s === 'trial' && document.body.dataset.ready && \
document.body.dataset.ready !== arguments[0]) return 'ready';
            return null;""".replace("arguments[0]", repr(last or "")),
            timeout=60,
            what="a trial",
        )
        if state == "practice-done":
            click(browser, "btn-trials")
            continue
        if state in ("done", "error"):
            return given, state
        last = browser.execute_script("return document.body.dataset.ready")
        ActionChains(browser).send_keys(keys[given % len(keys)]).perform()
        given += 1
    return given, screen(browser)


def test_a_full_2afc_hit_with_a_reload_mid_way(live_server, browser, settings):
    from selenium.webdriver.common.keys import Keys

    from judgments.models import Assignment, Judgment
    from studies.services import demo_study_ensure

    study, _ = demo_study_ensure(n_items=6)
    url = f"{live_server.url}/s/{study.pk}/"
    consent_and_start(browser, url)
    given, state = answer_trials(browser, [Keys.ARROW_LEFT, Keys.ARROW_RIGHT], stop_after=7)
    assert state == "trial"
    # every answer is acknowledged before we reload (the outbox drains in the background)
    wait(
        browser,
        "return JSON.parse(localStorage.getItem(Object.keys(localStorage).find(k => k.endsWith(':outbox'))) "
        "|| '[]').length === 0",
        what="the outbox to drain",
    )
    assert Judgment.objects.count() == 7
    browser.refresh()
    more, state = answer_trials(browser, [Keys.ARROW_RIGHT])
    assert state == "done", state
    assignment = Assignment.objects.get()
    assert assignment.status == "submitted" and assignment.n_answered == assignment.n_trials == given + more
    assert Judgment.objects.count() == assignment.n_trials  # nothing lost, nothing counted twice
    assert len(set(Judgment.objects.values_list("trial_id", flat=True))) == assignment.n_trials
    code = browser.find_element("id", "completion-code").text
    assert code == study.collection["completion_code"]
    j = Judgment.objects.filter(kind="test").first()
    assert 0 < j.rt_ms < 60_000 and j.display["refresh_hz"] and j.display["patch_css_px"] == 256
    # left/right as pressed map to p0/p1 through the server's side draw
    for j in Judgment.objects.select_related("trial"):
        assert j.choice == int((j.response == "right") != j.trial.swap)
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "annotator_done.png"))


OUTBOX = (
    "return JSON.parse(localStorage.getItem(Object.keys(localStorage).find(k => k.endsWith(':outbox'))) "
    "|| '[]')"
)


def test_answers_unsent_at_a_reload_are_sent_after_it_once_each(live_server, browser, settings):
    """The page batches answers (ANSWER_FLUSH_MS); here they wait a minute, so a reload finds them unsent in
    localStorage only. The reloaded page sends them at once, and the HIT ends with each stored once."""
    from selenium.webdriver.common.keys import Keys

    from judgments.models import Assignment, Judgment
    from studies.services import demo_study_ensure

    settings.PERCEPTLAB_CROWD = {**settings.PERCEPTLAB_CROWD, "ANSWER_FLUSH_MS": 60000}
    study, _ = demo_study_ensure(n_items=6)
    consent_and_start(browser, f"{live_server.url}/s/{study.pk}/")
    given, state = answer_trials(browser, [Keys.ARROW_LEFT], stop_after=4)
    assert state == "trial"
    time.sleep(0.5)
    assert len(browser.execute_script(OUTBOX)) == 4 and not Judgment.objects.exists()  # none sent yet
    browser.refresh()
    wait(browser, OUTBOX + ".length === 0", what="the reloaded page to send the kept answers")
    assert Judgment.objects.count() == 4
    more, state = answer_trials(browser, [Keys.ARROW_RIGHT])
    assert state == "done", state  # the HIT's end sends the rest at once
    assignment = Assignment.objects.get()
    assert assignment.status == "submitted" and assignment.n_answered == assignment.n_trials == given + more
    assert Judgment.objects.count() == assignment.n_trials
    assert len(set(Judgment.objects.values_list("trial_id", flat=True))) == assignment.n_trials


def test_patches_are_shown_at_a_fixed_size_without_smoothing(live_server, browser):
    from studies.services import demo_study_ensure

    study, _ = demo_study_ensure(n_items=4)
    consent_and_start(browser, f"{live_server.url}/s/{study.pk}/")
    wait(browser, "return document.body.dataset.ready", what="a trial")
    info = browser.execute_script("""
        const im = document.getElementById('img-ref');
        const r = im.getBoundingClientRect();
        return [r.width, r.height, getComputedStyle(im).imageRendering, im.naturalWidth];""")
    assert info[0] == info[1] == 256 and info[2] == "pixelated" and info[3] == 64
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "annotator_2afc_trial.png"))


def test_a_full_jnd_hit_records_measured_flash_durations(live_server, browser, make_study):
    from judgments.models import Assignment, Judgment

    study = make_study(
        kind="jnd",
        n_test=4,
        n_sentinels=2,
        n_practice=2,
        config={"timing": {"ref_ms": 300, "gap_ms": 100, "distorted_ms": 300}},
    )
    consent_and_start(browser, f"{live_server.url}/s/{study.pk}/")
    given, state = answer_trials(browser, ["s", "d", "d"])
    assert state == "done"
    assignment = Assignment.objects.get()
    assert assignment.status == "submitted" and assignment.n_answered == given == assignment.n_trials
    for j in Judgment.objects.all():
        assert set(j.durations) == {"ref_ms", "gap_ms", "distorted_ms"}
        assert abs(j.durations["ref_ms"] - 300) < 60 and abs(j.durations["gap_ms"] - 100) < 60
        assert j.response in ("same", "different") and j.presented_left == "p0"


def test_the_dashboard_renders_its_charts(live_server, browser, researcher_carol, make_study, answer_trials):
    from judgments.assignments import assignment_start
    from judgments.qc import assignment_submit
    from training.services import study_retrain

    study = make_study(
        owner=researcher_carol,
        n_test=24,
        n_sentinels=3,
        n_practice=0,
        categories=("traditional", "cnn"),
        config={
            "hit_size": 24,
            "training": {
                "every": None,
                "backbones": [{"net": "alex", "weights": "random"}],
                "baselines": ["l2_lab", "psnr"],
                "official_lpips": False,
                "n_boot": 50,
                "min_steps": 50,
            },
        },
    )
    for w in range(5):
        a = assignment_start(study=study, platform="anonymous", worker_id=f"w{w}").assignment
        answer_trials(a, lambda t, i, w=w: i.expected or ("p0" if (i.index + w) % 3 else "p1"))
        assignment_submit(token=a.token)
    study_retrain(study=study)
    browser.get(live_server.url + "/accounts/login/?next=/dashboard/")
    browser.find_element("id", "id_username").send_keys("carol")
    browser.find_element("id", "id_password").send_keys("carol-pass-123")
    browser.find_element("id", "login-submit").click()
    wait(browser, "return location.pathname === '/dashboard/'", what="the dashboard")
    browser.find_element("link text", study.name).click()
    wait(browser, "return document.querySelectorAll('svg.chart').length >= 5", what="charts")
    kinds = browser.execute_script(
        "return [...document.querySelectorAll('svg.chart')].map(s => s.classList[1])"
    )
    assert {"bars", "columns", "hist", "scores", "lines"} <= set(kinds)
    assert browser.execute_script("return document.querySelectorAll('svg.scores rect').length") >= 8
    text = browser.find_element("tag name", "main").text
    assert "Metrics vs humans" in text and "trained alex-random lin" in browser.page_source
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "dashboard.png"))
    browser.set_window_size(1200, 3000)
    browser.save_screenshot(str(ARTIFACTS / "dashboard_full.png"))
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000


def test_platform_ids_leave_the_address_bar_and_a_reload_still_resumes(live_server, browser, make_study):
    """PROLIFIC_PID arrives in the address; the page keeps it for the tab and takes it out of the address
    (history, bookmarks, screenshots). A reload of the clean address resumes the same Prolific assignment."""
    from judgments.models import Assignment

    study = make_study(n_test=4, n_sentinels=1, n_practice=1)
    consent_and_start(
        browser, f"{live_server.url}/s/{study.pk}/?PROLIFIC_PID=PIDSECRET42&STUDY_ID=ST1&SESSION_ID=SE1"
    )
    wait(browser, "return document.body.dataset.ready", what="a trial")
    assert browser.execute_script("return window.location.search") == ""
    assert "PIDSECRET42" not in browser.current_url
    token = Assignment.objects.get().token
    browser.refresh()
    wait(
        browser,
        "return ['trial', 'instructions'].includes(document.body.dataset.screen)",
        what="the resumed HIT",
    )
    assert Assignment.objects.get().token == token and Assignment.objects.get().platform == "prolific"
    assert "PIDSECRET42" not in browser.current_url


def test_a_first_lease_that_ran_out_on_the_instructions_screen_starts_again(live_server, browser, make_study):
    """The first lease is short (minutes, until the first answer); an annotator who read the instructions
    for longer gets a fresh HIT when pressing start instead of an error."""
    from datetime import timedelta

    from django.utils import timezone
    from selenium.webdriver.common.keys import Keys

    from judgments.models import Assignment

    study = make_study(
        n_test=6, n_sentinels=1, n_practice=0, config={"hit_size": 3}
    )  # a worker never sees an item twice
    browser.get(f"{live_server.url}/s/{study.pk}/")
    wait(browser, "return document.body.dataset.screen === 'landing'", what="landing")
    click(browser, "btn-begin")
    browser.find_element("id", "consent-check").click()
    click(browser, "btn-consent")
    wait(browser, "return document.body.dataset.screen === 'instructions'", what="instructions")
    first = Assignment.objects.get()
    Assignment.objects.filter(pk=first.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    click(browser, "btn-start")
    given, state = answer_trials(browser, [Keys.ARROW_LEFT])
    assert state == "done", browser.execute_script(
        "return document.getElementById('error-message').textContent"
    )
    fresh = Assignment.objects.exclude(pk=first.pk).get()
    assert fresh.status == "submitted" and fresh.n_answered == given == fresh.n_trials
    assert Assignment.objects.get(pk=first.pk).status == "expired"
