"""The zip import page: a keyboard-usable drop zone with its label, split and category fields, an upload to
the researcher API (session auth + CSRF header; its checks are the only ones), the job's progress in the
polled build panel, and the zip layout documented on the page."""

import io
import re
import zipfile

import numpy as np
import pytest
from django.test import Client
from PIL import Image

from studies.models import Item, Study
from studies.services import study_create

pytestmark = pytest.mark.django_db


def _png(seed: int) -> bytes:
    buffer = io.BytesIO()
    rng = np.random.default_rng(seed)
    Image.fromarray((rng.random((16, 16, 3)) * 255).astype("uint8")).save(buffer, format="PNG")
    return buffer.getvalue()


def _zip(files: dict) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    buffer.seek(0)
    buffer.name = "outputs.zip"
    return buffer


def _triplets(n: int) -> dict:
    return {
        f"{part}/{i:03d}.png": _png(10 * i + k)
        for i in range(n)
        for k, part in enumerate(("ref", "p0", "p1"))
    }


@pytest.fixture
def zip_study(researcher_carol):
    return study_create(name="outputs", kind="2afc", build_config={}, owner=researcher_carol)


@pytest.fixture
def browser(researcher_carol):
    """A session client that enforces CSRF, as the browser's XHR meets it; returns (client, token)."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(researcher_carol)
    return client


def _csrf(client, study) -> str:
    html = client.get(f"/dashboard/{study.pk}/import/").content.decode()
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)[1]


def test_it_has_an_accessible_drop_zone_fields_and_the_upload_controls(client, zip_study, researcher_carol):
    client.force_login(researcher_carol)
    r = client.get(f"/dashboard/{zip_study.pk}/import/")
    html = r.content.decode()
    assert r.status_code == 200
    assert re.search(r'<div id="dropzone"[^>]*tabindex="0"', html)
    assert '<label id="dropzone-label" for="archive-input">' in html
    assert re.search(r'<input id="archive-input" type="file" name="archive"', html)
    assert re.search(
        r'<label for="import-split">Split</label>\s*<select id="import-split" name="split"', html
    )
    assert re.search(
        r'<label for="import-category">Category</label>\s*<input id="import-category" name="category"', html
    )
    assert 'id="upload-start"' in html and re.search(r'<progress id="upload-progress"', html)
    assert re.search(r'<div id="import-errors"[^>]*role="alert"', html) and 'id="import-status"' in html
    assert f'action="/api/v1/studies/{zip_study.pk}/import/"' in html
    assert f'data-build-url="/dashboard/{zip_study.pk}/build/"' in html
    assert "js/upload.js" in html and "<script>" not in html
    assert f'href="/dashboard/{zip_study.pk}/"' in html


def test_it_documents_the_layout_with_an_example_tree(client, zip_study, researcher_carol, make_study):
    client.force_login(researcher_carol)
    html = client.get(f"/dashboard/{zip_study.pk}/import/").content.decode()
    tree = re.search(r'<pre class="tree"[^>]*>(.*?)</pre>', html, re.S)[1]
    assert "├── ref/" in tree and "├── p0/" in tree and "└── p1/" in tree and "0001.png" in tree
    assert "&lt;split&gt;/&lt;category&gt;/" in html and "share a stem" in html
    jnd = study_create(name="jnd outputs", kind="jnd", build_config={}, owner=researcher_carol)
    html = client.get(f"/dashboard/{jnd.pk}/import/").content.decode()
    tree = re.search(r'<pre class="tree"[^>]*>(.*?)</pre>', html, re.S)[1]
    assert "ref/" not in tree and "├── p0/" in tree and "└── p1/" in tree


def test_the_page_s_upload_gets_the_api_s_400_naming_the_bad_file(browser, zip_study, captured_tasks):
    token = _csrf(browser, zip_study)
    bad = _zip({**_triplets(2), "p0/notes.txt": b"hello"})
    r = browser.post(
        f"/api/v1/studies/{zip_study.pk}/import/",
        {"archive": bad, "split": "val", "category": "imported"},
        HTTP_X_CSRFTOKEN=token,
        HTTP_ACCEPT="application/json",
    )
    assert r.status_code == 400 and "p0/notes.txt" in r.json()["message"]
    assert captured_tasks == [] and not Item.objects.filter(study=zip_study).exists()


def test_the_upload_needs_the_csrf_header(browser, zip_study, captured_tasks):
    r = browser.post(f"/api/v1/studies/{zip_study.pk}/import/", {"archive": _zip(_triplets(1))})
    assert r.status_code == 403 and captured_tasks == []


def test_an_upload_then_shows_the_job_s_progress_and_the_page_reloads_when_done(
    browser, zip_study, captured_tasks, django_capture_on_commit_callbacks
):
    token = _csrf(browser, zip_study)
    with django_capture_on_commit_callbacks(execute=True):
        r = browser.post(
            f"/api/v1/studies/{zip_study.pk}/import/",
            {"archive": _zip(_triplets(3)), "split": "train", "category": "superres"},
            HTTP_X_CSRFTOKEN=token,
        )
    assert r.status_code == 202 and r.json()["state"] == "queued"
    fragment = browser.get(f"/dashboard/{zip_study.pk}/build/", HTTP_HX_REQUEST="true")
    html = fragment.content.decode()
    assert "HX-Refresh" not in fragment and 'hx-trigger="every 2s"' in html
    assert "Importing the zip" in html and re.search(
        r'<progress id="build-progress"[^>]*max="3" value="0"', html
    )
    page = browser.get(f"/dashboard/{zip_study.pk}/import/").content.decode()
    assert 'id="build-progress"' in page  # a reload during the import keeps polling
    from studies.tasks import study_import_items

    for name, args, _ in captured_tasks:
        assert name == "studies.study_import_items"
        study_import_items(*args)
    fragment = browser.get(f"/dashboard/{zip_study.pk}/build/", HTTP_HX_REQUEST="true")
    assert fragment["HX-Refresh"] == "true"
    page = browser.get(f"/dashboard/{zip_study.pk}/import/").content.decode()
    assert "3 test items" in page and "last import: 3 added" in page and "to start it" in page
    assert sorted(set(Item.objects.filter(study=zip_study).values_list("split", "category"))) == [
        ("train", "superres")
    ]


def test_a_failed_import_job_shows_its_message(client, zip_study, researcher_carol):
    Study.objects.filter(pk=zip_study.pk).update(
        build_progress={"kind": "import", "state": "failed", "error": "p1/007.png: cannot be decoded"}
    )
    client.force_login(researcher_carol)
    html = client.get(f"/dashboard/{zip_study.pk}/import/").content.decode()
    assert "The last import failed." in html and "p1/007.png: cannot be decoded" in html


@pytest.mark.parametrize("persona", ["other researcher", "anonymous"])
def test_the_import_page_is_the_owner_s_only(client, zip_study, researcher_dave, persona):
    if persona == "other researcher":
        client.force_login(researcher_dave)
        assert client.get(f"/dashboard/{zip_study.pk}/import/").status_code == 404
    else:
        r = client.get(f"/dashboard/{zip_study.pk}/import/")
        assert r.status_code == 302 and r["Location"].startswith("/accounts/login/")
