"""The guided new-study form (/dashboard/new/) and its live preview (/dashboard/new/preview/): defaults from
their owners, the API's own checks as inline errors, the same service and build job as the API."""

import io
import re
import zipfile

import numpy as np
import pytest
from PIL import Image

from distortions.dataset import StudyConfig
from studies.collection import DEFAULTS
from studies.models import Study

pytestmark = pytest.mark.django_db

BASE = {"name": "blur study", "kind": "2afc", "source": "engine", "photos": "skimage"}


def _as_posted(owner, **changes) -> dict:
    """What a browser posts for the untouched form (its initial values, unchecked boxes left out), changed."""
    from dashboard.forms import StudyNewForm

    form = StudyNewForm(owner=owner, initial={"kind": changes.get("kind", "2afc")})
    data = {}
    for field in form:
        value = field.value()
        if value is None or value is False:
            continue
        data[field.name] = "on" if value is True else value
    return {**data, **BASE, **changes}


@pytest.fixture
def carol(client, researcher_carol):
    client.force_login(researcher_carol)
    return client


@pytest.fixture
def ENGINE_POST(researcher_carol):
    return _as_posted(researcher_carol)


def _value(html: str, name: str) -> str:
    match = re.search(rf'<input [^>]*name="{name}"[^>]*value="([^"]*)"', html)
    return match.group(1) if match else None


def test_it_needs_a_login(client, ENGINE_POST):
    for path in ("/dashboard/new/", "/dashboard/new/preview/"):
        r = client.get(path)
        assert r.status_code == 302 and r["Location"].startswith("/accounts/login/"), path
    assert client.post("/dashboard/new/", ENGINE_POST).status_code == 302
    assert not Study.objects.exists()


def test_it_shows_every_field_with_its_real_default_and_help(carol):
    html = carol.get("/dashboard/new/").content.decode()
    assert 'id="new-study"' in html and 'id="create-study"' in html
    engine = StudyConfig(kind="2afc")
    assert _value(html, "n_items") == str(engine.n_items) and _value(html, "patch_size") == str(
        engine.patch_size
    )
    assert _value(html, "p_compose") == str(engine.composition["p_compose"])
    assert _value(html, "n_sentinels") == str(engine.n_sentinels)
    assert _value(html, "hit_size") == str(DEFAULTS["2afc"]["hit_size"])
    assert _value(html, "jpi_val") == str(DEFAULTS["2afc"]["judgments_per_item"]["val"])
    assert 'data-default-jnd="160"' in html  # the JND hit size follows the kind (static/js/study_form.js)
    assert _value(html, "min_sentinel_accuracy") == "0.9333"  # 14/15, shown rounded, never raw
    names = "name kind source n_items severity_min family_blur distortions jpi_train ref_ms consent_text"
    for name in (*names.split(), "platforms", "training_every", "backbones"):
        assert f'name="{name}"' in html, name
    assert 'name="family_cnn"' not in html  # no CNN pool here
    assert 'value="gaussian_blur"' in html and "gaussian_blur (blur)" in html
    assert html.count('class="help"') >= 30
    labels = set(re.findall(r'<label for="([^"]+)"', html))
    controls = set(re.findall(r'<(?:input|select|textarea)[^>]* id="([^"]+)"', html))
    assert controls <= labels  # a label for every control
    assert re.search(r'<div id="preview" aria-live="polite"', html)
    form_tag = re.search(r'<form id="new-study"[^>]*>', html).group(0)
    assert 'hx-get="/dashboard/new/preview/"' in form_tag and "input delay:400ms" in form_tag
    params = re.search(r'hx-params="([^"]+)"', form_tag).group(1).split(",")
    assert {"kind", "n_items", "distortions", "family_blur"} <= set(params)
    assert "csrfmiddlewaretoken" not in params and "consent_text" not in params
    assert "<script>" not in html and "hx-on" not in html and "js/study_form.js" in html


def test_it_creates_an_engine_study_and_queues_its_build(
    ENGINE_POST, carol, researcher_carol, captured_tasks, django_capture_on_commit_callbacks
):
    data = {**ENGINE_POST, "n_items": "40", "patch_size": "32", "distortions": ["gaussian_blur", "jpeg"]}
    with django_capture_on_commit_callbacks(execute=True):
        r = carol.post("/dashboard/new/", data)
    study = Study.objects.get()
    assert r.status_code == 302 and r["Location"] == f"/dashboard/{study.pk}/"
    assert study.owner == researcher_carol and study.kind == "2afc" and study.name == "blur study"
    assert study.build_config == {
        "kind": "2afc", "n_items": 40, "patch_size": 32, "seed": 0, "distortions": ["gaussian_blur", "jpeg"],
    }  # fmt: skip
    assert captured_tasks == [("studies.study_build_stimuli", (str(study.pk),), {})]
    assert study.config == {"completion_code": study.config["completion_code"]}  # defaults are not copied
    assert study.collection["hit_size"] == DEFAULTS["2afc"]["hit_size"]


