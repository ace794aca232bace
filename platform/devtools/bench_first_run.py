"""Time `make run` on an empty data dir as a newcomer meets it (docs/first-run.md).

Cold: a fresh data dir; the clock starts when `make run` (or its three manage.py steps) starts and stops
when the home page and then the annotator URL it printed answer 200. Then, on the same run, the milestones
of the simulated study (read from the run's SQLite database): first judgment, first evaluation, 3 learning-
curve points, the crowd's finished export; and the CNN pool's progress. Ctrl-C (SIGINT to the process
group, as a terminal sends it) stops the run; the time until every process has exited is reported. Warm: a
second run on the same data dir, to the first page. Writes the `first-run` section of docs/benchmarks.md.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from devtools.processes import ROOT, free_port
from devtools.reports import machine_line, write_section

MANAGE_STEPS = "{py} manage.py migrate --noinput && {py} manage.py demo_setup && exec {py} manage.py rundev"

# (label, SQL giving a true value once reached); the simulated study is the demo study with simulation on
_CROWD = "(select id from studies_study where is_demo and json_extract(config, '$.simulation') = 1)"
MILESTONES = [
    (
        "first simulated judgment",
        f"select count(*) from judgments_judgment j join studies_item i on "
        f"j.item_id = i.id where i.study_id = {_CROWD}",
    ),
    (
        "first evaluation on the dashboard (agreement, human ceiling)",
        f"select count(*) from training_evaluation where study_id = {_CROWD}",
    ),
    (
        "a trained LPIPS model ready for download",
        f"select count(*) from training_modelversion where study_id = {_CROWD} and status = 'ready'",
    ),
    (
        "3 learning-curve points",
        f"select count(distinct n_judgments) >= 3 from training_evaluation where study_id = {_CROWD}",
    ),
    (
        "crowd finished: export done",
        f"select count(*) from exports_export where study_id = {_CROWD} and status = 'done'",
    ),
    (
        "CNN pool trained, its items in the 2AFC demo",
        "select count(*) from studies_backgroundjob where name = 'cnn_pool' and state = 'done'",
    ),
]


def sigint_default() -> None:
    """In the child before exec: SIGINT's default action, as a terminal's foreground job has it (a benchmark
    started in the background of a script inherits an ignored SIGINT, and would pass that on)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def http_status(url: str) -> int | None:
    """The status of GET url, None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status
    except OSError:
        return None


def _start(command: str, env: dict, log: Path) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen(
            ["bash", "-c", command],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=sigint_default,
        )


def _first_page(proc, log: Path, base: str, t0: float, limit_s: float) -> tuple[float, float]:
    """Seconds to GET / = 200, then to the printed annotator URL = 200."""
    home = annot = None
    while time.monotonic() - t0 < limit_s and proc.poll() is None:
        if home is None and http_status(base + "/") == 200:
            home = time.monotonic() - t0
        if home is not None:
            m = re.search(r"annotator : (\S+/s/\S+/)", log.read_text())
            if m and http_status(m.group(1)) == 200:
                annot = time.monotonic() - t0
                break
        time.sleep(0.2)
    if annot is None:
        raise RuntimeError(f"no annotator page within {limit_s:.0f} s; log:\n{log.read_text()[-3000:]}")
    return home, annot


def _milestones(db: Path, t_first: float, t0: float, watch_s: float, proc) -> dict[str, float | None]:
    reached: dict[str, float | None] = {label: None for label, _ in MILESTONES}
    pool = None
    while time.monotonic() - t0 - t_first < watch_s and proc.poll() is None:
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
                for label, sql in MILESTONES:
                    if reached[label] is None and con.execute(sql).fetchone()[0]:
                        reached[label] = time.monotonic() - t0 - t_first
                pool = con.execute(
                    "select done, total from studies_backgroundjob where name = 'cnn_pool'"
                ).fetchone()
        except sqlite3.Error:
            pass
        if all(v is not None for v in reached.values()):
            break
        time.sleep(1.0)
    reached["_pool"] = pool
    return reached


def _stop(proc) -> float:
    t = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return float("inf")
    deadline = time.monotonic() + 30  # the group's other members (workers, crowd) too
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
        return float("inf")
    return time.monotonic() - t


def run(
    *, via: str = "make", watch_s: float = 420.0, out: str | None = None, limit_s: float = 300.0, log=None
) -> dict:
    data = Path(tempfile.mkdtemp(prefix="perceptlab-first-run-"))
    port = free_port()
    env = {
        **os.environ,
        "PERCEPTLAB_DATA_DIR": str(data),
        "PORT": str(port),
        "PYTHONUNBUFFERED": "1",
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DATABASE_URL": "",
        "CELERY_BROKER_URL": "",
        "CELERY_RESULT_BACKEND": "",
    }
    command = "make run" if via == "make" else MANAGE_STEPS.format(py=sys.executable)
    base = f"http://127.0.0.1:{port}"
    result: dict = {"command": command if via == "make" else "manage.py migrate, demo_setup, rundev"}
    try:
        for phase in ("cold", "warm"):
            logfile = data.parent / f"{data.name}-{phase}.log"
            result.setdefault("load", []).append(os.getloadavg()[0])
            t0 = time.monotonic()
            proc = _start(command, env, logfile)
            try:
                home, annot = _first_page(proc, logfile, base, t0, limit_s)
                result[phase] = {"home": home, "annotator": annot}
                if phase == "cold" and watch_s:
                    result["milestones"] = _milestones(data / "db.sqlite3", annot, t0, watch_s, proc)
            finally:
                result[phase + "_stop"] = _stop(proc)
            if log:
                log(f"{phase}: home {home:.1f} s, annotator {annot:.1f} s")
    finally:
        shutil.rmtree(data, ignore_errors=True)
        for phase in ("cold", "warm"):
            (data.parent / f"{data.name}-{phase}.log").unlink(missing_ok=True)
    if out:
        write_section(out, "first-run", report(result, watch_s=watch_s))
    return result


def _s(v) -> str:
    return "not reached" if v is None else ("did not stop" if v == float("inf") else f"{v:.1f} s")


def report(r: dict, *, watch_s: float) -> str:
    lines = [
        "## First run: `make run` on an empty data dir",
        f"Machine: {machine_line()}. Command: `make bench-first-run` (`manage.py bench_first_run`), which "
        f"runs {r['command']} on a fresh data dir twice (cold, then warm on the same dir) and stops each "
        "run with SIGINT to its process group, as Ctrl-C does. The virtualenv exists already.",
        "",
        "One-minute load average when each run started: "
        + ", ".join(f"{x:.1f}" for x in r.get("load", []))
        + (
            " (above the core count: other jobs shared the machine, so these figures are slower than an "
            "idle machine's)."
            if max(r.get("load", [0]), default=0) > (os.cpu_count() or 1)
            else "."
        ),
        "",
        "| run | home page answers | annotator URL answers | Ctrl-C until every process exited | target |",
        "|---|---:|---:|---:|---|",
    ]
    for phase, target in (("cold", 60), ("warm", 15)):
        if phase in r:
            ok = "met" if r[phase]["annotator"] <= target else "**not met**"
            lines.append(
                f"| {phase} | {_s(r[phase]['home'])} | {_s(r[phase]['annotator'])} | "
                f"{_s(r.get(phase + '_stop'))} | annotator < {target} s: {ok} |"
            )
    ms = r.get("milestones")
    if ms:
        pool = ms.pop("_pool", None)
        lines += [
            "",
            f"After the annotator URL answered (cold run, watched for up to {watch_s:.0f} s; the simulated "
            "crowd is paced; the CNN pool trains at nice 10 with one torch thread fewer than the cores):",
            "",
            "| milestone | seconds after the first page |",
            "|---|---:|",
        ]
        lines += [f"| {label} | {_s(v)} |" for label, v in ms.items()]
        if pool:
            lines.append(f"| CNN pool models done when the watch ended | {pool[0]} of {pool[1]} |")
        lines.append("")
        lines.append(
            "Target: the simulated study's dashboard filled (evaluations, several curve points, "
            "a finished export) within 300 s of the first page."
        )
    return "\n".join(lines)
