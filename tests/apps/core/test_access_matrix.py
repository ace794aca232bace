"""Access control on every endpoint, by persona: researcher A (owns study SA, its export and its data),
researcher B (owns SB), an annotator (holds an assignment token in SA) and anonymous. Nobody reads or
writes what is not theirs: other researchers get 404 (ids are not confirmed), the unauthenticated get
401/403 (or the login page), tokens are the only key to an assignment, and nothing changes after a
refused write. A route added without a row here fails `test_the_matrix_covers_every_route`."""

from __future__ import annotations

import io
import zipfile

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from exports.models import Export
from exports.services import export_build, export_create
from judgments.assignments import assignment_start
from judgments.models import Assignment, Judgment
from judgments.qc import assignment_submit
from judgments.workers import worker_hash
from studies.models import Item, Study

pytestmark = pytest.mark.django_db

# the 16-character hash prefix (judgments.selectors.worker_stats) of the world's annotator-1, who submitted
WORKER_1 = worker_hash(platform="anonymous", external_id="annotator-1")[:16]

# name -> (method, path template, body); {sa} study, {export}, {token}; JSON bodies unless "multipart"
RESEARCHER_ROUTES = {
    "api-study-detail": [
        ("get", "/api/v1/studies/{sa}/", None),
        ("patch", "/api/v1/studies/{sa}/", {"name": "mine now"}),
    ],
    "api-study-start": [("post", "/api/v1/studies/{sa}/start/", {})],
    "api-study-pause": [("post", "/api/v1/studies/{sa}/pause/", {})],
    "api-study-import": [("post", "/api/v1/studies/{sa}/import/", "multipart")],
    "api-study-workers": [("get", "/api/v1/studies/{sa}/workers/", None)],
    "api-study-train": [("post", "/api/v1/studies/{sa}/train/", {})],
    "api-study-exports": [
        ("get", "/api/v1/studies/{sa}/exports/", None),
        ("post", "/api/v1/studies/{sa}/exports/", {}),
    ],
    "api-study-completions": [
        ("get", "/api/v1/studies/{sa}/completions/", None),
        ("get", "/api/v1/studies/{sa}/completions/?format=csv", None),
    ],
    "api-export-detail": [("get", "/api/v1/exports/{export}/", None)],
    "api-export-download": [("get", "/api/v1/exports/{export}/download/", None)],
}
RESEARCHER_ROUTES["api-study-models"] = [("get", "/api/v1/studies/{sa}/models/", None)]
RESEARCHER_ROUTES["api-model-detail"] = [("get", "/api/v1/models/{model}/", None)]
RESEARCHER_ROUTES["api-model-download"] = [("get", "/api/v1/models/{model}/download/", None)]
RESEARCHER_ROUTES["api-source-detail"] = [
    ("get", "/api/v1/sources/{source}/", None),
    ("delete", "/api/v1/sources/{source}/", None),
]
RESEARCHER_ROUTES["api-study-close"] = [("post", "/api/v1/studies/{sa}/close/", {})]
ANNOTATOR_ROUTES = {
    "api-assignment-detail": [("get", "/api/v1/assignments/{token}/", None)],
    "api-assignment-heartbeat": [("post", "/api/v1/assignments/{token}/heartbeat/", {})],
    "api-judgment-submit": [("post", "/api/v1/assignments/{token}/judgments/", "judgment")],
    "api-judgment-batch": [("post", "/api/v1/assignments/{token}/judgments/batch/", "batch")],
    "api-assignment-submit": [("post", "/api/v1/assignments/{token}/submit/", {})],
    "api-assignment-return": [("post", "/api/v1/assignments/{token}/return/", {})],
    "api-assignment-image": [("get", "/api/v1/assignments/{token}/trials/{trial}/left/", None)],
}
DASHBOARD_ROUTES = {
    "dashboard-study": [("get", "/dashboard/{sa}/", None)],
    "dashboard-action": [
        ("post", f"/dashboard/{{sa}}/{action}/", {}) for action in ("start", "pause", "export", "evaluate")
    ],
}
DASHBOARD_ROUTES["dashboard-action"].append(("post", "/dashboard/{sa}/close/", {}))
DASHBOARD_ROUTES["study-build-progress"] = [("get", "/dashboard/{sa}/build/", None)]
DASHBOARD_ROUTES["study-import"] = [("get", "/dashboard/{sa}/import/", None)]
DASHBOARD_ROUTES["study-try"] = [("get", "/dashboard/{sa}/try/", None)]
DASHBOARD_ROUTES["study-try-hit"] = [("get", "/dashboard/{sa}/try/hit/", None)]
DASHBOARD_ROUTES["study-try-image"] = [("get", "/dashboard/{sa}/try/images/" + "0" * 64 + ".png", None)]
DASHBOARD_ROUTES["study-settings"] = [
    ("get", "/dashboard/{sa}/settings/", None),
    ("post", "/dashboard/{sa}/settings/", {"hit_size": "3", "consent_text": "mine now"}),
]
# Public by design, checked below: home, health, the schema and docs, the annotator page, starting an
# assignment from a crowd link, stimuli; the study list APIs and dashboard list filter by owner.
PUBLIC_OR_FILTERED = {
    "home",
    "healthz",
    "livez",
    "api-ping",
    "api-schema",
    "api-docs",
    "study-annotate",
    "api-assignment-start",
    "media",
    "api-study-list",
    "dashboard",
    "api-study-example-image",  # an active study's practice examples
}
PUBLIC_OR_FILTERED |= {"study-new", "study-new-preview"}  # login only; own photo sets only (below)
PUBLIC_OR_FILTERED |= {
    "api-source-list"
}  # a researcher's own source photo sets (tests/security/test_source_sets.py)
# people and data (issue 18): workers, their review, exports, model cards
RESEARCHER_ROUTES["api-study-worker-review"] = [
    ("post", "/api/v1/studies/{sa}/workers/" + WORKER_1 + "/review/", {"decision": "approve"}),
    ("post", "/api/v1/studies/{sa}/workers/" + WORKER_1 + "/review/", {"decision": "reject", "reason": "x"}),
]
DASHBOARD_ROUTES["study-workers"] = [("get", "/dashboard/{sa}/workers/", None)]
DASHBOARD_ROUTES["study-worker-review"] = [("post", "/dashboard/{sa}/workers/" + WORKER_1 + "/review/", {})]
DASHBOARD_ROUTES["study-exports"] = [("get", "/dashboard/{sa}/exports/", None)]
# researcher pages addressed by another id than the study's: their own test below
# (test_people_pages_are_the_owners_only)
PUBLIC_OR_FILTERED |= {"model-card", "api-token"}


