"""Throttle counts live in Redis (CACHE_URL), so every gunicorn worker process enforces one shared limit;
with each process's own memory, N workers would allow up to N times the rate."""

import http.client
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from worker_process import child_env  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


@pytest.mark.django_db(transaction=True)
def test_two_web_processes_share_one_throttle_budget(settings, postgres, redis_url, tmp_path, make_study):
    import redis

    from crowdsim.simulation import HttpClient
    from devtools import loadtest

    cache_url = redis_url.rsplit("/", 1)[0] + "/11"
    redis.Redis.from_url(cache_url).flushdb()
    env = {**child_env(settings), "CACHE_URL": cache_url, "THROTTLE_JUDGMENTS": "4/min"}
    study = make_study(n_test=3)
    with loadtest.gunicorn(env, workers=2, threads=1, log_path=tmp_path / "gunicorn.log") as (base_url, _):
        status, body = HttpClient(base_url).request(
            "POST", f"/api/v1/studies/{study.pk}/assignments/", {"platform": "anonymous", "consent": True}
        )
        assert status == 201, body
        codes = []
        for _ in range(10):  # a new connection each time: gunicorn hands them to either worker
            conn = http.client.HTTPConnection(
                urlparse(base_url).hostname, urlparse(base_url).port, timeout=30
            )
            conn.request("POST", f"/api/v1/assignments/{body['token']}/heartbeat/")
            codes.append(conn.getresponse().status)
            conn.close()
    assert codes.count(200) == 4 and codes.count(429) == 6, codes
    assert any(b"throttle_judgments_" in key for key in redis.Redis.from_url(cache_url).keys("*"))


def _redis_throttle_at_5_per_min(settings, redis_url, throttle_rates) -> None:
    """The default cache on an empty Redis database, the judgments throttle at 5/min."""
    import redis

    cache_url = redis_url.rsplit("/", 1)[0] + "/11"
    redis.Redis.from_url(cache_url).flushdb()
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": cache_url}
    }
    throttle_rates({"judgments": "5/min"})


def test_the_redis_throttle_is_a_sliding_window(settings, redis_url, throttle_rates):
    """One minute at 5/min, on a fake clock: the previous window's count fades as it slides out."""
    from core.throttling import AssignmentThrottle

    _redis_throttle_at_5_per_min(settings, redis_url, throttle_rates)
    view = type("View", (), {"kwargs": {"token": "t" * 40}})()
    clock = [600 * 60 + 10.0]  # 10 s into a minute

    def ask():
        throttle = AssignmentThrottle()
        throttle.timer = lambda: clock[0]
        return throttle.allow_request(None, view), throttle

    assert [ask()[0] for _ in range(6)] == [True] * 5 + [False]
    assert ask()[1].wait() == pytest.approx(50 + 12, abs=0.01)  # next minute, 12 s in: ceil(5 x 0.8) = 4
    clock[0] += 80  # 30 s into the next minute: ceil(5 x 0.5) = 3 still count
    assert [ask()[0] for _ in range(3)] == [True, True, False]
    assert ask()[1].wait() == pytest.approx(6, abs=0.01)  # at 36 s, ceil(5 x 0.4) = 2
    clock[0] += 6.01
    assert [ask()[0] for _ in range(2)] == [True, False]
    clock[0] += 120  # two minutes later everything has faded
    assert [ask()[0] for _ in range(6)] == [True] * 5 + [False]


def test_the_redis_throttle_counts_a_batch_by_its_answers(settings, redis_url, throttle_rates):
    """A view's throttle_weight is what its request costs in the Redis sliding window (the answer batch
    endpoint's answers); a batch larger than the whole rate still fits an empty window."""
    from core.throttling import AssignmentThrottle

    _redis_throttle_at_5_per_min(settings, redis_url, throttle_rates)
    clock = [700 * 60 + 30.0]  # 30 s into a minute

    def ask(cost, token="b" * 40):
        view = type("View", (), {"kwargs": {"token": token}, "throttle_weight": cost})()
        throttle = AssignmentThrottle()
        throttle.timer = lambda: clock[0]
        return throttle.allow_request(None, view), throttle

    assert ask(4)[0] is True
    refused, throttle = ask(2)
    # next minute, 15 s in: ceil(4 x 0.75) + 2 = 5
    assert refused is False and throttle.wait() == pytest.approx(30 + 15, abs=0.01)
    assert ask(1)[0] is True and ask(1)[0] is False
    assert ask(20, token="c" * 40)[0] is True  # 20 > 5: counts as the whole rate
    assert ask(1, token="c" * 40)[0] is False
