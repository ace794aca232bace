"""The one writer of benchmark reports.

Every benchmark (``make bench``, ``make loadtest``) builds its section as Markdown and hands it to
``write_section``, which puts it into the shared report file (docs/benchmarks.md) between the section's
own markers, ``<!-- name:begin -->`` and ``<!-- name:end -->``, and leaves the other sections alone.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np

__all__ = ["machine_line", "section_markers", "write_section"]

HEADER = "# Benchmarks\n\nWritten by `make bench`; numbers are from the machine named in each section.\n"


def machine_line(hardware=None) -> str:
    """The machine line of every section: CPU model, cores, the precision flags and torch's CPU
    capability, the GPU when there is one (``metric.hardware``: detected, never assumed), Python and
    numpy. ``hardware``: a ``metric.hardware.Hardware`` already detected (default: detect now)."""
    if hardware is None:
        from metric.hardware import detect

        hardware = detect()
    return f"{hardware.machine_line()}, Python {platform.python_version()}, numpy {np.__version__}"


def section_markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def write_section(path: str | os.PathLike, name: str, markdown: str) -> Path:
    """Replace section `name` of the report at `path` by `markdown` (its text without markers), or
    append it; a missing file starts with the report's header. Returns the path."""
    begin, end = section_markers(name)
    section = f"{begin}\n{markdown.strip()}\n{end}"
    path = Path(path)
    text = path.read_text() if path.exists() else HEADER
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