# what a stranger without the token sends to the answer endpoints
FAKE_ANSWER = {"trial": "t" * 20, "response": "left", "rt_ms": 800, "idempotency_key": "matrix-key-02"}


def _names(patterns, prefix=""):
    for p in patterns:
        if isinstance(p, URLResolver):
            if p.namespace in ("admin",) or str(p.pattern).startswith("accounts/"):
                continue  # Django's own admin and auth views (staff-only / login forms), checked below
            yield from _names(p.url_patterns, prefix + str(p.pattern))
        elif isinstance(p, URLPattern) and p.name:
            yield p.name


def test_the_matrix_covers_every_route():
    routes = set(_names(get_resolver().url_patterns))
    covered = set(RESEARCHER_ROUTES) | set(ANNOTATOR_ROUTES) | set(DASHBOARD_ROUTES) | PUBLIC_OR_FILTERED
    assert routes - covered == set(), "add the new routes to the access matrix"
    assert covered - routes == set()


@pytest.fixture
def world(make_study, answer_trials, researcher_carol, researcher_dave, django_user_model):
    sa = make_study(
        n_test=8,
        n_sentinels=2,
        n_practice=0,
        owner=researcher_carol,
        name="A's study",
        config={"hit_size": 4},
    )
    sb = make_study(n_test=4, n_sentinels=1, n_practice=0, owner=researcher_dave, name="B's study")
    done = assignment_start(study=sa, platform="anonymous", worker_id="annotator-1").assignment
    answer_trials(done, lambda t, i: i.expected or "p0")
    assignment_submit(token=done.token)
    export = export_build(export=export_create(study=sa, user=researcher_carol))
    live = assignment_start(study=sa, platform="anonymous", worker_id="annotator-2").assignment
    return {
        "sa": sa,
        "sb": sb,
        "export": export,
        "token": live.token,
        "a": researcher_carol,
        "b": researcher_dave,
        "source": _source_set(researcher_carol),
        "model": _model_version(sa),
    }


