"""A zip-import study in headless chromium, on a live server with a real Celery worker on Postgres: the
guided form with the zip source leads to the import page; a zip with one damaged image, chosen with the file
picker, is refused at once with an error naming that file (nothing imported), and the fixed zip, dropped
onto the drop zone, then imports every triplet into the chosen split and category. The import page is
photographed at 1280 and 1024 px into artifacts/researcher/ with the error and when done, and neither
scrolls sideways, has a control without a label or a keyboard stop without visible focus."""

import re
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from researcher import (  # noqa: E402
    click,
    css,
    login,
    present,
    researcher_stack,  # noqa: F401  (a fixture)
    set_checked,
    set_field,
    shoot,
    text_of,
    wait_until,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.integration,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
]
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
STEMS = ("a01", "a02", "a03", "a04")
BAD = "p1/a03.png"  # not an image in the first upload


def _png(seed: int) -> bytes:
    import io

    from PIL import Image

    rng = np.random.default_rng(seed)
    out = io.BytesIO()
    Image.fromarray((rng.random((32, 32, 3)) * 255).astype("uint8")).save(out, format="PNG")
    return out.getvalue()


def _archive(path: Path, *, broken: str | None = None) -> Path:
    """ref/, p0/ and p1/ folders of 32 x 32 PNGs for STEMS; `broken` holds text instead of an image."""
    with zipfile.ZipFile(path, "w") as zf:
        for k, stem in enumerate(STEMS):
            for j, part in enumerate(("ref", "p0", "p1")):
                name = f"{part}/{stem}.png"
                zf.writestr(name, b"this is not an image" if name == broken else _png(10 * k + j))
    return path


# A file dropped onto div#dropzone, as a drag from the desktop delivers it (a DragEvent whose DataTransfer
# holds the file), built in the page from the zip's bytes.
DROP = """
const [zone, name, b64] = arguments;
const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
const data = new DataTransfer();
data.items.add(new File([bytes], name, {type: 'application/zip'}));
for (const type of ['dragenter', 'dragover', 'drop']) {
  zone.dispatchEvent(new DragEvent(type, {bubbles: true, cancelable: true, dataTransfer: data}));
}
"""


def _upload(browser, archive: Path) -> None:
    """Chooses the zip with the file input (the button's file picker), then starts the upload."""
    css(browser, "input#archive-input").send_keys(str(archive))
    click(browser, "button#upload-start")


def _drop_and_upload(browser, archive: Path) -> None:
    """Drops the zip onto the drop zone, then starts the upload."""
    import base64

    zone = css(browser, "div#dropzone")
    browser.execute_script(DROP, zone, archive.name, base64.b64encode(archive.read_bytes()).decode())
    wait_until(
        browser,
        lambda d: (
            d.execute_script(
                "const i = document.getElementById('archive-input'); return i.files.length && i.files[0].name"
            )
            == archive.name
        ),
        what="the dropped zip in the file input",
    )
    click(browser, "button#upload-start")


def test_it_names_the_bad_file_of_an_upload_and_imports_the_fixed_one(
    researcher_stack,  # noqa: F811
    browser,
    researcher_carol,
    tmp_path,
):
    from selenium.webdriver.support.ui import Select

    from studies.models import Study

    stack = researcher_stack
    stack.start_worker()
    bad = _archive(tmp_path / "outputs-bad.zip", broken=BAD)
    good = _archive(tmp_path / "outputs.zip")
    login(browser, stack.url)
    browser.get(f"{stack.url}/dashboard/new/")
    wait_until(browser, present("form#new-study"), what="the new-study form")
    set_field(browser, "name", "Imported deblurring outputs (browser test)")
    set_checked(browser, "input[name=kind][value='2afc']", True)
    set_checked(browser, "input[name=source][value=zip]", True)
    click(browser, "button#create-study")
    wait_until(browser, lambda d: re.search(rf"/dashboard/{UUID}/import/$", d.current_url), what="the import")
    study = Study.objects.get(pk=re.search(UUID, browser.current_url).group(0))
    assert study.owner == researcher_carol and not study.build_config

    Select(css(browser, "select[name=split]")).select_by_value("val")
    set_field(browser, "category", "deblur")
    assert css(browser, "div#dropzone").get_attribute("tabindex") is not None, "the drop zone takes focus"
    _upload(browser, bad)
    error = wait_until(
        browser,
        lambda d: (lambda t: t if BAD in t else False)(text_of(d, "div#import-errors")),
        what=f"an error naming {BAD}",
    )
    assert css(browser, "div#import-errors").get_attribute("role") == "alert"
    assert "Traceback" not in error and "{" not in error, error
    shoot(browser, stack, "12_import_error")
    assert not study.items.exists()

    _drop_and_upload(browser, good)
    wait_until(
        browser,
        lambda d: Study.objects.get(pk=study.pk).build_progress.get("state") in ("done", "failed"),
        timeout=60,
        what=lambda: "the import job:\n" + stack.log_tail(),
    )
    study.refresh_from_db()
    assert study.build_progress["state"] == "done", study.build_progress
    items = list(study.items.filter(role="test"))
    assert len(items) == len(STEMS)
    assert {(i.split, i.category) for i in items} == {("val", "deblur")}
    status = wait_until(
        browser,
        lambda d: (lambda t: t if re.search(rf"\b{len(STEMS)} test items?\b", t) else False)(
            text_of(d, "div#import-status")
        ),
        what="the import page, updated on its own, saying how many triplets the study now holds",
    )
    assert "Traceback" not in status
    assert BAD not in text_of(browser, "div#import-errors"), "the old error is gone after the fixed upload"
    shoot(browser, stack, "13_import_done")
    assert not stack.problems, "\n".join(stack.problems)