def test_the_page_and_the_api_make_the_same_study(ENGINE_POST, carol, researcher_carol, captured_tasks):
    from rest_framework.test import APIClient

    carol.post(
        "/dashboard/new/",
        {**_as_posted(researcher_carol, kind="jnd"), "hit_size": "24", "ref_ms": "500",
         "min_sentinel_accuracy": "0.8",
         "training_every": "", "backbones": ["squeeze:random"], "platforms": ["prolific"],
         "completion_code": "ABCD1234"},
    )  # fmt: skip
    page = Study.objects.get()
    api = APIClient()
    api.force_authenticate(researcher_carol)
    r = api.post(
        "/api/v1/studies/",
        {"name": "api", "kind": "jnd",
         "build_config": {k: v for k, v in page.build_config.items() if k != "kind"},
         "config": page.config},
        format="json",
    )  # fmt: skip
    assert r.status_code == 201
    made = Study.objects.get(pk=r.json()["id"])
    assert made.build_config == page.build_config and made.collection == page.collection
    c = page.collection
    assert c["hit_size"] == 24 and c["timing"] == {"ref_ms": 500, "gap_ms": 250, "distorted_ms": 1000}
    assert c["exclusion"] == {"min_sentinel_accuracy": 0.8} and c["training"]["every"] is None
    assert c["training"]["backbones"] == [{"net": "squeeze", "weights": "random"}]
    assert c["platforms"] == ["prolific"] and c["completion_code"] == "ABCD1234"
    assert c["judgments_per_item"] == DEFAULTS["jnd"]["judgments_per_item"]


def test_a_blank_kind_dependent_field_takes_the_kinds_default(ENGINE_POST, carol):
    carol.post("/dashboard/new/", {**ENGINE_POST, "kind": "jnd", "hit_size": "", "n_sentinels": ""})
    study = Study.objects.get()
    assert (
        study.collection["hit_size"] == DEFAULTS["jnd"]["hit_size"] and "sentinels" not in study.build_config
    )


def test_a_zip_study_goes_to_the_import_page_without_a_build(ENGINE_POST, carol, captured_tasks):
    r = carol.post("/dashboard/new/", {**ENGINE_POST, "source": "zip", "patch_size": "nonsense"})
    study = Study.objects.get()
    assert r.status_code == 302 and r["Location"] == f"/dashboard/{study.pk}/import/"
    assert study.build_config == {} and captured_tasks == []


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("hit_size", "0", "hit_size must be an integer in 1..2000"),
        ("jpi_val", "500", "judgments_per_item[&#x27;val&#x27;] must be an integer in 1..100"),
        ("sentinel_rate", "0.95", "sentinel_rate must be a number in [0, 0.9)"),
        ("training_every", "0", "training.every must be an integer"),
        ("prolific_completion_url", "http://evil.example/?cc={code}", "prolific_completion_url must be"),
        ("completion_code", "no!", "completion_code must be 4-64 letters and digits"),
        ("patch_size", "1024", "build_config.patch_size must be an integer in 16..256"),
        ("n_items", "10000000", "build_config.n_items must be an integer in 0..20000"),
        ("p_compose", "1.5", "build_config.composition.p_compose must be a number in [0, 1]"),
        ("severity_min", "0.9", "build_config.severity_range must be [low, high]"),
        ("train_fraction", "2", "build_config.splits must map names"),
        ("n_items", "lots", "Enter a whole number."),
        ("family_blur", "inf", "Enter a number."),
    ],
)
def test_an_invalid_field_gets_the_apis_message_inline(ENGINE_POST, carol, field, value, message):
    data = {**ENGINE_POST, field: value, "severity_max": "0.5" if field == "severity_min" else "1"}
    r = carol.post("/dashboard/new/", data)
    html = r.content.decode()
    assert r.status_code == 400 and not Study.objects.exists()
    block = re.search(rf'<div class="field has-error[^"]*" id="field-{field}">.*?</div>', html, re.S)
    assert block and message in block.group(0), html[html.find("errorlist") - 200 :][:800]
    assert _value(html, field) in (value, None)  # the researcher's value stays in the field


def test_an_engine_refusal_without_a_field_lands_on_the_form(ENGINE_POST, carol):
    zeros = {f"family_{f}": "0" for f in ("photometric", "noise", "blur", "spatial", "compression")}
    r = carol.post("/dashboard/new/", {**ENGINE_POST, **zeros})
    assert r.status_code == 400 and "no distortion left" in r.content.decode()


def test_another_researchers_photo_set_is_not_a_choice(
    ENGINE_POST, client, researcher_carol, researcher_dave
):
    daves = _photo_set(researcher_dave)
    client.force_login(researcher_carol)
    assert str(daves.pk) not in client.get("/dashboard/new/").content.decode()
    r = client.post("/dashboard/new/", {**ENGINE_POST, "photos": str(daves.pk)})
    assert r.status_code == 400 and "Select a valid choice" in r.content.decode()
    r = client.get("/dashboard/new/preview/", {**ENGINE_POST, "photos": str(daves.pk)})
    assert (
        r.status_code == 200
        and "Select a valid choice" in r.content.decode()
        and "<img" not in r.content.decode()
    )
    assert not Study.objects.exists()