def _model_version(study):
    from training.models import ModelVersion

    return ModelVersion.objects.create(
        study=study, backbone="alex", weights="kmeans", version=1, status="ready"
    )


def _source_set(owner):
    import numpy as np
    from PIL import Image

    from studies.sources import source_set_create

    photo, archive = io.BytesIO(), io.BytesIO()
    Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype("uint8")).save(
        photo, format="PNG"
    )
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a.png", photo.getvalue())
    archive.seek(0)
    return source_set_create(owner=owner, name="A's photos", archive=archive)


def _client(persona: str, world) -> APIClient:
    client = APIClient()
    if persona in ("a", "b"):
        client.force_authenticate(world[persona])
    return client


def _call(client, method, template, body, world, token=None):
    trial = Assignment.objects.get(token=world["token"]).trials.order_by("position").first().public_id
    path = template.format(
        sa=world["sa"].pk,
        export=world["export"].pk,
        token=token or world["token"],
        trial=trial,
        source=world["source"].pk,
        model=world["model"].pk,
    )
    if body == "multipart":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("notes.txt", "x")
        buf.name = "x.zip"
        return client.post(path, {"archive": buf}, format="multipart")
    if body in ("judgment", "batch"):
        trial = Assignment.objects.get(token=world["token"]).trials.order_by("position").first()
        answer = {
            "trial": trial.public_id,
            "response": "left",
            "rt_ms": 800,
            "idempotency_key": "matrix-key-01",
        }
        body = answer if body == "judgment" else {"answers": [answer]}
    elif isinstance(body, dict) and body.get("answers") == "fake":
        body = {"answers": [{**FAKE_ANSWER, "idempotency_key": "matrix-key-04"}]}
    return (
        getattr(client, method)(path, body, format="json")
        if body is not None
        else getattr(client, method)(path)
    )


def _state(world) -> dict:
    sa = Study.objects.get(pk=world["sa"].pk)
    return {
        "study": (sa.name, sa.status, sa.config),
        "items": Item.objects.filter(study=sa).count(),
        "exports": Export.objects.filter(study=sa).count(),
        "judgments": Judgment.objects.filter(item__study=sa).count(),
        "assignments": sorted(Assignment.objects.filter(study=sa).values_list("status", "n_answered")),
    }


@pytest.mark.parametrize("persona", ["b", "annotator", "anonymous"])
def test_researcher_endpoints_refuse_everyone_but_the_owner(world, persona, captured_tasks):
    before = _state(world)
    expected = {404} if persona == "b" else {401, 403}
    for name, calls in RESEARCHER_ROUTES.items():
        for method, template, body in calls:
            r = _call(_client(persona, world), method, template, body, world)
            assert r.status_code in expected, (persona, name, method, r.status_code)
            assert str(world["sa"].name) not in r.content.decode(errors="replace"), (persona, name)
    assert (
        _state(world) == before and captured_tasks == []
    )  # no refused write changed anything or queued work


def test_the_owner_reaches_every_researcher_endpoint(world, captured_tasks):
    for name, calls in RESEARCHER_ROUTES.items():
        for method, template, body in calls:
            r = _call(_client("a", world), method, template, body, world)
            assert r.status_code not in (401, 403, 404), (name, method, r.status_code, r.content[:200])
            assert r.status_code < 500


