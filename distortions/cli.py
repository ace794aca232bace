"""python -m distortions {list, describe, build-study, contact-sheet, train-cnn-pool, bench}"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from pathlib import Path

from distortions.errors import DistortionError

# The CNN pool's feature term, by name: the engine never imports the metric library; this CLI loads the
# factory when it trains a pool (the wheel ships both libraries), as the platform passes it directly.
DEFAULT_FEATURE_DISTANCE = "metric.features:cnn_feature_distance"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m distortions", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_list = sub.add_parser("list", help="print one registered distortion name per line")
    p_list.add_argument("--family", help="only this family")
    sub.add_parser("describe", help="print each distortion's family, params and severity mapping as JSON")
    p_build = sub.add_parser("build-study", help="build a study from a JSON config into OUTDIR")
    p_build.add_argument("config", help="path to the JSON config (see distortions/dataset.py)")
    p_build.add_argument("outdir")
    p_build.add_argument("--jobs", type=int, default=None, help="worker processes (default: all cores)")
    p_build.add_argument("--no-progress", action="store_true")
    p_sheet = sub.add_parser("contact-sheet", help="PNG of every distortion at 5 severities")
    p_sheet.add_argument("out", nargs="?", default="docs/contact_sheet.png")
    p_pool = sub.add_parser("train-cnn-pool", help="train a pool of CNN autoencoders (the 'cnn' family)")
    p_pool.add_argument("outdir")
    p_pool.add_argument("--models", type=int, default=16, help="number of architectures (paper: 96)")
    p_pool.add_argument("--seed", type=int, default=0)
    p_pool.add_argument("--steps", type=int, default=200, help="training steps per model")
    p_pool.add_argument("--batch-size", type=int, default=12)
    p_pool.add_argument(
        "--snapshots",
        default=None,
        help="comma-separated steps (default: 2.5%%, 12.5%%, 40%%, 100%% of steps)",
    )
    p_pool.add_argument("--corpus", type=int, default=512, help="training patches")
    p_pool.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p_pool.add_argument("--jobs", type=int, default=None, help="parallel models on CPU (default: all cores)")
    p_pool.add_argument(
        "--feature-distance",
        default=DEFAULT_FEATURE_DISTANCE,
        metavar="MODULE:FUNCTION",
        help="factory f(device) of the feature-loss network, named, not imported by the engine (default: "
        f"{DEFAULT_FEATURE_DISTANCE}, the unweighted LPIPS-alex distance of the metric library that ships "
        "with it; 'none': the loss is L1 + adversarial only)",
    )
    p_bench = sub.add_parser("bench", help="print items/s per distortion and 2AFC triplets/s as Markdown")
    p_bench.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    p_bench.add_argument("--no-cnn", action="store_true", help="skip timing the CNN pool training (minutes)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        return _run(args)
    except DistortionError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2


def _list(args, out) -> None:
    from distortions import registry

    for name in registry.names(args.family):
        out.write(name + "\n")


def _describe(args, out) -> None:
    from distortions import registry

    rows = []
    for name in registry.names():
        cls = registry.get(name)
        rows.append(
            {
                "name": name,
                "family": cls.family,
                "summary": cls.summary,
                "severity": cls.severity_doc,
                "params": {k: [p.kind.__name__, p.low, p.high] for k, p in cls.params_schema.items()},
            }
        )
    out.write(json.dumps(rows, indent=2) + "\n")


def _build_study(args, out) -> None:
    from distortions.dataset import build_study

    path = Path(args.config)
    if not path.is_file():
        raise DistortionError(f"config file not found: {path}")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DistortionError(f"{path} is not valid JSON: {exc}") from exc
    summary = build_study(config, args.outdir, jobs=args.jobs, progress=not args.no_progress)
    out.write(json.dumps({k: summary[k] for k in ("n_items", "counts", "manifest_sha256")}) + "\n")


def _contact_sheet(args, out) -> None:
    from distortions.contact_sheet import contact_sheet

    out.write(f"wrote {contact_sheet(args.out)}\n")


def _train_cnn_pool(args, out) -> None:
    from distortions.cnn.trainer import Budget, train_pool

    snaps = (
        [int(x) for x in args.snapshots.split(",")]
        if args.snapshots
        else sorted({max(1, round(args.steps * f)) for f in (0.025, 0.125, 0.4, 1.0)})
    )
    budget = Budget(steps=args.steps, batch_size=args.batch_size, snapshots=snaps)
    pool = train_pool(
        args.outdir,
        n_models=args.models,
        seed=args.seed,
        budget=budget,
        corpus=args.corpus,
        jobs=args.jobs,
        device=args.device,
        feature_distance=_import_callable(args.feature_distance),
    )
    out.write(
        json.dumps(
            {
                "pool": str(Path(args.outdir) / "pool.json"),
                "models": len(pool["models"]),
                "device": pool["device"],
            }
        )
        + "\n"
    )


def _bench(args, out) -> None:
    from distortions.bench import run_bench

    out.write(run_bench(seconds=args.seconds, cnn=not args.no_cnn) + "\n")


_COMMANDS = {
    "list": _list,
    "describe": _describe,
    "build-study": _build_study,
    "contact-sheet": _contact_sheet,
    "train-cnn-pool": _train_cnn_pool,
    "bench": _bench,
}


def _run(args) -> int:
    _COMMANDS[args.command](args, sys.stdout)
    return 0


def _import_callable(target: str | None):
    """'package.module:function' -> the function ('none' -> None)."""
    if target is None or target == "none":
        return None
    module_name, _, attr = target.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        message = (
            f"--feature-distance {target!r}: cannot import it ({exc}); expected module:function, "
            "or none to train without a feature term"
        )
        raise DistortionError(message) from exc
