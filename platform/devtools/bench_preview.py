"""`make bench`'s new-study preview section: how long studies.preview.study_preview takes to draw the form's
live preview (4 items, PNG data URIs) for typical and worst-case engine options, on this machine."""

from __future__ import annotations

import statistics
import time

from devtools.reports import machine_line, write_section

SECTION = "preview"
CASES = [
    ("2AFC, the defaults (64 px)", "2afc", {}),
    ("JND, the defaults (64 px)", "jnd", {}),
    (
        "2AFC, 128 px, chains of up to 4 ops",
        "2afc",
        {"patch_size": 128, "composition": {"p_compose": 1, "max_ops": 4}},
    ),
    (
        "2AFC worst case: 256 px (the cap), every item a chain of up to 4 ops, 20000 items asked",
        "2afc",
        {"patch_size": 256, "n_items": 20_000, "composition": {"p_compose": 1, "max_ops": 4}},
    ),
]


def _timed(kind: str, build_config: dict) -> float:
    from studies.preview import study_preview

    started = time.perf_counter()
    study_preview(kind=kind, build_config=build_config, owner=None)
    return time.perf_counter() - started


def run(*, repeats: int = 9, out: str | None = None) -> str:
    import studies.preview

    studies.preview._sources.clear()
    cold = _timed("2afc", {})
    rows = []
    for label, kind, build_config in CASES:
        times = [_timed(kind, build_config) for _ in range(repeats)]
        rows.append(f"| {label} | {statistics.median(times) * 1000:.0f} ms | {max(times) * 1000:.0f} ms |")
    markdown = "\n".join(
        [
            "## New-study live preview (`studies.preview.study_preview`, 4 items)",
            "",
            f"Machine: {machine_line()}. Command: `make bench` (`manage.py bench_preview`).",
            "",
            f"First preview of a process (it loads the bundled photos once): {cold:.1f} s. "
            f"Then {repeats} runs of each case:",
            "",
            "| options | median | slowest |",
            "|---|---|---|",
            *rows,
        ]
    )
    if out:
        write_section(out, SECTION, markdown)
    return markdown
