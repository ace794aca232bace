"""Every model of our apps has a working admin page."""

import pytest
from django.apps import apps
from django.contrib import admin

pytestmark = pytest.mark.django_db
OUR_APPS = ("core", "studies", "judgments", "exports", "training", "dashboard")


def test_every_model_has_an_admin_page(admin_client):
    models = [m for name in OUR_APPS for m in apps.get_app_config(name).get_models()]
    assert len(models) >= 10
    for model in models:
        assert admin.site.is_registered(model), model
        url = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        assert admin_client.get(url).status_code == 200, url


def test_engine_counters_and_assignment_status_are_read_only_in_the_admin():
    from django.contrib import admin

    from judgments.models import Assignment
    from studies.models import Item

    assert {"n_judgments", "n_open"} <= set(admin.site._registry[Item].readonly_fields)
    assert {"status", "excluded", "lease_expires_at"} <= set(admin.site._registry[Assignment].readonly_fields)
