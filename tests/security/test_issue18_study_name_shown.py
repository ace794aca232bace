"""Issue 18 attack review: the new-study form tells the researcher that a study's name is "For you;
annotators never see it", but the annotator page (/s/<id>/, the page every crowd link opens) shows the name
in its <title>, its heading and its page data. A researcher who trusts the form (e.g. names a study after a
batch of workers to screen out, or a paper under anonymous review) leaks it to the crowd."""

from __future__ import annotations

import pytest
from django.test import Client

from dashboard.forms import StudyNewForm

pytestmark = pytest.mark.django_db

SECRET_NAME = "screen-out batch 7 (CVPR anonymous submission 4242)"


def test_it_keeps_a_name_annotators_never_see_off_the_annotator_page(researcher_carol, make_study):
    promise = str(StudyNewForm(owner=researcher_carol).fields["name"].help_text)
    assert "never see" in promise  # what the researcher is told
    study = make_study(owner=researcher_carol, name=SECRET_NAME)
    page = Client().get(f"/s/{study.pk}/").content.decode()
    assert "screen-out batch 7" not in page, "the annotator page shows the name the form calls private"
