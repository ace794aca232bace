"""The study page for the lifecycle: status, build panel and its polled fragment, actions that apply, close
behind a confirmation, share links with copy buttons and how-tos, links to try, settings and import."""

import re

import pytest

from studies.models import Study

pytestmark = pytest.mark.django_db


@pytest.fixture
def carols_study(make_study, researcher_carol):
    return make_study(owner=researcher_carol, n_test=6, n_sentinels=2, n_practice=1)


def _page(client, study) -> str:
    r = client.get(f"/dashboard/{study.pk}/")
    assert r.status_code == 200
    return r.content.decode()


def _button(html: str, button_id: str) -> str:
    found = re.search(rf'<button[^>]*id="{button_id}"[^>]*>', html)
    assert found, button_id
    return found.group(0)


def _disabled(html: str, button_id: str) -> bool:
    return " disabled" in _button(html, button_id)


def test_it_shows_the_status_and_enables_only_the_actions_that_apply(client, carols_study, researcher_carol):
    client.force_login(researcher_carol)
    html = _page(client, carols_study)
    assert re.search(r'id="study-status"[^>]*>Active<', html)
    assert _disabled(html, "action-start") and not _disabled(html, "action-pause")
    assert not _disabled(html, "action-close") and _disabled(html, "action-evaluate")  # no judgments yet
    Study.objects.filter(pk=carols_study.pk).update(status=Study.Status.PAUSED)
    html = _page(client, carols_study)
    assert not _disabled(html, "action-start") and _disabled(html, "action-pause")
    assert "Start again" in _button(html, "action-start") or "Start again" in html


def test_close_sits_behind_a_confirmation_that_says_what_closing_means(
    client, carols_study, researcher_carol
):
    client.force_login(researcher_carol)
    html = _page(client, carols_study)
    details = re.search(r'<details[^>]*id="close-confirm".*?</details>', html, re.S).group(0)
    assert "<summary>" in details and 'id="action-close"' in details
    assert "final" in details and "never be started again" in details and "still finish and submit" in details
    r = client.post(f"/dashboard/{carols_study.pk}/close/", follow=True)
    carols_study.refresh_from_db()
    assert carols_study.status == Study.Status.CLOSED
    html = r.content.decode()
    assert re.search(r'id="study-status"[^>]*>Closed<', html) and "study is closed" in html
    assert _disabled(html, "action-start") and _disabled(html, "action-pause")
    assert 'id="action-close"' not in html  # nothing left to close
    r = client.post(f"/dashboard/{carols_study.pk}/start/", follow=True)
    assert "cannot be started again" in r.content.decode()
    carols_study.refresh_from_db()
    assert carols_study.status == Study.Status.CLOSED


def test_it_shares_three_links_with_copy_buttons_and_how_tos(client, carols_study, researcher_carol):
    client.force_login(researcher_carol)
    html = _page(client, carols_study)
    url = f"http://testserver/s/{carols_study.pk}/"
    for name in ("share-anonymous", "share-prolific", "share-mturk", "share-mturk-xml"):
        assert re.search(rf'<(input|textarea)[^>]*id="{name}"[^>]*readonly', html), name
        assert re.search(rf'<label for="{name}">', html), name
        assert re.search(rf'<button type="button" class="copy" data-copy="{name}"', html), name
    assert f'id="share-anonymous" type="text" readonly value="{url}"' in html
    assert (
        f'value="{url}?PROLIFIC_PID={{{{%PROLIFIC_PID%}}}}&amp;STUDY_ID={{{{%STUDY_ID%}}}}'
        f'&amp;SESSION_ID={{{{%SESSION_ID%}}}}"' in html
    )
    assert f"&lt;ExternalURL&gt;{url}&lt;/ExternalURL&gt;" in html and "&lt;FrameHeight&gt;0" in html
    code = carols_study.collection["completion_code"]
    assert html.count(code) >= 3
    assert "requestersandbox.mturk.com" in html and "Return submission" in html
    assert "only <strong>https</strong>" in html  # the test server is http: MTurk would not show it
    assert "js/copy.js" in html and "<script>" not in html


def test_a_platform_the_study_does_not_admit_is_named(client, make_study, researcher_carol):
    study = make_study(owner=researcher_carol, n_test=2, n_sentinels=0, config={"platforms": ["prolific"]})
    client.force_login(researcher_carol)
    html = _page(client, study)
    assert "admits no anonymous participants" in html and "admits no MTurk workers" in html
    assert "admits no Prolific participants" not in html


