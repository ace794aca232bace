"""Benchmark: the platform's costs on the BAPPS-scale study next to a small one (issue 19, item 2).

Both studies come from crowdsim.scale (manage.py scale_study; built once, found again on reruns). Each
figure runs in a fresh child process (`bench_scale --figure NAME --study ID`), so that its peak RSS is its
own:

- retrain: the first retrain (backbone statistics of every item computed into the feature cache), then
  the retrain a new judgment triggers once `every` have arrived, with the cache warm, and the dashboard's
  read of the new numbers (as devtools.bench_training times it; the new judgments' items are in the cache
  already, so they add nothing to the warm figure, and the cached study is left as it was);
- pages: server time of the researcher's pages and API reads (django.test.Client in the process: the
  view, its queries and its template; no network), median of 3 after one warm-up, with their queries;
- export: the whole study's archive written to a file (exports.services.export_archive_write).

The load test's figures (assignment start and answer p99) come from `make loadtest-scale` (`manage.py
loadtest --study-id`), run against the scale study beside a fresh one.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from django.conf import settings

from devtools.reports import machine_line, write_section

RESULT = "BENCH_SCALE_RESULT "
FIGURES = ("pages", "export", "retrain")  # the longest last: a report is written after each
BENCH_USER = "bench-scale"


def _peak_rss_mb() -> float:
    """This process's peak RSS: VmHWM, which starts afresh at exec (getrusage's ru_maxrss is inherited
    across fork and exec on Linux, so a child would report its parent's peak)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # elsewhere: KiB on Linux, best effort


def _pages(study) -> dict:
    """Server time (median of 3 after a warm-up) and queries of each researcher read."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from rest_framework.test import APIClient

    from judgments.selectors import WORKERS_PER_PAGE

    user, _ = get_user_model().objects.get_or_create(
        username=BENCH_USER, defaults={"is_superuser": True, "is_staff": True}
    )
    web, api = Client(HTTP_HOST="localhost"), APIClient(HTTP_HOST="localhost")  # an ALLOWED_HOSTS name
    web.force_login(user)
    api.force_authenticate(user)
    n_workers = study.assignments.values("worker_id").distinct().count()
    middle = max(1, -(-n_workers // WORKERS_PER_PAGE) // 2)
    reads = {
        "study page": (web, f"/dashboard/{study.pk}/"),
        "workers page 1": (web, f"/dashboard/{study.pk}/workers/"),
        "workers page, middle": (web, f"/dashboard/{study.pk}/workers/?page={middle}"),
        "API study (progress, QC)": (api, f"/api/v1/studies/{study.pk}/"),
        "API workers page, middle": (api, f"/api/v1/studies/{study.pk}/workers/?page={middle}"),
        "API completions page 1": (api, f"/api/v1/studies/{study.pk}/completions/"),
        "completions CSV (every HIT, streamed)": (api, f"/api/v1/studies/{study.pk}/completions/?format=csv"),
    }
    out = {}
    for name, (client, url) in reads.items():
        seconds = []
        for _ in range(4):
            with CaptureQueriesContext(connection) as queries:
                t0 = time.perf_counter()
                response = client.get(url)
                if response.streaming:  # the time to the last byte
                    sum(len(piece) for piece in response.streaming_content)
                seconds.append(time.perf_counter() - t0)
            if response.status_code != 200:
                raise RuntimeError(f"GET {url}: {response.status_code}")
        out[name] = {
            "s": statistics.median(seconds[1:]),
            "first_s": seconds[0],  # this process's first view: templates compiled, the hour cache filled
            "queries": len(queries.captured_queries),
        }
    return out


def _export(study) -> dict:
    from exports.services import export_archive_write

    with tempfile.TemporaryDirectory(dir=settings.MEDIA_ROOT) as tmp:
        path = Path(tmp) / "export.zip"
        t0 = time.perf_counter()
        with open(path, "wb") as handle:
            summary = export_archive_write(study=study, fileobj=handle)
        seconds = time.perf_counter() - t0
        size = path.stat().st_size
    return {
        "s": seconds,
        "bytes": size,
        "n_items": summary["n_items"],
        "n_judgments": summary["n_judgments"],
        "restore_rows": sum(summary["restore_rows"].values()),
    }


def _retrain(study) -> dict:
    from core import storage
    from dashboard.selectors import dashboard_for
    from training.services import study_retrain

    # the first retrain computes every item's features: a cache left by an earlier run goes first (the
    # parts, the baseline distances and their local copies), else "cold" would read it
    storage.delete_tree(f"features/{study.pk}")
    t0 = time.perf_counter()
    cold = study_retrain(study=study)
    cold_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    warm = study_retrain(study=study)
    dashboard_for(study=study)
    warm_s = time.perf_counter() - t0
    if cold.get("status") != "done" or warm.get("status") != "done":
        raise RuntimeError(f"retrain did not run: {cold} / {warm}")
    return {"cold_s": cold_s, "warm_s": warm_s, "n_judgments": warm["n_judgments"]}


def figure(name: str, study_id: str) -> dict:
    """One figure on one study, in this process; adds this process's peak RSS."""
    from studies.models import Study

    study = Study.objects.get(pk=study_id)
    result = {"retrain": _retrain, "pages": _pages, "export": _export}[name](study)
    return {**result, "peak_rss_mb": _peak_rss_mb()}


