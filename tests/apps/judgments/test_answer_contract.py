"""The answer's fields are defined once (judgments.answers.ANSWER_FIELDS): the API's OpenAPI serializer and
the hand check both come from it."""

import pytest

from core.exceptions import ApplicationError
from judgments.answers import ANSWER_FIELDS, MAX_RT_MS, answer_input
from judgments.apis import JudgmentSubmitApi

GOOD = {"trial": "t" * 20, "response": "left", "rt_ms": 512, "idempotency_key": "k" * 16}


def test_the_serializer_documents_every_field_of_the_definition():
    fields = JudgmentSubmitApi.InputSerializer().fields
    assert list(fields) == [field.name for field in ANSWER_FIELDS]
    for field in ANSWER_FIELDS:
        assert fields[field.name].required == field.required
    assert fields["rt_ms"].max_value == MAX_RT_MS and fields["rt_ms"].min_value == 0
    assert fields["idempotency_key"].min_length == 8 and fields["idempotency_key"].max_length == 64


def test_a_good_answer_passes_and_optional_fields_default_to_none():
    v = answer_input(GOOD)
    assert v["rt_ms"] == 512.0 and v["client_shown_at"] is None and v["durations"] is None


@pytest.mark.parametrize(
    "change, field",
    [
        ({"trial": ""}, "trial"),
        ({"response": "x" * 17}, "response"),
        ({"rt_ms": "fast"}, "rt_ms"),
        ({"rt_ms": 10**400}, "rt_ms"),
        ({"client_shown_at": [1]}, "client_shown_at"),
        ({"display": []}, "display"),
        ({"durations": {"ref_ms": "1000"}}, "durations"),
    ],
)
def test_a_bad_field_is_named(change, field):
    with pytest.raises(ApplicationError) as caught:
        answer_input({**GOOD, **change})
    assert caught.value.extra == {"field": field}


def test_the_first_bad_field_in_the_old_order_is_named():
    with pytest.raises(ApplicationError) as caught:
        answer_input({"trial": "t", "response": "left", "rt_ms": "x"})  # idempotency_key missing too
    assert caught.value.extra == {"field": "idempotency_key"}
