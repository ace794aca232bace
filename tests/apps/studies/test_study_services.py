import pytest

from core.exceptions import ApplicationError
from studies.models import Item, Study
from studies.services import cnn_pool_train, demo_study_ensure, study_build_stimuli, study_create

pytestmark = pytest.mark.django_db


def test_demo_study_is_built_by_the_engine_and_reused(settings, researcher_carol):
    study, created = demo_study_ensure(owner=researcher_carol, n_items=20)
    assert created and study.status == Study.Status.ACTIVE
    assert study.items.filter(role=Item.Role.TEST).count() == 20
    assert study.items.filter(role=Item.Role.SENTINEL).count() == 15
    item = study.items.filter(role=Item.Role.TEST).first()
    for field in ("ref_image", "p0_image", "p1_image"):
        path = settings.MEDIA_ROOT / getattr(item, field)
        assert path.is_file() and len(path.stem) == 64
    assert item.records["p0"]["ops"] and item.records["p0"]["seed"]["entropy"] == 2018
    again, created_again = demo_study_ensure(owner=researcher_carol)
    assert again.pk == study.pk and not created_again


def test_image_names_are_content_addresses(settings, researcher_carol):
    import hashlib

    study, _ = demo_study_ensure(owner=researcher_carol, n_items=5)
    for item in study.items.all()[:5]:
        path = settings.MEDIA_ROOT / item.p1_image
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.stem


def test_bad_engine_config_is_an_application_error(researcher_carol):
    with pytest.raises(ApplicationError, match="unknown families"):
        study_create(name="x", kind="2afc", build_config={"families": {"nope": 1}}, owner=researcher_carol)


def test_build_is_idempotent(researcher_carol):
    study = study_create(name="x", kind="jnd", build_config={"n_items": 5, "seed": 1}, owner=researcher_carol)
    n = study_build_stimuli(study=study, jobs=1)
    assert n == 5 + 40 + 10
    assert study_build_stimuli(study=study, jobs=1) == n
    assert Item.objects.filter(study=study).count() == n


def test_researchers_see_only_their_own_studies(api_client, researcher_carol, researcher_dave):
    mine = study_create(name="carol's", kind="2afc", build_config={"n_items": 1}, owner=researcher_carol)
    study_create(name="dave's", kind="2afc", build_config={"n_items": 1}, owner=researcher_dave)
    api_client.force_authenticate(researcher_carol)
    r = api_client.get("/api/v1/studies/")
    assert [s["name"] for s in r.json()] == ["carol's"]
    other = Study.objects.get(name="dave's")
    assert api_client.get(f"/api/v1/studies/{other.pk}/").status_code == 404
    assert api_client.get(f"/api/v1/studies/{mine.pk}/").status_code == 200


def test_admin_pages_render(client, django_user_model, researcher_carol):
    admin = django_user_model.objects.create_superuser(username="root", password="pw-root-123")
    study_create(name="s", kind="2afc", build_config={"n_items": 1}, owner=researcher_carol)
    client.force_login(admin)
    for url in ("/admin/studies/study/", "/admin/studies/item/", "/admin/"):
        assert client.get(url).status_code == 200


def test_dashboard_needs_a_login(client, researcher_carol):
    assert client.get("/dashboard/").status_code == 302
    client.force_login(researcher_carol)
    assert client.get("/dashboard/").status_code == 200


TINY_POOL = {
    "n_models": 2,
    "budget": {"steps": 6, "batch_size": 4, "snapshots": [2, 6], "checkpoint_every": 2},
}


def test_demo_study_mixes_in_the_cnn_family_when_the_pool_is_ready(settings, tmp_path, researcher_carol):
    settings.CNN_POOL_DIR = tmp_path / "pool"
    cnn_pool_train(**TINY_POOL)
    study, _ = demo_study_ensure(owner=researcher_carol, n_items=40)
    cats = set(study.items.filter(role=Item.Role.TEST).values_list("category", flat=True))
    assert "cnn" in cats and "traditional" in cats
    item = study.items.filter(category="cnn").first()
    op = item.records["p0"]["ops"][0]
    assert op["name"] == "cnn_autoencoder" and op["provenance"]["arch"]["n_layers"] >= 2


def test_demo_study_never_trains_the_pool(settings, tmp_path, researcher_carol, monkeypatch):
    settings.CNN_POOL_DIR = tmp_path / "pool"
    settings.PERCEPTLAB = {**settings.PERCEPTLAB, "DEMO_CNN": True, "DEMO_CNN_POOL": TINY_POOL}
    monkeypatch.setattr("studies.services.cnn_pool_train", lambda **kw: pytest.fail("trained the pool"))
    study, _ = demo_study_ensure(owner=researcher_carol, n_items=10)
    assert study.status == Study.Status.ACTIVE
    assert not study.items.filter(category="cnn").exists()
    assert not (tmp_path / "pool" / "pool.json").exists()
