"""A study's collection settings page (/dashboard/<id>/settings/) and the rule behind it and the API's PATCH
(studies.lifecycle.study_update_config): safe settings change mid-study, the ones that would make earlier
and later judgments incomparable are locked (409 naming the field and why), judgments per item only rise."""

import re

import pytest
from rest_framework.test import APIClient

from studies.models import Study

pytestmark = pytest.mark.django_db


def _posted(study, **changes) -> dict:
    """What a browser posts for the untouched settings form (disabled fields are not sent), changed."""
    from dashboard.study_new import _settings_form

    data = {}
    for field in _settings_form(study):
        value = field.value()
        if field.field.disabled or value is None or value is False:
            continue
        data[field.name] = "on" if value is True else value
    return {**data, **changes}


def _api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def draft(make_study, researcher_carol):
    return make_study(kind="jnd", owner=researcher_carol, n_test=4, n_sentinels=2, n_practice=0, active=False)


@pytest.fixture
def running(make_study, researcher_carol):
    return make_study(kind="jnd", owner=researcher_carol, n_test=4, n_sentinels=2, n_practice=0)


def test_it_is_the_owners_only(client, running, researcher_dave):
    r = client.get(f"/dashboard/{running.pk}/settings/")
    assert r.status_code == 302 and r["Location"].startswith("/accounts/login/")
    client.force_login(researcher_dave)
    assert client.get(f"/dashboard/{running.pk}/settings/").status_code == 404
    assert client.post(f"/dashboard/{running.pk}/settings/", {"hit_size": "3"}).status_code == 404
    assert Study.objects.get(pk=running.pk).config == running.config


def test_a_draft_shows_every_setting_unlocked(client, draft, researcher_carol):
    client.force_login(researcher_carol)
    html = client.get(f"/dashboard/{draft.pk}/settings/").content.decode()
    # (adfix) only pool_factor is locked: the draft's stimuli exist, so any pool was built with them
    assert 'id="study-settings"' in html and html.count("disabled") == 1 and html.count("Locked:") == 1
    assert re.search(r'disabled[^>]*id="id_pool_factor"', html)
    assert re.search(r'name="ref_ms" value="1000"', html) and 'name="hit_size" value="160"' in html
    r = client.post(
        f"/dashboard/{draft.pk}/settings/", _posted(draft, ref_ms="400", min_sentinel_accuracy="0.5")
    )
    assert r.status_code == 302 and r["Location"] == f"/dashboard/{draft.pk}/"
    c = Study.objects.get(pk=draft.pk).collection
    assert c["timing"]["ref_ms"] == 400 and c["exclusion"]["min_sentinel_accuracy"] == 0.5


def test_a_2afc_study_has_no_timing_fields(client, make_study, researcher_carol):
    study = make_study(owner=researcher_carol, n_test=2, n_sentinels=1, n_practice=0, active=False)
    client.force_login(researcher_carol)
    html = client.get(f"/dashboard/{study.pk}/settings/").content.decode()
    assert 'name="ref_ms"' not in html and 'name="hit_size" value="85"' in html


def test_a_running_study_locks_timing_and_exclusion_and_says_why(client, running, researcher_carol):
    client.force_login(researcher_carol)
    html = client.get(f"/dashboard/{running.pk}/settings/").content.decode()
    for name in ("ref_ms", "gap_ms", "distorted_ms", "min_sentinel_accuracy", "max_side_bias"):
        block = re.search(rf'<div class="field[^"]*" id="field-{name}">.*?</div>', html, re.S).group(0)
        assert re.search(r"<input[^>]* disabled", block) and "Locked:" in block, name
    assert "stimulus presentation" in html and "QC was decided under the old rule" in html
    assert "may only rise" in html
    for name in ("hit_size", "sentinel_rate", "consent_text", "instructions", "platforms", "training_every"):
        block = re.search(rf'<div class="field[^"]*" id="field-{name}">.*?</div>', html, re.S).group(0)
        assert " disabled" not in block and "Locked:" not in block, name


def test_safe_settings_change_mid_study_and_locked_ones_do_not(client, running, researcher_carol):
    client.force_login(researcher_carol)
    r = client.post(
        f"/dashboard/{running.pk}/settings/",
        _posted(running, hit_size="12", consent_text="New consent", instructions="Look closely",
                sentinel_rate="0.1", jpi_val="4", platforms=["prolific"], training_every="50",
                ref_ms="1", min_sentinel_accuracy="0"),  # the last two are disabled: ignored
    )  # fmt: skip
    assert r.status_code == 302
    c = Study.objects.get(pk=running.pk).collection
    assert (c["hit_size"], c["consent_text"], c["instructions"], c["sentinel_rate"]) == (
        12, "New consent", "Look closely", 0.1,
    )  # fmt: skip
    assert (
        c["judgments_per_item"]["val"] == 4
        and c["platforms"] == ["prolific"]
        and c["training"]["every"] == 50
    )
    assert c["timing"]["ref_ms"] == 1000 and c["exclusion"]["min_sentinel_accuracy"] == 0.75


