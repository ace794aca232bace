"""The bounded load test (`make loadtest` runs the long one): simulated annotators against gunicorn on
Postgres; every acknowledged answer is stored exactly once and no item passes its target."""

import os
from urllib.parse import urlparse, urlunparse

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


@pytest.mark.django_db(transaction=True)
def test_a_short_load_run_loses_and_duplicates_nothing(settings, postgres, tmp_path):
    from judgments import loadtest

    db = settings.DATABASES["default"]
    url = urlparse(os.environ["DATABASE_URL"])
    env = {"DATABASE_URL": urlunparse(url._replace(path="/" + db["NAME"])), "DJANGO_SETTINGS_MODULE": "config.settings.loadtest",
           "PERCEPTLAB_DATA_DIR": str(tmp_path), "MEDIA_ROOT": str(settings.MEDIA_ROOT)}  # fmt: skip
    study = loadtest.loadtest_study(n_items=60, target=2, hit_size=10)  # small: the items fill up mid-run
    with loadtest.gunicorn(env, workers=2, threads=4, log_path=tmp_path / "gunicorn.log") as (base_url, _):
        result = loadtest.run_load(base_url, str(study.pk), clients=16, seconds=6, finish_hits=True)
    assert result["errors"] == [], result["errors"][:5]
    assert result["judgments"] > 0 and result["latency_ms"]["submit"]["n"] >= result["judgments"]
    check = loadtest.verify(study, result["acknowledged"])
    assert check["missing"] == check["duplicated"] == check["items_over_target_or_miscounted"] == 0, check
    assert check["open_trials"] == 0  # every client finished its HIT
