"""The bounded load test (`make loadtest` runs the long one): simulated annotators against gunicorn on
Postgres; every acknowledged answer is stored exactly once and no item passes its target."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from worker_process import child_env  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("server", ["gunicorn", "granian"])
def test_a_short_load_run_loses_and_duplicates_nothing(settings, postgres, tmp_path, server):
    """Under either web server `make loadtest-servers` compares (gunicorn: production)."""
    from devtools import loadtest

    env = {
        **child_env(settings),
        "DJANGO_SETTINGS_MODULE": "devtools.settings_loadtest",
        "PERCEPTLAB_DATA_DIR": str(tmp_path),
    }
    study = loadtest.loadtest_study(n_items=60, target=2, hit_size=10)  # small: the items fill up mid-run
    with loadtest.SERVERS[server](env, workers=2, threads=4, log_path=tmp_path / f"{server}.log") as (
        base_url,
        _,
    ):
        result = loadtest.run_load(base_url, str(study.pk), clients=16, seconds=6, finish_hits=True)
    assert result["errors"] == [], result["errors"][:5]
    # the annotators send answers as the page does: in batches, so fewer requests than answers
    assert 0 < result["latency_ms"]["submit"]["n"] < result["judgments"]
    check = loadtest.verify(study, result["acknowledged"])
    assert check["missing"] == check["duplicated"] == check["items_over_target_or_miscounted"] == 0, check
    assert check["open_trials"] == 0  # every client finished its HIT


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("flush_s", [0.0, 0.5])
def test_a_paced_run_with_a_ramp_measures_its_window_only(settings, postgres, tmp_path, flush_s):
    """Clients arrive over 2 s, then answer about every 0.1 s each for a 4 s window; answers outside the
    window are stored and checked but not counted in judgments/s or the latencies. flush_s 0: one request
    per answer; 0.5: batches of the answers given within 0.5 s (about 5)."""
    from devtools import loadtest

    env = {
        **child_env(settings),
        "DJANGO_SETTINGS_MODULE": "devtools.settings_loadtest",
        "PERCEPTLAB_DATA_DIR": str(tmp_path),
    }
    study = loadtest.loadtest_study(n_items=400, target=2, hit_size=10)
    with loadtest.gunicorn(env, workers=2, threads=4, log_path=tmp_path / "gunicorn.log") as (base_url, _):
        result = loadtest.run_load(
            base_url,
            str(study.pk),
            clients=8,
            seconds=4,
            ramp_s=2,
            think_s=0.1,
            finish_hits=True,
            flush_s=flush_s,
        )
    assert result["errors"] == [], result["errors"][:5]
    acknowledged = len(result["acknowledged"])
    # 8 clients x ~10 answers/s offered for 4 s: the window holds most of them, not the ramp's or the tail's
    assert 0.6 * 8 * 4 / 0.1 <= result["judgments"] < acknowledged, (result["judgments"], acknowledged)
    assert result["judgments_per_s"] == pytest.approx(result["judgments"] / 4)
    requests = result["latency_ms"]["submit"]["n"]
    if flush_s:
        assert 2 * requests < result["judgments"], (requests, result["judgments"])
    else:
        assert requests == result["judgments"]
    check = loadtest.verify(study, result["acknowledged"])
    assert check["missing"] == check["duplicated"] == check["items_over_target_or_miscounted"] == 0, check


@pytest.mark.django_db(transaction=True)
def test_autoanalyze_keeps_statistics_fresh_where_autovacuum_is_off(postgres):
    """The load test stands in for autovacuum's autoanalyze when the server runs without it, by its rule: a
    table that changed by more than its threshold is analyzed, one that did not is left alone."""
    import time

    from django.db import connection

    from devtools import loadtest

    def last_analyze(table):
        with connection.cursor() as cursor:
            cursor.execute("SELECT last_analyze FROM pg_stat_user_tables WHERE relname = %s", [table])
            return cursor.fetchone()[0]

    def flush_stats():  # this backend's pending table counts, visible to the analyzing thread now
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_stat_force_next_flush()")
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")

    with connection.cursor() as cursor:
        cursor.execute("SHOW autovacuum")
        autovacuum = cursor.fetchone()[0] == "on"
    loadtest.loadtest_study(n_items=300, hit_size=2)  # 300+ new item rows: past the threshold
    flush_stats()
    before = last_analyze("studies_item")
    with loadtest.autoanalyze(every_s=0.2) as analyzing:
        time.sleep(1.5)
    assert analyzing == (not autovacuum)
    if analyzing:
        after = last_analyze("studies_item")
        assert after is not None and after != before
        with loadtest.autoanalyze(every_s=0.2):  # nothing changed since: left alone
            time.sleep(1.0)
        assert last_analyze("studies_item") == after