def test_ones_own_photo_set_feeds_the_preview_and_the_study(ENGINE_POST, carol, researcher_carol):
    mine = _photo_set(researcher_carol)
    r = carol.get("/dashboard/new/preview/", {**ENGINE_POST, "photos": str(mine.pk), "patch_size": "32"})
    assert r.content.decode().count('class="preview-item"') == 4
    carol.post("/dashboard/new/", {**ENGINE_POST, "photos": str(mine.pk), "patch_size": "32"})
    assert Study.objects.get().build_config["source"] == {"type": "upload", "id": str(mine.pk)}


def _photo_set(owner):
    from studies.sources import source_set_create

    photo, archive = io.BytesIO(), io.BytesIO()
    Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype("uint8")).save(photo, "PNG")
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a.png", photo.getvalue())
    archive.seek(0)
    return source_set_create(owner=owner, name=f"{owner.username}'s photos", archive=archive)


# --- the preview fragment ---------------------------------------------------------------------------
def test_the_preview_shows_four_triplets_for_the_options(ENGINE_POST, carol):
    r = carol.get("/dashboard/new/preview/", {**ENGINE_POST, "distortions": "gaussian_blur",
                                              "severity_min": "0.3",
                                              "severity_max": "0.3"})  # fmt: skip
    html = r.content.decode()
    assert r.status_code == 200 and html.count('class="preview-item"') == 4
    assert html.count('src="data:image/png;base64,') == 12 and html.count('width="128" height="128"') == 12
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", html, re.S)
    assert all(c.startswith("A: gaussian_blur 0.30 · B: gaussian_blur 0.30") for c in captions), captions
    assert "<html" not in html  # a fragment


def test_the_preview_shows_pairs_for_jnd(ENGINE_POST, carol):
    html = carol.get("/dashboard/new/preview/", {**ENGINE_POST, "kind": "jnd"}).content.decode()
    assert html.count('class="preview-item"') == 4 and html.count("<img") == 8 and "pairs" in html


@pytest.mark.parametrize(
    "query, message",
    [
        ({"patch_size": "1024"}, "patch_size must be an integer in 16..256"),
        ({"n_items": str(10**7)}, "n_items must be an integer in 0..20000"),
        ({"n_items": "lots"}, "Enter a whole number."),
        ({"seed": "-1"}, "seed must be an integer"),
        ({"max_ops": "99"}, "max_ops must be an integer in 1..4"),
        ({"distortions": "rm -rf"}, "Select a valid choice"),
        ({"kind": "3afc"}, "Select a valid choice"),
    ],
)
def test_the_preview_says_what_is_wrong_instead_of_failing(ENGINE_POST, carol, query, message):
    r = carol.get("/dashboard/new/preview/", {**ENGINE_POST, **query})
    html = r.content.decode()
    assert r.status_code == 200 and message in html and "<img" not in html and 'role="alert"' in html


def test_the_preview_of_a_zip_study_points_to_the_import(ENGINE_POST, carol):
    html = carol.get("/dashboard/new/preview/", {**ENGINE_POST, "source": "zip"}).content.decode()
    assert "upload the zip" in html and "<img" not in html


def test_the_preview_ignores_the_fields_it_does_not_draw(ENGINE_POST, carol):
    query = {**ENGINE_POST, "name": "", "hit_size": "0", "patch_size": "1024"}
    html = carol.get("/dashboard/new/preview/", query).content.decode()
    assert "patch_size must be" in html and "Name" not in html and "hit_size" not in html
    query = {**ENGINE_POST, "name": "", "hit_size": "lots"}
    assert carol.get("/dashboard/new/preview/", query).content.decode().count('class="preview-item"') == 4


def test_the_cnn_share_appears_only_with_a_trained_pool(carol, monkeypatch):
    assert 'name="family_cnn"' not in carol.get("/dashboard/new/").content.decode()
    monkeypatch.setattr("dashboard.forms.cnn_pool_ready", lambda: True)
    html = carol.get("/dashboard/new/").content.decode()
    assert _value(html, "family_cnn") == "0"  # opt-in: the engine leaves it out unless weighted
    assert "cnn_autoencoder (cnn)" in html


def test_a_jnd_form_starts_at_the_jnd_defaults_with_its_timing_shown(carol):
    html = carol.get("/dashboard/new/?kind=jnd").content.decode()
    assert _value(html, "hit_size") == str(DEFAULTS["jnd"]["hit_size"])
    assert _value(html, "ref_ms") == str(DEFAULTS["jnd"]["timing"]["ref_ms"])
    assert _value(html, "n_sentinels") == str(StudyConfig(kind="jnd").n_sentinels)
    assert re.search(r'<fieldset class="sub" id="jnd-timing" data-jnd-only>', html)
    html = carol.get("/dashboard/new/").content.decode()
    assert re.search(r'<fieldset class="sub" id="jnd-timing" data-jnd-only hidden>', html)
