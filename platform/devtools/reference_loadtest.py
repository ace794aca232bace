"""`make loadtest-reference`: today's answer path against the tree issue 19 measured, on this machine.

Issue 19 measured `make loadtest` of commit REFERENCE["commit"] on a slower Xeon VM than the ones these
benchmarks ran on (REFERENCE: its paced web CPU per judgment, 3.9 ms, its PostgreSQL CPU and its
back-to-back ceiling). We cannot run on that VM. So this runs `make loadtest` of that commit's tree and of
this tree in turn, `rounds` times over, on this machine, and estimates today's figures on the issue's VM
as the issue's measurement times the ratio of today's tree to the reference here. The estimate assumes
that the ratio between the two trees (the same kind of work: Django, psycopg and Redis round trips in
Python) carries over from this machine to that one.

Each run gets a fresh database (LOAD_DATABASE_URL's name with `_reference` or `_today` appended) migrated
by its own tree; the reference tree is extracted from this repository's history (`git archive`) into a
temporary directory and runs on this tree's virtual environment. Both run the same load test command;
its report (a Markdown table whose layout both trees share) is parsed here. Not part of the test suite:
about 9 minutes for two rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parents[2]

# What issue 19 measured on its slower VM, and the tree it measured (docs/benchmarks.md of that commit has
# the same load test on an AMD EPYC VM: 1.9 ms of web CPU per judgment, bare /livez 4,655 requests/s).
REFERENCE_LIVEZ = 2073  # bare /livez requests/s on issue 19's VM (devtools.loadtest scales by it too)
REFERENCE = {
    "commit": "9029131",
    "machine": f"a 2.8 GHz Xeon VM (2 cores) where bare `/livez` does {REFERENCE_LIVEZ:,} requests/s",
    "web": 3.9,
    "postgres": 1.6,
    "back to back": 333.0,
}
WEB_CPU_TARGET_MS = 2.0  # issue 19's target for web CPU per judgment (devtools.loadtest's paced target too)
LOADTEST_ARGS = ("--clients", "200", "--seconds", "30")

_ROW = re.compile(r"^\|\s*(?P<label>[^|]+?)\s*\|\s*(?P<b2b>[^|]*?)\s*\|\s*(?P<paced>[^|]*?)\s*\|\s*$", re.M)
_LIVEZ = re.compile(r"\(`/livez`\), same clients and server: (\d+) requests/s")


class ReportError(ValueError):
    pass


def _numbers(cell: str) -> list[float]:
    return [float(x) for x in re.findall(r"\d+(?:\.\d+)?", cell)]


def parse_report(text: str) -> dict:
    """The figures of one `manage.py loadtest` report (back to back and paced runs): judgments/s, p99
    submit and next-batch latency (ms), CPU per judgment (ms: web, postgres, load generator) per run, and
    the bare endpoint's requests/s. Raises ReportError naming what is missing."""
    rows = {m["label"]: (m["b2b"], m["paced"]) for m in _ROW.finditer(text)}
    wanted = {
        "judgments": "judgments/s (acknowledged)",
        "submit": "submit latency p50 / p95 / p99",
        "next": "next-batch latency p50 / p95 / p99",
        "cpu": "CPU per judgment: web / PostgreSQL / load generator",
    }
    missing = [label for label in wanted.values() if label not in rows]
    livez = _LIVEZ.search(text)
    if missing or livez is None:
        raise ReportError(f"not a load test report: missing {missing or ['the /livez line']}")
    out = {"livez": float(livez.group(1))}
    for k, run in enumerate(("back to back", "paced")):
        cpu = _numbers(rows[wanted["cpu"]][k])
        if len(cpu) != 3:
            raise ReportError(f"unreadable {run} CPU figures: {rows[wanted['cpu']][k]!r}")
        submit, nxt = _numbers(rows[wanted["submit"]][k]), _numbers(rows[wanted["next"]][k])
        if run == "paced" and (len(submit) != 3 or len(nxt) != 3):  # back to back: not compared
            raise ReportError(
                f"unreadable paced latencies: {rows[wanted['submit']][k]!r}, {rows[wanted['next']][k]!r}"
            )
        out[run] = {
            "judgments_per_s": _numbers(rows[wanted["judgments"]][k])[0],
            "p99_ms": (submit[2], nxt[2]) if len(submit) == 3 and len(nxt) == 3 else None,
            "cpu_ms": dict(zip(("web", "postgres", "load generator"), cpu, strict=True)),
        }
    return out