def _child(name: str, study_id: str) -> dict:
    """figure() in a fresh process (its own peak RSS)."""
    manage = Path(__file__).resolve().parents[2] / "manage.py"  # the checkout's root
    done = subprocess.run(
        [sys.executable, str(manage), "bench_scale", "--figure", name, "--study", str(study_id)],
        capture_output=True,
        text=True,
        env=os.environ,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT)]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"bench_scale --figure {name} failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len(RESULT) :])


def _study_line(label: str, study) -> str:
    from judgments.models import Assignment, Judgment

    n_judgments = Judgment.objects.filter(assignment__study=study).exclude(kind="practice").count()
    return (
        f"- {label}: `{study.pk}`, {study.items.filter(role='test').count():,} test items, "
        f"{n_judgments:,} judgments (practice aside), "
        f"{Assignment.objects.filter(study=study).count():,} HITs, "
        f"{study.assignments.values('worker_id').distinct().count():,} workers"
    )


def _fmt_s(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


def report(studies: dict, results: dict, *, params: dict, seconds: float) -> str:
    small, large = results["small"], results["scale"]
    cols = " | ".join(studies)
    lines = [
        "## BAPPS scale: the platform's costs at 187k items and 500k judgments",
        "",
        f"Machine: {machine_line()}. Command: `make bench-scale` (`python manage.py bench_scale`, "
        f"PostgreSQL), {seconds / 60:.0f} min in all. Studies (`manage.py scale_study`, crowdsim.scale: "
        "the paper's 2AFC split and categories; test items reuse "
        f"{params['distinct']:,} distinct engine triplets, so images are not what is measured; simulated "
        "crowd with 10 % spammers, HITs of 85 tests + 15 sentinels + 4 practice, as the paper):",
        "",
        *(_study_line(label, s) for label, s in studies.items()),
        "",
        "Each figure runs in its own process; peak RSS is that process's (Django, and torch where the "
        "figure imports it, included).",
        "",
        f"| figure | {cols} | target |",
        "|---|" + "---:|" * len(studies) + "---|",
    ]
    notes: list[str] = []
    for name in [k for k in small.get("pages", {}) if k != "peak_rss_mb"]:
        a, b = small["pages"][name], large["pages"][name]
        target = "" if "every HIT" in name else ("< 1 s: " + ("met" if b["s"] < 1 else "NOT met"))
        lines.append(
            f"| {name}: server time (queries) | {_fmt_s(a['s'])} ({a['queries']}) | "
            f"{_fmt_s(b['s'])} ({b['queries']}) | {target} |"
        )
    if "pages" in small:
        a, b = small["pages"]["peak_rss_mb"], large["pages"]["peak_rss_mb"]
        lines.append(f"| pages: peak RSS | {a:.0f} MB | {b:.0f} MB | |")
        first = large["pages"]["study page"].get("first_s")
        if first is not None:
            notes.append(
                f"Page times are the median of 3 views after a first one. The study page's first view in "
                f"a fresh process took {_fmt_s(first)} at BAPPS scale: templates compiled, and the "
                "judgments-per-hour chart counting its finished hours once into the cache (Redis in "
                "production, shared by every web process; here the process's own memory)."
            )
    if "export" in small:
        a, b = small["export"], large["export"]
        lines += [
            f"| export: time (archive size) | {_fmt_s(a['s'])} ({a['bytes'] / 1e6:.1f} MB) | "
            f"{_fmt_s(b['s'])} ({b['bytes'] / 1e6:.1f} MB) | reported |",
            f"| export: peak RSS | {a['peak_rss_mb']:.0f} MB | {b['peak_rss_mb']:.0f} MB | < 1 GB: "
            + ("met" if b["peak_rss_mb"] < 1024 else "NOT met")
            + " |",
        ]
    if "retrain" in small:
        a, b = small["retrain"], large["retrain"]
        lines += [
            f"| first retrain (features of every item) | {_fmt_s(a['cold_s'])} | {_fmt_s(b['cold_s'])} | |",
            f"| N-th judgment -> updated dashboard (features cached) | {_fmt_s(a['warm_s'])} | "
            f"{_fmt_s(b['warm_s'])} | <= 120 s: " + ("met" if b["warm_s"] <= 120 else "NOT met") + " |",
            f"| retrain: peak RSS | {a['peak_rss_mb']:.0f} MB | {b['peak_rss_mb']:.0f} MB | |",
        ]
    lines += [""] + [line for note in notes for line in (note, "")]
    lines += [
        "How the retrain grows: with features cached it never runs the trunk for an item seen before, nor "
        "reads an image (the baselines' distances are cached per item too), but it still does work in "
        "proportion to the study's judged items, not to the new judgments: it gathers every judged item's "
        "cached statistics (two rows of 1,152 float32 per 2AFC item for AlexNet: ~9 KB an item, from "
        "memory-mapped parts), fits the lin heads for a number of epochs over every train item (most of "
        "the time: one optimiser step per 50 items per epoch), and bootstraps CIs over the val items; "
        "counting the votes reads every judgment row once. So the N-th judgment costs O(items) at any N "
        "(plus O(judgments) for the vote count); it grows with judgments as they reach new items.",
        "",
        "Export size: the BAPPS tree copies every item's three PNGs, reused or not, so it has a 187k-item "
        "study's size; `restore/media` holds each distinct image once, so it holds the reused triplets' "
        "images only, where an engine-built study's would hold ~560k more (about 7 KB each at 64x64).",
        "",
        "Load test (assignment start and answer p99 against this study, beside a fresh study of its HIT "
        'size): `make loadtest-scale`, section "Load test: an existing large study next to a fresh one".',
    ]
    return "\n".join(lines)


def run(
    *, items: int, judgments: int, small_items: int, small_judgments: int, figures, distinct: int, out=None
) -> dict:
    from crowdsim.scale import ScaleParams, scale_study_build

    t0 = time.perf_counter()
    studies = {}
    for label, n_items, n_judgments in (("small", small_items, small_judgments), ("scale", items, judgments)):
        params = ScaleParams(items=n_items, judgments=n_judgments, distinct=min(distinct, n_items))
        studies[f"{label}"], _ = scale_study_build(params)
    results: dict = {label: {} for label in studies}
    headers = {
        "small": f"small ({small_judgments:,} judgments)",
        "scale": f"BAPPS scale ({judgments:,} judgments)",
    }
    for name in figures:
        for label, study in studies.items():
            results[label][name] = r = _child(name, study.pk)
            sys.stdout.write(f"{label} {name}: {json.dumps(r)}\n")
            sys.stdout.flush()
        if out:  # after each figure, so that a long last one leaves the others reported
            text = report(
                {headers[k]: v for k, v in studies.items()},
                results,
                params={"distinct": distinct},
                seconds=time.perf_counter() - t0,
            )
            write_section(out, "scale", text)
    return results
