"""schemathesis against our own OpenAPI schema: every operation, anonymous and as a researcher with data.
No response may be a 5xx, and every status code returned must be documented."""

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import status_code_conformance

pytestmark = [pytest.mark.django_db, pytest.mark.slow]
CHECKS = [not_a_server_error, status_code_conformance]
FUZZ = hypothesis_settings(
    max_examples=10, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
)


def fuzz_every_operation(headers: dict | None = None) -> int:
    from django.core.wsgi import get_wsgi_application

    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())
    n = 0
    for result in schema.get_all_operations():
        operation = result.ok()

        @FUZZ
        @given(case=operation.as_strategy())
        def check(case):
            case.call_and_validate(headers=headers or {}, checks=CHECKS)

        check()
        n += 1
    return n


def test_the_schema_has_no_component_collisions(api_client):
    import warnings

    from drf_spectacular.generators import SchemaGenerator

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        schema = SchemaGenerator().get_schema(request=None, public=True)
    names = set(schema["components"]["schemas"])
    assert {"StudyListInput", "JudgmentSubmitInput", "AssignmentStartInput", "Error"} <= names


def test_anonymous_requests_never_get_a_server_error():
    assert fuzz_every_operation() >= 17


def test_researcher_requests_never_get_a_server_error(researcher_carol, make_study):
    from rest_framework.authtoken.models import Token

    make_study(owner=researcher_carol, n_test=4, n_sentinels=1, n_practice=1)
    token = Token.objects.create(user=researcher_carol).key
    assert fuzz_every_operation({"Authorization": f"Token {token}"}) >= 17
