"""Headless Debian chromium against the live server."""

from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


@pytest.fixture
def browser(chromium_paths):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = chromium_paths
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--window-size=1200,900"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def test_home_and_study_preview_render_real_patches(live_server, browser, researcher_carol, settings):
    from studies.services import demo_study_ensure

    study, _ = demo_study_ensure(owner=researcher_carol, n_items=5)
    browser.get(live_server.url + "/")
    assert "Perceptual-similarity studies" in browser.page_source
    link = browser.find_element("link text", study.name)
    link.click()
    images = browser.find_elements("css selector", "figure.triplet img")
    assert len(images) == 12  # 4 practice triplets
    sizes = [browser.execute_script("return [arguments[0].complete, arguments[0].naturalWidth]", im) for im in images]
    assert all(done and width == 64 for done, width in sizes), sizes
    rendering = browser.execute_script("return getComputedStyle(arguments[0]).imageRendering", images[0])
    assert rendering == "pixelated"
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "study_preview.png"))
    assert (ARTIFACTS / "study_preview.png").stat().st_size > 1000
