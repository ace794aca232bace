"""Headless Debian chromium against the live server: home page, landing page, no external assets."""

from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


def test_home_links_to_the_annotator_landing_page_with_only_local_assets(
    live_server, browser, researcher_carol
):
    from studies.services import demo_study_ensure

    study, _ = demo_study_ensure(owner=researcher_carol, n_items=5)
    browser.get(live_server.url + "/")
    assert "Perceptual-similarity studies" in browser.page_source
    browser.find_element("link text", study.name).click()
    assert browser.find_element("id", "landing-title").text == "Which image is closer?"  # not the name
    assert browser.find_element("id", "btn-begin").is_enabled()
    urls = browser.execute_script("""
        return [...document.querySelectorAll('script[src], link[href], img[src]')]
               .map(e => e.src || e.href).filter(u => u && !u.startsWith('data:'));""")
    assert urls and all(u.startswith(live_server.url) for u in urls), urls  # no CDN
    # the page's own resources loaded (the stylesheet applies, the script ran)
    assert browser.execute_script("return document.body.dataset.screen") == "landing"
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "annotator_landing.png"))


def test_the_api_docs_load_without_a_cdn(live_server, browser):
    browser.get(live_server.url + "/api/docs/")
    urls = browser.execute_script(
        "return [...document.querySelectorAll('script[src], link[href]')].map(e => e.src || e.href)"
    )
    assert urls and all(u.startswith(live_server.url) for u in urls), urls