def _database_url(base: str, suffix: str) -> tuple[str, str, str]:
    """(this run's database URL, the maintenance database's URL, the new database's name): the load test
    database's name with `_suffix`, never that database itself (PostgreSQL would cut a longer name to 63
    bytes, which could be the base name: refused)."""
    parts = urlparse(base)
    name = f"{parts.path.lstrip('/') or 'perceptlab_load'}_{suffix}"
    if len(name.encode()) > 63:
        raise SystemExit(f"database name {name!r} is longer than PostgreSQL's 63 bytes; use a shorter one")
    return urlunparse(parts._replace(path=f"/{name}")), urlunparse(parts._replace(path="/postgres")), name


def _drop_database(maintenance_url: str, name: str, *, create: bool = False) -> None:
    """Drop the run's database (its leftover connections closed: WITH (FORCE)), and create it afresh."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(maintenance_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if create:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


@contextlib.contextmanager
def reference_tree(commit: str):
    """This repository's tree at `commit`, extracted into a temporary directory, with this tree's virtual
    environment linked in; yields its path. A clone without that commit (a shallow one) is told how to
    fetch it."""
    known = subprocess.run(
        ["git", "-C", str(ROOT), "cat-file", "-e", f"{commit}^{{commit}}"], capture_output=True
    )
    if known.returncode != 0:
        raise SystemExit(
            f"commit {commit} (the tree issue 19 measured) is not in this clone; fetch the whole history "
            "(git fetch --unshallow) and run again"
        )
    with tempfile.TemporaryDirectory(prefix="perceptlab-reference-") as tmp:
        tree = Path(tmp)
        archive = subprocess.Popen(["git", "-C", str(ROOT), "archive", commit], stdout=subprocess.PIPE)
        with archive.stdout:
            subprocess.run(["tar", "-x", "-C", str(tree)], stdin=archive.stdout, check=True)
        if archive.wait() != 0:
            raise SystemExit(f"git archive {commit} failed")
        (tree / ".venv").symlink_to(Path(sys.prefix))
        yield tree


def run_tree(tree: Path, *, database_url: str, cache_url: str, suffix: str, log: Path) -> dict:
    """`make loadtest` of the tree at `tree` (a fresh database migrated by that tree), parsed."""
    url, maintenance, name = _database_url(database_url, suffix)
    _drop_database(maintenance, name, create=True)
    env = {k: v for k, v in os.environ.items() if k != "PERCEPTLAB_DATA_DIR"}  # each tree's own var/
    env.update({"DATABASE_URL": url, "CACHE_URL": cache_url, "PYTHONPATH": f"{tree / 'platform'}:{tree}"})
    python = sys.executable  # this environment (the reference tree links it as .venv too)
    subprocess.run([python, "manage.py", "migrate", "-v0"], cwd=tree, env=env, check=True)
    with open(log, "w") as out:
        done = subprocess.run(
            [python, "manage.py", "loadtest", *LOADTEST_ARGS],
            cwd=tree,
            env={**env, "DJANGO_SETTINGS_MODULE": "devtools.settings_loadtest"},
            stdout=subprocess.PIPE,
            stderr=out,
            text=True,
        )
        out.write(done.stdout)
    _drop_database(maintenance, name)
    if done.returncode != 0:
        raise SystemExit(f"the load test of {tree} failed ({done.returncode}); see {log}")
    return parse_report(done.stdout)


def estimate(rounds: list[dict]) -> dict:
    """Ratios today / reference of the mean paced web and PostgreSQL CPU per judgment and of the mean
    back-to-back ceiling over the rounds ({"reference": parsed, "today": parsed} each), and issue 19's
    figures times them."""
    mean = {
        tree: {
            "web": statistics.fmean(r[tree]["paced"]["cpu_ms"]["web"] for r in rounds),
            "postgres": statistics.fmean(r[tree]["paced"]["cpu_ms"]["postgres"] for r in rounds),
            "back to back": statistics.fmean(r[tree]["back to back"]["judgments_per_s"] for r in rounds),
        }
        for tree in ("reference", "today")
    }
    ratio = {k: mean["today"][k] / mean["reference"][k] for k in mean["today"]}
    return {"mean": mean, "ratio": ratio, "estimate": {k: REFERENCE[k] * ratio[k] for k in ratio}}


def report(rounds: list[dict], *, command: str, machine: str) -> str:
    rows = [
        "| round | tree | paced judgments/s | p99 submit / next batch | CPU per judgment: web / PostgreSQL "
        "| back-to-back judgments/s | /livez requests/s |",
        "|---:|---|---:|---|---|---:|---:|",
    ]
    for k, r in enumerate(rounds, 1):
        for tree, label in (("reference", f"reference ({REFERENCE['commit']})"), ("today", "today")):
            m = r[tree]
            paced, cpu = m["paced"], m["paced"]["cpu_ms"]
            rows.append(
                f"| {k} | {label} | {paced['judgments_per_s']:.0f} | "
                f"{paced['p99_ms'][0]:.0f} / {paced['p99_ms'][1]:.0f} ms | "
                f"{cpu['web']:.2f} / {cpu['postgres']:.2f} ms | {m['back to back']['judgments_per_s']:.0f} | "
                f"{m['livez']:.0f} |"
            )
    e = estimate(rounds)
    web = e["estimate"]["web"]
    verdict = "within" if web <= WEB_CPU_TARGET_MS else "over"
    return "\n".join(
        [
            "## Load test: today's tree against the tree issue 19 measured",
            "",
            f"Machine: {machine}. Command: `make loadtest-reference` (`{command}`): `make loadtest` "
            f"(`manage.py loadtest {' '.join(LOADTEST_ARGS)}`, back to back then paced) of the tree at "
            f"commit {REFERENCE['commit']}, which issue 19 measured on {REFERENCE['machine']} (paced web "
            f"CPU {REFERENCE['web']} ms per judgment, PostgreSQL {REFERENCE['postgres']} ms, back-to-back "
            f"ceiling {REFERENCE['back to back']:.0f} judgments/s), and of this tree, in turn on this "
            "machine, each on a fresh database. Each tree runs its own load test, so each sends answers "
            "as its own annotator page did (the reference one request per answer, today in batches), and "
            "only today's logs every request, as production does (about 0.03 ms of CPU per request here), "
            "so the estimate leans high. The reference reports CPU to one decimal.",
            "",
            *rows,
            "",
            f"Today / reference, means over the rounds: paced web CPU per judgment "
            f"{e['ratio']['web']:.2f}, PostgreSQL CPU {e['ratio']['postgres']:.2f}, back-to-back ceiling "
            f"{e['ratio']['back to back']:.2f}x.",
            "",
            f"Estimated on issue 19's VM (its figures times these ratios): web CPU per judgment "
            f"**{web:.2f} ms** ({verdict} the target of at most {WEB_CPU_TARGET_MS:g} ms), PostgreSQL "
            f"{e['estimate']['postgres']:.2f} ms, back-to-back ceiling "
            f"{e['estimate']['back to back']:.0f} judgments/s. This assumes the ratio between the two "
            "trees carries over from this machine to that one. The load test section's other estimate "
            "scales by bare `/livez` instead; between the AMD EPYC VM of the reference's own benchmarks "
            "and issue 19's Xeon VM, the reference's web CPU per judgment grew 2.05x (1.9 to 3.9 ms) while "
            "`/livez` fell 2.25x (4,655 to 2,073 requests/s), so that scaling overstates.",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="reference then today, this many times")
    parser.add_argument("--out", default=None, help="benchmarks markdown file to update")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    database_url = os.environ.get("DATABASE_URL", "")
    if not database_url.startswith("postgres"):
        parser.error("set DATABASE_URL to a PostgreSQL database (the load test's; make sets it)")
    cache_url = os.environ.get("CACHE_URL", "redis://127.0.0.1:6379/15")
    from devtools.reports import machine_line, write_section

    logs = ROOT / "var"
    logs.mkdir(exist_ok=True)
    rounds = []
    with reference_tree(REFERENCE["commit"]) as reference:
        for k in range(1, args.rounds + 1):
            measured = {}
            for tree, path in (("reference", reference), ("today", ROOT)):
                sys.stderr.write(f"round {k}: {tree} ...\n")
                measured[tree] = run_tree(
                    path,
                    database_url=database_url,
                    cache_url=cache_url,
                    suffix=tree,
                    log=logs / f"loadtest-reference-{tree}-{k}.log",
                )
            rounds.append(measured)
    command = f"python -m devtools.reference_loadtest --rounds {args.rounds}"
    text = report(rounds, command=command, machine=machine_line())
    sys.stdout.write(text + "\n")
    if args.out:
        write_section(args.out, "loadtest-reference", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
