"""`make profile-answer` on a small study: every request goes through the real WSGI application, the
answers in batches as the page sends them, and the report's per-judgment figure is the mix it states."""

import pytest

from devtools import profile_answer

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_small_profile_adds_up_and_reports_both_protocols():
    from judgments.models import Judgment

    measured = profile_answer.profile(hits=2, warmup=1, items=60, hit_size=5, batch=3)
    per_hit = measured["per_hit"]
    assert per_hit == 6  # 5 tests and a sentinel
    # 2 batch requests (3 + 3 answers) per HIT of 6
    assert measured["mix"] == {"start": 1 / 6, "answer": 2 / 6, "complete": 1 / 6}
    # warm-up, the unprofiled batch pass, the unprofiled single-answer pass and the profiled pass
    assert Judgment.objects.count() == (1 + 2 + 2 + 2) * 6
    for op in profile_answer.OPS:
        assert sum(measured["parts_ms"][op].values()) == pytest.approx(measured["cpu_ms"][op])
    assert measured["single_answer_ms"] < measured["cpu_ms"]["answer"]  # one answer costs less than three
    text = profile_answer.report(measured, command="`test`")
    assert "answer batch of 3 (ms)" in text and "With one request per answer" in text
