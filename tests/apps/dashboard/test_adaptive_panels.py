"""Adaptive collection on the researcher's pages: the study page's panel (sampler, uniform share, pool,
adaptive vs uniform judgments, stopping), the learning curve per sampler, and the form fields."""

import re

import pytest

from dashboard.forms import StudyNewForm
from studies.collection import COMMON
from studies.models import Item, Study
from training.models import Evaluation, ModelVersion

pytestmark = pytest.mark.django_db


def _pool_study(make_study, owner, **config):
    study = make_study(
        owner=owner,
        n_test=12,
        n_sentinels=2,
        n_practice=0,
        val_fraction=0.5,
        config={
            "hit_size": 3,
            "sampling": {"sampler": "disagreement", "uniform_share": 0.25},
            "judgments_per_item": {"train": [1, 3], "val": 1},
            **config,
        },
    )
    Item.objects.filter(study=study, role="test", split="train").update(active=False)
    Study.objects.filter(pk=study.pk).update(train_budget=4)
    study.refresh_from_db()
    return study


def test_the_study_page_shows_the_sampler_pool_and_adaptive_share(
    client, make_study, researcher_carol, crowd, truthful
):
    study = _pool_study(make_study, researcher_carol)
    crowd(study, 2, truthful)  # releases uniformly (no scores yet)
    Item.objects.filter(study=study, role="test", split="train", active=False).update(score=0.5)
    Item.objects.filter(study=study, split="train", role="test", active=True, n_judgments=0).update(
        sampler_version="disagreement@1"
    )
    crowd(study, 6, truthful, prefix="more-")
    client.force_login(researcher_carol)
    html = client.get(f"/dashboard/{study.pk}/").content.decode()
    section = re.search(r'<section id="sampling".*?</section>', html, re.S).group(0)
    assert "Sampler: <strong>disagreement</strong>, with 25.0\u00a0% of its draws uniform" in section
    assert "candidate pool: <strong>6</strong> train items, 4 released of a budget of 4" in section
    from dashboard.selectors import sampling_panel

    panel = sampling_panel(study=study)
    versions = dict(panel["by_version"])
    assert set(versions) == {"uniform@1", "disagreement@1"} and sum(versions.values()) == panel["judgments"]
    assert panel["adaptive_share"] == pytest.approx(versions["disagreement@1"] / panel["judgments"])
    assert f"disagreement@1 {versions['disagreement@1']}" in section
    assert "Bayesian stopping: 1 to 3 judgments per train item" in section
    assert f"{panel['stopping']['budget_left']} left in the budget" in section


def test_a_plain_study_says_it_has_no_pool(client, make_study, researcher_carol):
    study = make_study(owner=researcher_carol, n_test=4)
    client.force_login(researcher_carol)
    html = client.get(f"/dashboard/{study.pk}/").content.decode()
    section = re.search(r'<section id="sampling".*?</section>', html, re.S).group(0)
    assert "Sampler: <strong>uniform</strong> · no candidate pool" in " ".join(section.split())
    assert "Bayesian stopping" not in section


def test_the_learning_curve_splits_by_sampler_when_a_study_ran_several(make_study, researcher_carol):
    import uuid

    from dashboard.selectors import _learning_curve_chart

    study = make_study(owner=researcher_carol, n_test=4)
    for n, sampler in enumerate(["uniform", "uniform", "disagreement"]):
        version = ModelVersion.objects.create(
            study=study, backbone="alex", weights="random", version=n + 1, train_info={"sampler": sampler}
        )
        Evaluation.objects.create(
            study=study, model_version=version, run=uuid.uuid4(), metric="trained alex-random lin",
            kind="trained", measure="2afc", split="val", category="all", score=0.6 + n / 20,
            n_items=4, n_judgments=10 * (n + 1),
        )  # fmt: skip
    _, svg = _learning_curve_chart(study, "val", {})
    assert "trained alex-random lin (uniform)" in svg and "trained alex-random lin (disagreement)" in svg
    ModelVersion.objects.filter(study=study).update(train_info={"sampler": "uniform"})
    _, svg = _learning_curve_chart(study, "val", {})
    assert "(uniform)" not in svg


def test_the_form_shows_sampling_and_stopping_defaults_from_the_collection(researcher_carol):
    form = StudyNewForm(owner=researcher_carol)
    assert form["sampler"].value() == COMMON["sampling"]["sampler"]
    assert form["pool_factor"].value() == COMMON["sampling"]["pool_factor"]
    assert form["uniform_share"].value() == COMMON["sampling"]["uniform_share"]
    assert form["stopping_confidence"].value() == COMMON["stopping"]["confidence"]
    assert form["jpi_train_max"].value() is None
    for name in ("sampler", "pool_factor", "uniform_share", "stopping_confidence", "stopping_tie_width"):
        assert form.fields[name].help_text


def _post(client, owner, **changes):
    from tests.apps.dashboard.test_study_new import _as_posted

    return client.post("/dashboard/new/", _as_posted(owner, **changes))


def test_the_new_study_form_makes_an_adaptive_study(client, researcher_carol, captured_tasks):
    client.force_login(researcher_carol)
    r = _post(
        client,
        researcher_carol,
        sampler="disagreement",
        pool_factor="3",
        uniform_share="0.3",
        jpi_train="2",
        jpi_train_max="4",
        stopping_confidence="0.8",
    )
    assert r.status_code == 302
    c = Study.objects.get().collection
    assert c["sampling"] == {"sampler": "disagreement", "pool_factor": 3, "uniform_share": 0.3}
    assert c["judgments_per_item"]["train"] == [2, 4] and c["stopping"]["confidence"] == 0.8


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("uniform_share", "1.5", "sampling.uniform_share must be a number in [0, 1]"),
        ("pool_factor", "50", "sampling.pool_factor must be an integer in 1..20"),
        ("stopping_tie_width", "0.9", "stopping.tie_width must be a number in [0.0, 0.5]"),
        ("jpi_train_max", "1", "as a range is [min, max] with 1 &lt;= min &lt;= max"),
    ],
)
def test_bad_adaptive_settings_come_back_on_their_field(client, researcher_carol, field, value, message):
    client.force_login(researcher_carol)
    r = _post(client, researcher_carol, **{field: value})
    html = r.content.decode()
    assert r.status_code == 400 and not Study.objects.exists()
    target = "jpi_train" if field == "jpi_train_max" else field
    block = re.search(rf'<div class="field has-error[^"]*" id="field-{target}">.*?</div>', html, re.S)
    assert block and message in block.group(0)


def test_the_settings_page_keeps_a_range_and_locks_the_built_pool(client, make_study, researcher_carol):
    study = make_study(owner=researcher_carol, n_test=4, config={"judgments_per_item": {"train": [2, 3]}})
    Study.objects.filter(pk=study.pk).update(build_config={"kind": "2afc", "n_items": 4})  # as if built
    study.refresh_from_db()
    client.force_login(researcher_carol)
    html = client.get(f"/dashboard/{study.pk}/settings/").content.decode()
    assert re.search(r'name="jpi_train_max"[^>]*value="3"', html)
    assert "the candidate pool was built with the stimuli" in html
    from dashboard.study_new import _settings_form

    form = _settings_form(study, data={**_settings_data(study), "jpi_train_max": ""})
    assert form.is_valid() and form.collection(study.kind)["judgments_per_item"]["train"] == 2


def _settings_data(study) -> dict:
    from dashboard.study_new import _settings_form

    form = _settings_form(study)
    data = {}
    for field in form:
        value = field.value()
        if value is None or value is False:
            continue
        data[field.name] = "on" if value is True else value
    return data
