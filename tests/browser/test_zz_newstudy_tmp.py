import time
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

pytestmark = pytest.mark.django_db(transaction=True)


def _login(browser, live_server, user):
    from django.contrib.auth import get_user_model
    from django.test import Client
    c = Client(); c.force_login(user)
    browser.get(live_server.url + "/accounts/login/")
    browser.add_cookie({"name": "sessionid", "value": c.cookies["sessionid"].value, "path": "/"})


def test_page(browser, live_server, researcher_carol, make_study):
    browser.set_window_size(1280, 1000)
    _login(browser, live_server, researcher_carol)
    browser.get(live_server.url + "/dashboard/new/")
    wait = WebDriverWait(browser, 30)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#preview figure.preview-item")) == 4)
    browser.save_screenshot("/tmp/shots/new_2afc.png")
    cap0 = browser.find_element(By.CSS_SELECTOR, "#preview figcaption").text
    timing = browser.find_element(By.ID, "jnd-timing")
    assert not timing.is_displayed()
    hit = browser.find_element(By.ID, "id_hit_size")
    assert hit.get_attribute("value") == "85"
    browser.find_element(By.ID, "id_kind_1").click()
    wait.until(lambda d: "pairs" in d.find_element(By.ID, "preview").text)
    assert timing.is_displayed() and hit.get_attribute("value") == "160"
    browser.save_screenshot("/tmp/shots/new_jnd.png")
    browser.find_element(By.ID, "id_kind_0").click()
    ps = browser.find_element(By.ID, "id_patch_size")
    ps.clear(); ps.send_keys("1024")
    wait.until(lambda d: "No preview" in d.find_element(By.ID, "preview").text)
    browser.save_screenshot("/tmp/shots/new_invalid.png")
    ps.clear(); ps.send_keys("32")
    browser.find_element(By.ID, "id_source_1").click()
    assert not browser.find_element(By.ID, "engine-options").is_displayed()
    browser.find_element(By.ID, "id_source_0").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#preview figure.preview-item")) == 4)
    logs = browser.get_log("browser")
    open("/tmp/shots/logs.txt","w").write("\n".join(l["message"] for l in logs))
    browser.find_element(By.ID, "id_name").send_keys("my study")
    browser.find_element(By.ID, "create-study").click()
    wait.until(lambda d: "/new/" not in d.current_url)
    s = make_study(kind="jnd", owner=researcher_carol, n_test=2, n_sentinels=1, n_practice=0)
    browser.get(live_server.url + f"/dashboard/{s.pk}/settings/")
    browser.save_screenshot("/tmp/shots/settings.png")
    browser.execute_script("window.scrollTo(0, 600)")
    browser.save_screenshot("/tmp/shots/settings2.png")
