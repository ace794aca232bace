"""Attacks on the media view (`/media/<path>`): a file that lands under MEDIA_ROOT, whatever its name or
content, must never be served as a page or a script from our origin, and nothing but stimuli is public."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

HTML = b"<!doctype html><script>fetch('/api/v1/studies/').then(r => r.text()).then(alert)</script>"


@pytest.fixture
def media(settings) -> Path:
    root = Path(settings.MEDIA_ROOT)
    (root / "stimuli").mkdir(parents=True)
    return root


def test_a_stimulus_is_served_as_a_png_with_nosniff(client, media):
    import numpy as np

    from distortions.imageio import write_png

    name, _ = write_png(np.zeros((8, 8, 3), "uint8"), media / "stimuli")
    r = client.get(f"/media/stimuli/{name}")
    assert (
        r.status_code == 200 and r["Content-Type"] == "image/png" and r["X-Content-Type-Options"] == "nosniff"
    )
    assert b"".join(r.streaming_content) == (media / "stimuli" / name).read_bytes()


@pytest.mark.parametrize(
    "name",
    [
        "evil.html",
        "evil.js",
        "evil.svg",
        "evil.png",
        f"{'a' * 64}.html",
        f"{'a' * 64}.png.js",
        f"{'A' * 64}.png",
        f"sub/{'a' * 64}.png",
    ],
)
def test_html_or_script_under_stimuli_is_not_served(client, media, name):
    path = media / "stimuli" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(HTML)
    assert client.get(f"/media/stimuli/{name}").status_code == 404


def test_html_under_a_stimulus_name_is_served_as_an_inert_png(client, media):
    """Bytes that are not a PNG under a valid stimulus name (restore and import refuse to write one) would
    still never run: image/png, nosniff, and a CSP sandbox that forbids scripts."""
    name = f"{hashlib.sha256(HTML).hexdigest()}.png"
    (media / "stimuli" / name).write_bytes(HTML)
    r = client.get(f"/media/stimuli/{name}")
    assert (
        r.status_code == 200 and r["Content-Type"] == "image/png" and r["X-Content-Type-Options"] == "nosniff"
    )
    assert "sandbox" in r["Content-Security-Policy"] and "default-src 'none'" in r["Content-Security-Policy"]


@pytest.mark.parametrize(
    "path",
    [
        "stimuli/../secret_key",
        "stimuli/%2e%2e/secret_key",
        "../secret_key",
        "secret_key",
        "exports/s/study-v1.zip",
        "imports/s/upload.zip",
        "features/x.npz",
        "stimuli/",
        "stimuli",
    ],
)
def test_paths_outside_stimuli_are_not_served(client, media, path):
    (media / "secret_key").write_text("k" * 50)
    for rel in ("exports/s/study-v1.zip", "imports/s/upload.zip", "features/x.npz"):
        (media / rel).parent.mkdir(parents=True, exist_ok=True)
        (media / rel).write_bytes(b"PK\x05\x06" + b"\0" * 18)
    assert client.get(f"/media/{path}").status_code == 404
