"""crowdsim.services.simulation_study_prepare: the simulated crowd answers simulation studies only."""

import pytest

from core.exceptions import ApplicationError
from crowdsim.services import simulation_study_prepare

pytestmark = pytest.mark.django_db


def test_a_simulation_study_is_returned_as_it_is(make_study):
    study = make_study(config={"simulation": True})
    assert simulation_study_prepare(study_id=str(study.pk)).pk == study.pk


def test_a_real_study_needs_mark(make_study):
    study = make_study()
    with pytest.raises(ApplicationError, match="pass --mark"):
        simulation_study_prepare(study_id=str(study.pk))
    marked = simulation_study_prepare(study_id=str(study.pk), mark=True)
    marked.refresh_from_db()
    assert marked.collection["simulation"]


def test_a_missing_study_is_an_application_error():
    with pytest.raises(ApplicationError, match="no study"):
        simulation_study_prepare(study_id="00000000-0000-0000-0000-000000000000")
