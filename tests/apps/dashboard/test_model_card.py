"""A trained model's card page (/dashboard/models/<id>/): the card in words and tables with its downloads,
the owner's only; the study page's models panel links each model's download and card."""

from __future__ import annotations

import uuid

import pytest
from django.utils import timezone

from training.models import Evaluation, ModelVersion

pytestmark = pytest.mark.django_db


@pytest.fixture
def version(make_study, researcher_carol):
    study = make_study(owner=researcher_carol, n_test=4, n_sentinels=1, n_practice=0, name="Carol's blur")
    version = ModelVersion.objects.create(
        study=study,
        backbone="alex",
        weights="kmeans",
        version=2,
        status="ready",
        heads_sha256="a" * 64,
        trunk_sha256="b" * 64,
        backbone_info={"requested": "auto", "used": "kmeans", "reason": "ImageNet weights are not available"},
        n_train_judgments=120,
        n_train_items=30,
        finished_at=timezone.now(),
    )
    run = uuid.uuid4()
    common = {"study": study, "run": run, "measure": "2afc", "split": "val", "n_items": 12, "n_judgments": 48}
    Evaluation.objects.create(
        **common,
        model_version=version,
        metric="trained alex-kmeans lin",
        kind="trained",
        category="all",
        score=0.71234,
        ci_low=0.65,
        ci_high=0.77,
    )
    Evaluation.objects.create(**common, metric="human", kind="human", category="all", score=0.83)
    Evaluation.objects.create(**common, metric="l2", kind="baseline", category="all", score=0.6)
    return version


def test_it_renders_the_card_in_words_and_tables(client, version, researcher_carol):
    client.force_login(researcher_carol)
    r = client.get(f"/dashboard/models/{version.pk}/")
    html = r.content.decode()
    assert r.status_code == 200
    assert "Carol&#x27;s blur" in html and "alex" in html and "kmeans" in html
    assert "ImageNet weights are not available" in html and "120 judgments of 30 items" in html
    assert "71.2" in html and "65.0" in html and "83.0" in html and "0.71234" not in html
    assert (
        f'<code class="sha256">{"a" * 64}</code>' in html
        and f'<code class="sha256">{"b" * 64}</code>' in html
    )
    assert f'class="model-download" href="/api/v1/models/{version.pk}/download/"' in html
    assert "{&#x27;" not in html and "{'" not in html  # no raw dicts


def test_it_works_before_any_evaluation(client, version, researcher_carol):
    Evaluation.objects.all().delete()
    ModelVersion.objects.filter(pk=version.pk).update(backbone_info={}, finished_at=None)
    client.force_login(researcher_carol)
    html = client.get(f"/dashboard/models/{version.pk}/").content.decode()
    assert "No held-out evaluation" in html and "not recorded" in html


def test_the_models_panel_links_download_and_card(client, version, researcher_carol):
    client.force_login(researcher_carol)
    html = client.get(f"/dashboard/{version.study_id}/").content.decode()
    assert 'id="models"' in html
    assert f'class="model-download" href="/api/v1/models/{version.pk}/download/"' in html
    assert f'class="model-card" href="/dashboard/models/{version.pk}/"' in html


def test_the_card_is_the_owners_only(client, version, researcher_dave, django_user_model):
    r = client.get(f"/dashboard/models/{version.pk}/")
    assert r.status_code == 302 and r["Location"].startswith("/accounts/login/")
    client.force_login(researcher_dave)
    assert client.get(f"/dashboard/models/{version.pk}/").status_code == 404
    assert client.get(f"/dashboard/models/{uuid.uuid4()}/").status_code == 404
    admin = django_user_model.objects.create_superuser(username="root", password="x" * 16)
    client.force_login(admin)
    assert client.get(f"/dashboard/models/{version.pk}/").status_code == 200


def test_it_says_why_a_trunk_ran_without_repeating_its_name(version, client, researcher_carol):
    """Recorded reasons start with the weights' name ("random: as configured (...)"); the card and the models
    panel show the name once."""
    version.backbone_info = {
        "requested": "random",
        "used": "random",
        "reason": "random: as configured (torchvision's seeded random initialisation, the paper's control)",
    }
    version.save(update_fields=["backbone_info"])
    client.force_login(researcher_carol)
    card = client.get(f"/dashboard/models/{version.pk}/").content.decode()
    study = client.get(f"/dashboard/{version.study_id}/").content.decode()
    for page in (card, study):
        assert "as configured (torchvision" in page
        assert "random: as configured" not in page


def test_the_models_panel_reads_what_each_card_reads_in_three_queries(version, django_assert_num_queries):
    """The panel reports each version's held-out score and its run's human ceiling as held_out (the card)
    does, with a constant number of queries however many versions there are (it was three per version)."""
    from training.selectors import held_out, models_panel

    study = version.study
    for k in range(3, 8):  # more versions: some evaluated in their own runs, some with categories, one not
        other = ModelVersion.objects.create(
            study=study,
            backbone="alex",
            weights="kmeans" if k % 2 else "random",
            version=k,
            status="ready",
            n_train_judgments=10 * k,
            n_train_items=k,
            finished_at=timezone.now(),
        )
        if k == 7:
            continue
        run = uuid.uuid4()
        common = {"study": study, "run": run, "measure": "2afc", "split": "val", "n_judgments": 40}
        for category, score in (("all", 0.6 + k / 100), ("blur", 0.5 + k / 100)):
            Evaluation.objects.create(
                **common,
                model_version=other,
                metric=f"v{k}",
                kind="trained",
                category=category,
                score=score,
                n_items=10,
                ci_low=score - 0.05,
                ci_high=score + 0.05,
            )
        Evaluation.objects.create(
            **common, metric="human", kind="human", category="all", score=0.8 + k / 100, n_items=10
        )
    with django_assert_num_queries(3):
        panel = models_panel(study=study)
    assert len(panel) == 6
    for row in panel:
        ev = held_out(version=ModelVersion.objects.get(pk=row["id"]))
        assert row["measure"] == ev.get("measure", "")
        assert row["score"] == ev["this_model"].get("all")
        assert row["ceiling"] == ev.get("human_ceiling", {}).get("all")
    scored = {row["name"]: row for row in panel}
    assert scored["alex-kmeans-lin v2"]["score"]["score"] == pytest.approx(0.71234)
    assert scored["alex-kmeans-lin v2"]["ceiling"] == pytest.approx(0.83)
    assert scored["alex-kmeans-lin v7"]["score"] is None and scored["alex-kmeans-lin v7"]["ceiling"] is None
    assert scored["alex-random-lin v4"]["ceiling"] == pytest.approx(0.84)