def test_list_endpoints_show_only_ones_own(world):
    for persona, own, other in (("a", "sa", "sb"), ("b", "sb", "sa")):
        r = _client(persona, world).get("/api/v1/studies/")
        ids = {s["id"] for s in r.json()}
        assert str(world[own].pk) in ids and str(world[other].pk) not in ids
    assert _client("anonymous", world).get("/api/v1/studies/").status_code in (401, 403)
    assert _client("anonymous", world).post(
        "/api/v1/studies/", {"name": "x", "kind": "2afc"}, format="json"
    ).status_code in (401, 403)


@pytest.mark.parametrize("persona", ["a", "b", "annotator", "anonymous"])
def test_assignment_endpoints_open_only_with_the_token(world, persona):
    """The token is the only key: a researcher, even the study's owner, gets 404 without it, and
    anyone with a wrong token gets 404 and changes nothing."""
    before = _state(world)
    for name, calls in ANNOTATOR_ROUTES.items():
        for method, template, body in calls:
            wrong = "x" * 32
            r = _call(
                _client(persona, world),
                method,
                template,
                {"judgment": FAKE_ANSWER, "batch": {"answers": "fake"}}.get(body, body)
                if isinstance(body, str)
                else body,
                world,
                token=wrong,
            )
            assert r.status_code == 404, (persona, name, method, r.status_code)
    assert _state(world) == before


def test_the_annotator_token_opens_only_its_own_assignment(world):
    client = _client("annotator", world)
    r = client.get(f"/api/v1/assignments/{world['token']}/")
    assert r.status_code == 200
    own = set(Assignment.objects.get(token=world["token"]).trials.values_list("public_id", flat=True))
    assert {t["id"] for t in r.json()["trials"]} == own
    # a trial of another assignment cannot be answered through this token
    other = Assignment.objects.exclude(token=world["token"]).get(study=world["sa"]).trials.first()
    r = client.post(
        f"/api/v1/assignments/{world['token']}/judgments/",
        {"trial": other.public_id, "response": "left", "rt_ms": 800, "idempotency_key": "matrix-key-03"},
        format="json",
    )
    assert r.status_code == 400 and not Judgment.objects.filter(idempotency_key="matrix-key-03").exists()
    assert (
        _call(client, "post", "/api/v1/assignments/{token}/judgments/", "judgment", world).status_code == 201
    )


@pytest.mark.parametrize("persona", ["b", "anonymous"])
def test_dashboard_pages_and_actions_are_the_owners_only(world, persona, client, captured_tasks):
    before = _state(world)
    if persona == "b":
        client.force_login(world["b"])
    for name, calls in DASHBOARD_ROUTES.items():
        for method, template, _ in calls:
            r = getattr(client, method)(template.format(sa=world["sa"].pk))
            if persona == "b":
                assert r.status_code == 404, (name, template)
            else:
                assert r.status_code == 302 and r["Location"].startswith("/accounts/login/"), (name, template)
    r = client.get("/dashboard/")
    assert (
        (
            r.status_code == 200
            and "A&#x27;s study" not in r.content.decode()
            and "A's study" not in r.content.decode()
        )
        if persona == "b"
        else r.status_code == 302
    )
    assert _state(world) == before and captured_tasks == []


def test_the_owner_uses_the_dashboard(world, client, captured_tasks):
    client.force_login(world["a"])
    assert client.get(f"/dashboard/{world['sa'].pk}/").status_code == 200
    assert client.post(f"/dashboard/{world['sa'].pk}/export/").status_code == 302
    assert Export.objects.filter(study=world["sa"]).count() == 2


@pytest.mark.parametrize("persona", ["a", "b", "annotator", "anonymous"])
def test_admin_is_for_staff_only(world, persona, client):
    if persona in ("a", "b"):
        client.force_login(world[persona])  # researchers are not staff
    for path in (
        "/admin/",
        "/admin/studies/study/",
        f"/admin/studies/study/{world['sa'].pk}/change/",
        "/admin/judgments/judgment/",
        "/admin/exports/export/",
    ):
        r = client.get(path)
        assert r.status_code == 302 and "/admin/login/" in r["Location"], (persona, path, r.status_code)