def test_lowering_judgments_per_item_mid_study_is_refused_on_the_field(client, running, researcher_carol):
    client.force_login(researcher_carol)
    r = client.post(f"/dashboard/{running.pk}/settings/", _posted(running, jpi_train="1"))
    html = r.content.decode()
    assert r.status_code == 409
    block = re.search(r'<div class="field has-error[^"]*" id="field-jpi_train">.*?</div>', html, re.S).group(
        0
    )
    assert "cannot go below 3" in block
    assert Study.objects.get(pk=running.pk).config == running.config


def test_a_bad_value_gets_the_apis_message_inline(client, running, researcher_carol):
    client.force_login(researcher_carol)
    r = client.post(f"/dashboard/{running.pk}/settings/", _posted(running, hit_size="0"))
    assert r.status_code == 400 and "hit_size must be an integer in 1..2000" in r.content.decode()


def test_nothing_changed_changes_nothing(client, running, researcher_carol):
    client.force_login(researcher_carol)
    assert client.post(f"/dashboard/{running.pk}/settings/", _posted(running)).status_code == 302
    assert Study.objects.get(pk=running.pk).config == running.config


# --- the API's door: the same rule ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "config, field",
    [
        ({"timing": {"ref_ms": 500, "gap_ms": 250, "distorted_ms": 1000}}, "config.timing"),
        ({"exclusion": {"min_sentinel_accuracy": 0.2}}, "config.exclusion"),
        ({"judgments_per_item": {"train": 2, "val": 3}}, "config.judgments_per_item"),
    ],
)
def test_the_api_refuses_incomparable_changes_mid_study(running, researcher_carol, config, field):
    r = _api(researcher_carol).patch(f"/api/v1/studies/{running.pk}/", {"config": config}, format="json")
    assert r.status_code == 409 and r.json()["extra"]["field"] == field, r.json()
    assert r.json()["message"].split()[0].split("[")[0] == field.removeprefix("config.")
    assert Study.objects.get(pk=running.pk).config == running.config


def test_the_api_changes_safe_settings_and_raises_judgments_mid_study(running, researcher_carol):
    config = {"hit_size": 10, "judgments_per_item": {"train": 4, "val": 5}, "consent_text": "ok"}
    r = _api(researcher_carol).patch(f"/api/v1/studies/{running.pk}/", {"config": config}, format="json")
    assert r.status_code == 200 and r.json()["config"]["judgments_per_item"] == {"train": 4, "val": 5}


def test_before_the_start_everything_may_change(draft, researcher_carol):
    config = {"timing": {"ref_ms": 500, "gap_ms": 0, "distorted_ms": 500}, "judgments_per_item": {"train": 1}}
    r = _api(researcher_carol).patch(f"/api/v1/studies/{draft.pk}/", {"config": config}, format="json")
    assert r.status_code == 200, r.json()


def test_simulation_locks_with_the_first_judgment(make_study, researcher_carol, answer_trials):
    from judgments.assignments import assignment_start

    study = make_study(owner=researcher_carol, n_test=4, n_sentinels=1, n_practice=0)
    api = _api(researcher_carol)
    r = api.patch(f"/api/v1/studies/{study.pk}/", {"config": {"simulation": True}}, format="json")
    assert r.status_code == 200  # opened, unanswered: crowdsim's --mark may still make it a simulation
    api.patch(f"/api/v1/studies/{study.pk}/", {"config": {"simulation": False}}, format="json")
    answer_trials(
        assignment_start(study=study, platform="anonymous", worker_id="w").assignment, lambda t, i: "p0"
    )
    r = api.patch(f"/api/v1/studies/{study.pk}/", {"config": {"simulation": True}}, format="json")
    assert r.status_code == 409 and r.json()["extra"]["field"] == "config.simulation"


@pytest.mark.parametrize(
    "changes",
    [
        {"hit_size": "9" * 40},
        {"platforms": ["prolific", "evil"]},
        {"backbones": ["alex:/etc/passwd"]},
        {"consent_text": "a\x00b"},
        {"sentinel_rate": "nan"},
        {"training_every": "-5"},
    ],
)
def test_hostile_values_get_a_message_and_change_nothing(client, running, researcher_carol, changes):
    client.force_login(researcher_carol)
    r = client.post(f"/dashboard/{running.pk}/settings/", _posted(running, **changes))
    assert r.status_code == 400 and 'class="errorlist"' in r.content.decode()
    assert Study.objects.get(pk=running.pk).config == running.config
