"""The training benchmark runs end to end on a small study under the real settings: the N-th judgment's
trigger queues one retrain even though the cold retrain has just run (the minimum interval between retrains
is a guard for service, not part of the pipeline the benchmark times)."""

import pytest

from devtools.bench_training import bench_size

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


def test_bench_size_queues_the_retrain_and_reports_its_timings(settings):
    settings.PERCEPTLAB_MIN_RETRAIN_INTERVAL_S = 300  # the service default (the test settings use 0)
    result = bench_size(400, every=40)
    assert result["judgments"] >= 300 and result["items"] > 0
    assert result["queued"] and result["cold_s"] > 0 and result["warm_s"] > 0, result
