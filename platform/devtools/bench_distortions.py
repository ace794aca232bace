"""`make bench`'s distortion-engine section: distortions.bench measured with the CNN pool trained as the
platform trains it (feature loss metric.features.cnn_feature_distance), written through devtools.reports."""

from __future__ import annotations

from devtools.reports import write_section
from distortions.bench import run_bench
from metric.features import cnn_feature_distance

SECTION = "distortions"


def run(*, seconds: float = 1.0, cnn: bool = True, out: str | None = None) -> str:
    markdown = run_bench(seconds=seconds, cnn=cnn, feature_distance=cnn_feature_distance)
    if out:
        write_section(out, SECTION, markdown)
    return markdown
