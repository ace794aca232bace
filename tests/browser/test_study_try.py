"""Headless chromium: the study page's copy button, then "try it as an annotator" through a whole preview HIT
on the real annotator page, recording nothing."""

from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


def test_a_researcher_tries_a_draft_study_as_an_annotator_and_nothing_is_recorded(
    live_server, browser, make_study, researcher_carol
):
    from django.apps import apps
    from selenium.webdriver.common.keys import Keys

    from tests.browser.test_annotator import answer_trials, consent_and_start, wait

    study = make_study(owner=researcher_carol, n_test=5, n_sentinels=2, n_practice=1, active=False)
    models = list(apps.get_app_config("judgments").get_models())
    before = {m.__name__: m.objects.count() for m in models}
    browser.get(live_server.url + "/accounts/login/?next=/dashboard/")
    browser.find_element("id", "id_username").send_keys("carol")
    browser.find_element("id", "id_password").send_keys("carol-pass-123")
    browser.find_element("id", "login-submit").click()
    wait(browser, "return location.pathname === '/dashboard/'", what="the dashboard")
    browser.get(f"{live_server.url}/dashboard/{study.pk}/")
    assert browser.find_element("id", "study-status").text == "Draft"
    browser.find_element("css selector", 'button.copy[data-copy="share-anonymous"]').click()
    status = wait(
        browser,
        "return document.getElementById('share-anonymous-copied').textContent",
        what="the copy status",
    )
    assert status in ("Copied", "Selected: press Ctrl+C (⌘C) to copy"), status
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "study_page_draft.png"))
    try_url = browser.find_element("id", "try-annotator").get_attribute("href")
    consent_and_start(browser, try_url)
    assert browser.find_element("id", "preview-banner").is_displayed()
    assert browser.execute_script("return document.body.dataset.preview") == "1"
    browser.save_screenshot(str(ARTIFACTS / "study_try_banner.png"))
    given, state = answer_trials(browser, [Keys.ARROW_LEFT, Keys.ARROW_RIGHT])
    assert state == "done", state
    assert given == 1 + 5 + 1  # practice, the 5 tests, the one sentinel a 5-test HIT gets
    assert browser.find_element("id", "done-title").text == "Preview finished"
    assert "Nothing was recorded" in browser.find_element("id", "done-message").text
    assert browser.find_element("id", "completion-code").text == study.collection["completion_code"]
    keys = browser.execute_script("return [...Object.keys(localStorage), ...Object.keys(sessionStorage)]")
    assert not [k for k in keys if k.startswith("perceptlab")], keys
    sent = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name).filter(u => u.includes('/api/v1/'))"
    )
    assert sent == [], sent  # no start, answer, heartbeat or submit request
    browser.save_screenshot(str(ARTIFACTS / "study_try_done.png"))
    assert {m.__name__: m.objects.count() for m in models} == before