@pytest.mark.parametrize("persona", ["a", "b", "annotator", "anonymous"])
def test_media_serves_stimuli_but_never_export_archives(world, persona, client, settings):
    if persona in ("a", "b"):
        client.force_login(world[persona])
    item = Item.objects.filter(study=world["sa"]).first()
    r = client.get(f"/media/{item.ref_image}")
    assert r.status_code == 200
    b"".join(r.streaming_content)
    export = Export.objects.get(pk=world["export"].pk)
    assert (settings.MEDIA_ROOT / export.archive).is_file()
    for path in (export.archive, f"stimuli/../{export.archive}", "features/x.npz"):
        assert client.get(f"/media/{path}").status_code == 404, path


@pytest.mark.parametrize("persona", ["a", "b", "anonymous"])
def test_people_pages_are_the_owners_only(world, persona, client):
    """The model card (by model id): the owner reads it; another researcher gets 404, the anonymous the
    login page; a worker review by another researcher or the anonymous changes nothing."""
    from judgments.models import WorkerReview

    if persona != "anonymous":
        client.force_login(world[persona])
    r = client.get(f"/dashboard/models/{world['model'].pk}/")
    expected = {"a": 200, "b": 404, "anonymous": 302}[persona]
    assert r.status_code == expected
    if persona == "anonymous":
        assert r["Location"].startswith("/accounts/login/")
    review = f"/dashboard/{world['sa'].pk}/workers/{WORKER_1}/review/"
    r = client.post(review, {"decision": "reject", "reason": "matrix"})
    assert WorkerReview.objects.exists() == (persona == "a")
    assert (r.status_code == 404) if persona == "b" else (r.status_code == 302)


@pytest.mark.parametrize("persona", ["a", "b", "anonymous"])
def test_the_token_page_is_ones_own(world, persona, client):
    """/accounts/token/: the anonymous get the login page and create nothing; a researcher sees and changes
    only their own token."""
    from rest_framework.authtoken.models import Token

    theirs = Token.objects.create(user=world["a" if persona != "a" else "b"])
    if persona != "anonymous":
        client.force_login(world[persona])
    r = client.get("/accounts/token/")
    if persona == "anonymous":
        assert r.status_code == 302 and r["Location"].startswith("/accounts/login/")
    else:
        assert r.status_code == 200 and theirs.key not in r.content.decode()
    for action in ("create", "regenerate", "revoke"):
        client.post("/accounts/token/", {"action": action})
    assert Token.objects.filter(pk=theirs.pk).exists()
    assert Token.objects.count() == 1


@pytest.mark.parametrize("path", ["/dashboard/new/", "/dashboard/new/preview/?kind=2afc&source=engine"])
def test_the_new_study_pages_need_a_login(client, path):
    r = client.get(path)
    assert r.status_code == 302 and r["Location"].startswith("/accounts/login/")
    r = client.post("/dashboard/new/", {"name": "x", "kind": "2afc", "source": "zip"})
    assert r.status_code == 302 and not Study.objects.filter(name="x").exists()


def test_the_new_study_form_offers_and_takes_only_ones_own_photo_sets(world, client, captured_tasks):
    """B cannot build from (or preview) A's uploaded photos, even with the set's id."""
    client.force_login(world["b"])
    source = str(world["source"].pk)
    assert source not in client.get("/dashboard/new/").content.decode()
    query = {"name": "x", "kind": "2afc", "source": "engine", "photos": source}
    preview = client.get("/dashboard/new/preview/", query)
    assert preview.status_code == 200 and "<img" not in preview.content.decode()
    r = client.post("/dashboard/new/", query)
    assert r.status_code == 400 and not Study.objects.filter(name="x").exists() and captured_tasks == []


def test_the_owner_edits_the_settings(world, client):
    client.force_login(world["a"])
    assert client.get(f"/dashboard/{world['sa'].pk}/settings/").status_code == 200