def test_it_links_to_try_settings_and_sections(client, carols_study, researcher_carol):
    client.force_login(researcher_carol)
    html = _page(client, carols_study)
    assert f'id="try-annotator" href="/dashboard/{carols_study.pk}/try/"' in html
    assert f'id="edit-settings" href="/dashboard/{carols_study.pk}/settings/"' in html
    nav = re.search(r'<nav class="local-nav".*?</nav>', html, re.S).group(0)
    for anchor in ("#run", "#share", "#progress", "#qc", "#agreement", "#models", "#exports"):
        assert f'href="{anchor}"' in nav
    for section in ("run", "share", "progress", "qc", "agreement"):
        assert f'<section id="{section}"' in html
    # a zip-source study (no engine config) may import more items
    assert f'id="import-zip" href="/dashboard/{carols_study.pk}/import/"' in html and "adds items" in html


def test_a_zip_study_without_items_links_to_the_import_page(client, researcher_carol):
    from studies.services import study_create

    study = study_create(name="zip", kind="2afc", build_config={}, owner=researcher_carol)
    client.force_login(researcher_carol)
    html = _page(client, study)
    assert f'id="import-zip" href="/dashboard/{study.pk}/import/"' in html
    assert "No items yet" in html and 'id="try-annotator"' not in html
    assert _disabled(html, "action-start")


def test_the_build_panel_shows_progress_and_polls_while_building(client, researcher_carol):
    from studies.services import study_create

    study = study_create(
        name="engine", kind="jnd", build_config={"n_items": 5, "seed": 1}, owner=researcher_carol
    )
    Study.objects.filter(pk=study.pk).update(
        status=Study.Status.BUILDING, build_progress={"done": 2, "total": 8}
    )
    client.force_login(researcher_carol)
    html = _page(client, study)
    build = re.search(r'<div id="build".*?</div>', html, re.S).group(0)
    assert f'hx-get="/dashboard/{study.pk}/build/"' in build and 'hx-trigger="every 2s"' in build
    assert re.search(r'<progress id="build-progress"[^>]*max="8" value="2"', build)
    assert "2 of 8 items (25&nbsp;%)" in build
    assert _disabled(html, "action-start") and _disabled(html, "action-close")
    fragment = client.get(f"/dashboard/{study.pk}/build/", HTTP_HX_REQUEST="true")
    assert fragment.status_code == 200 and "HX-Refresh" not in fragment
    assert fragment.content.decode().lstrip().startswith('<div id="build"')
    # the build ends: the next poll says so and asks the page to reload itself, and stops polling
    Study.objects.filter(pk=study.pk).update(status=Study.Status.ACTIVE)
    fragment = client.get(f"/dashboard/{study.pk}/build/", HTTP_HX_REQUEST="true")
    assert fragment["HX-Refresh"] == "true" and "hx-trigger" not in fragment.content.decode()


def test_the_build_panel_shows_an_indeterminate_bar_before_the_first_report(client, researcher_carol):
    from studies.services import study_create

    study = study_create(
        name="engine", kind="jnd", build_config={"n_items": 5, "seed": 1}, owner=researcher_carol
    )
    Study.objects.filter(pk=study.pk).update(status=Study.Status.BUILDING)
    client.force_login(researcher_carol)
    html = client.get(f"/dashboard/{study.pk}/build/").content.decode()
    assert re.search(r'<progress id="build-progress" aria-labelledby="build-label">', html)
    assert "waiting for the worker" in html


def test_the_build_panel_shows_the_failure_message(client, researcher_carol):
    from studies.services import study_create

    study = study_create(
        name="engine", kind="jnd", build_config={"n_items": 5, "seed": 1}, owner=researcher_carol
    )
    Study.objects.filter(pk=study.pk).update(status=Study.Status.FAILED, build_error="no source photos left")
    client.force_login(researcher_carol)
    html = _page(client, study)
    assert re.search(
        r'role="alert" id="build-error"><strong>The build failed.</strong> no source photos left', html
    )
    assert 'id="build-progress"' not in html


def test_the_build_fragment_is_the_owners_only(client, carols_study, researcher_dave):
    r = client.get(f"/dashboard/{carols_study.pk}/build/")
    assert r.status_code == 302 and r["Location"].startswith("/accounts/login/")
    client.force_login(researcher_dave)
    assert client.get(f"/dashboard/{carols_study.pk}/build/").status_code == 404
    assert client.post(f"/dashboard/{carols_study.pk}/close/").status_code == 404
    carols_study.refresh_from_db()
    assert carols_study.status == Study.Status.ACTIVE


def test_the_page_shows_no_raw_floats_or_dicts(client, carols_study, researcher_carol):
    client.force_login(researcher_carol)
    html = _page(client, carols_study)
    text = re.sub(r"<[^>]+>", " ", html)
    assert not re.findall(r"\d\.\d{2,}", text) and "{'" not in text and "&#x27;:" not in text
