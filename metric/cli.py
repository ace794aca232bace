"""python -m metric {distance, evaluate, train, hardware} (benchmarks against the reference: manage.py
bench_metric)

Trunks (--backbone-weights): auto (ImageNet when its weights file is present or can be fetched, else
k-means), imagenet, random, kmeans, or a .pth file such as the trunk.pth that `train` writes. A k-means
trunk is initialised on a seeded corpus of --kmeans-patches patches drawn from --kmeans-corpus FOLDER...
when given, else from the data given (--bapps / --manifest)."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from metric.backbones import KMEANS_CORPUS_SIZE
from metric.errors import MetricError
from metric.hardware import PRECISION_CHOICES


def _add_model_args(
    p: argparse.ArgumentParser, weights: str = "imagenet", corpus_default: str = "", net: bool = True
) -> None:
    if net:
        p.add_argument("--net", default="alex", help="alex | vgg | squeeze (default alex)")
    p.add_argument("--version", default="0.1", help="0.1 (default) or 0.0")
    p.add_argument(
        "--backbone-weights",
        default=weights,
        help="auto (ImageNet when its weights are present or can be fetched, else kmeans) | imagenet "
        "(torchvision, cached) | random | kmeans | PATH to a .pth, e.g. a trained trunk.pth "
        f"(default {weights})",
    )
    p.add_argument("--seed", type=int, default=0, help="seed for random/kmeans backbones and the corpus draw")
    p.add_argument(
        "--kmeans-corpus",
        nargs="+",
        metavar="FOLDER",
        help="folders of images for a k-means trunk (BAPPS folders or plain folders, read recursively, "
        f"resized to 64x64){corpus_default}; it takes every word up to the next option, so give "
        "positional arguments before it",
    )
    p.add_argument(
        "--kmeans-patches",
        type=int,
        default=KMEANS_CORPUS_SIZE,
        help=f"patches drawn (seeded) for the k-means corpus (default {KMEANS_CORPUS_SIZE})",
    )


def _add_data_args(p: argparse.ArgumentParser, *, split: str | None, jnd: bool) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--bapps", nargs="+", help="BAPPS folders, e.g. dataset/2afc/val/traditional (one per category)"
    )
    src.add_argument(
        "--manifest",
        help="a perceptlab JSONL manifest with votes, e.g. a study export's items.jsonl",
    )
    p.add_argument(
        "--split",
        default=split,
        help="manifest split to use, train or val "
        + (f"(default {split})" if split else "(default: every split in the manifest)"),
    )
    if jnd:
        p.add_argument("--jnd", action="store_true", help="the data is JND pairs (p0, p1, same)")


def _load(args):
    from metric import data

    jnd = getattr(args, "jnd", False)
    if args.manifest:
        return data.read_manifest(args.manifest, kind="jnd" if jnd else "2afc", split=args.split)
    return data.read_bapps_jnd(args.bapps) if jnd else data.read_bapps_2afc(args.bapps)


DEFAULT_METRICS = "lpips-alex,l2_lab,dssim_rgb,psnr,ms_ssim"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m metric", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("distance", help="LPIPS distance between two images")
    p.add_argument("img0")
    p.add_argument("img1")
    _add_model_args(p, corpus_default="; needed by kmeans (or pass a trained model's trunk.pth instead)")
    p.add_argument(
        "--heads",
        default=None,
        help="official | none (unweighted) | path to a head .pth (default official; on a trunk that is not "
        "ImageNet's, the official heads mean nothing, so there --heads or --model is required)",
    )
    p.add_argument(
        "--size", type=int, default=None, help="resize both images to SIZE x SIZE first (default: keep)"
    )
    p.add_argument(
        "--model",
        default=None,
        metavar="BUNDLE",
        help="a downloaded model bundle (zip or its folder); replaces --net, --heads, --backbone-weights",
    )

    p = sub.add_parser(
        "evaluate",
        help="2AFC (or JND mAP) per category with bootstrap CIs",
        description="The net of lpips-<net> and deep-<net> comes from the metric name (there is no --net).",
    )
    _add_data_args(p, split=None, jnd=True)
    _add_model_args(p, corpus_default="; default: the data evaluated", net=False)
    p.add_argument(
        "--metrics",
        default=None,
        help="comma-separated: l2_lab, l2_rgb, dssim_lab, dssim_rgb, psnr, ms_ssim, lpips-<net>, deep-<net> "
        f"(default {DEFAULT_METRICS}; with --model, the same without lpips-alex)",
    )
    p.add_argument(
        "--heads",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="trained heads for lpips-<net>; required for lpips-<net> on a trunk that is not ImageNet's "
        "(the official heads were trained on ImageNet trunks)",
    )
    p.add_argument(
        "--model",
        default=None,
        metavar="BUNDLE",
        help="a downloaded model bundle (zip or its folder), evaluated as one more metric named "
        "model:<file name>; --backbone-weights and --heads do not apply to it",
    )
    p.add_argument(
        "--precision",
        default="fp32",
        choices=list(PRECISION_CHOICES),
        help="fp32 (default) | bf16 | fp16 autocast for the LPIPS trunks | auto: bf16 where the CPU has "
        "bf16 units (AMX or AVX-512 BF16), else fp32; the report's `precision` says what ran and why",
    )
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--out", help="write the JSON report here")

    p = sub.add_parser("train", help="train LPIPS heads on 2AFC judgments")
    _add_data_args(p, split="train", jnd=False)
    _add_model_args(p, "auto", corpus_default="; default: the training data")
    p.add_argument("--variant", default="lin", choices=["lin", "tune", "scratch"])
    p.epilog = (
        "Trains on 2AFC judgments only; with --manifest, on its train split unless --split says otherwise."
    )
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--epochs-decay", type=int, default=5)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument(
        "--reference-loop", action="store_true", help="full forward passes instead of the fast lin path"
    )
    p.add_argument(
        "--out",
        required=True,
        help="output folder (heads.pth, rank.pth, config.json; trunk.pth unless the trunk is ImageNet's)",
    )

    sub.add_parser(
        "hardware",
        help="what this machine offers for reduced precision and what --precision auto picks (JSON)",
        description="The detection behind --precision auto and the benchmarks' machine lines "
        "(metric.hardware): CPU model and flags, torch's CPU capability and threads, the CUDA device.",
    )

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        return _run(args)
    except (MetricError, OSError) as exc:  # OSError: unreadable input files
        sys.stderr.write(f"error: {exc}\n")
        return 2


def _no_official_heads(what: str, weights: str, reason: str, fix: str) -> MetricError:
    return MetricError(
        f"{what} would run the official lpips heads on a {weights} trunk"
        + (f" ({reason})" if reason else "")
        + ", but they were trained on torchvision's ImageNet trunks, so its numbers would mean nothing: "
        + fix
    )


def _trunk(args) -> tuple[str, str]:
    """The weight source that will run and why (``auto`` resolved once, here)."""
    from metric.backbones import resolve_weights

    return resolve_weights(args.net, args.backbone_weights)


def _folder_corpus(args):
    from metric.data import read_image_folders

    return read_image_folders(args.kmeans_corpus, n=args.kmeans_patches, seed=args.seed)


def _corpus_from(args) -> str:
    if args.kmeans_corpus:
        return "--kmeans-corpus " + " ".join(args.kmeans_corpus)
    if getattr(args, "manifest", None):
        return f"--manifest {args.manifest}" + (f" (split {args.split})" if args.split else "")
    return "--bapps " + " ".join(getattr(args, "bapps", None) or [])


def _note_trunk(model, reason: str, args) -> None:
    """Record (and log) which trunk runs, why, and its k-means corpus."""
    if reason:
        model.weights_reason = reason
    if model.kmeans_corpus_info is not None:
        model.kmeans_corpus_info["from"] = _corpus_from(args)
    _log_trunk(model.describe())


def _log_trunk(desc: dict) -> None:
    line = f"trunk: {desc['net']} {desc['backbone_weights']}"
    if desc.get("backbone_reason"):
        line += f" ({desc['backbone_reason']})"
    corpus = desc.get("kmeans_corpus")
    if corpus:
        line += (
            f"; k-means corpus: {corpus['patches']} patches, seed {corpus['seed']}, digest "
            f"{corpus['digest']}, from {corpus.get('from', '?')}"
        )
    logging.getLogger("metric").info(line)


def _distance_model(args):
    """The model named by --net, --backbone-weights, --heads and the k-means options."""
    from metric.lpips import LPIPS

    weights, reason = _trunk(args)
    heads = None if args.heads == "none" else args.heads or "official"
    corpus = None
    if weights == "kmeans":
        if not args.kmeans_corpus:
            raise MetricError(
                (f"{reason}; " if reason else "")
                + "a k-means trunk needs the trunk it was trained with or a corpus: pass the model's trunk "
                "file (--backbone-weights OUT/trunk.pth, written by `python -m metric train`) or "
                "--kmeans-corpus FOLDER... (the same folders, seed and --kmeans-patches give the same trunk)"
            )
        corpus = _folder_corpus(args)
    model = LPIPS(
        net=args.net,
        version=args.version,
        backbone_weights=weights,
        head_weights=heads,
        seed=args.seed,
        kmeans_corpus=corpus,
        kmeans_patches=args.kmeans_patches,
        warn_official_heads=args.heads is not None,
    )
    if args.heads is None and model.heads_warning:  # the trunk is valid, but not one for these heads
        raise _no_official_heads(
            "distance",
            model.backbone.source,
            reason,
            "pass --model BUNDLE, --heads PATH (heads trained on this trunk), --heads none (unweighted) or "
            "--backbone-weights imagenet",
        )
    _note_trunk(model, reason, args)
    return model


def _distance(args, out) -> None:
    """The LPIPS distance between two images, with the model's description."""
    import torch

    from metric.data import load_patch, to_tensor

    if args.model:
        from metric.bundle import load_bundle

        model = load_bundle(args.model)
    else:
        model = _distance_model(args)
    try:
        a, b = (load_patch(p, args.size) for p in (args.img0, args.img1))
    except OSError as exc:
        raise MetricError(f"cannot read image: {exc}") from exc
    with torch.no_grad():
        d = float(model(to_tensor(a[None]), to_tensor(b[None])).flatten()[0])
    out.write(json.dumps({"distance": d, **model.describe(), "input_range": "[-1,1] from uint8"}) + "\n")


def _metrics(args, name: str, weights: str, reason: str, heads: dict, corpus=None) -> dict:
    from metric.evaluate import resolve_metrics
    from metric.lpips import LPIPS

    found = resolve_metrics(
        [name],
        backbone_weights=weights,
        version=args.version,
        seed=args.seed,
        heads=heads,
        kmeans_corpus=corpus,
        kmeans_patches=args.kmeans_patches,
    )
    for model in found.values():
        if isinstance(model, LPIPS):
            _note_trunk(model, reason, args)
    return found


def _evaluate(args, out) -> None:
    """The 2AFC (or JND) report of the named metrics, also written to --out when given."""
    from metric.backbones import kmeans_corpus, resolve_weights
    from metric.evaluate import evaluate_2afc, evaluate_jnd

    if any("=" not in h for h in args.heads):
        raise MetricError("--heads takes NAME=PATH, e.g. lpips-alex=runs/alex-lin/heads.pth")
    heads = dict(h.split("=", 1) for h in args.heads)
    if args.metrics is None:
        args.metrics = DEFAULT_METRICS.replace("lpips-alex,", "") if args.model else DEFAULT_METRICS
    names = [m for m in args.metrics.split(",") if m]
    # Models that need no data are built first (a bad name or missing weights fails before the data
    # is read); k-means trunks wait for their corpus, which by default is the data evaluated.
    metrics: dict = {}
    waiting: dict[str, str] = {}
    for name in names:
        net = name.split("-", 1)[1] if name.startswith(("lpips-", "deep-")) else None
        weights, reason = resolve_weights(net, args.backbone_weights) if net else (args.backbone_weights, "")
        if name.startswith("lpips-") and name not in heads and weights != "imagenet":
            raise _no_official_heads(
                name,
                weights,
                reason,
                f"pass --heads {name}=PATH (heads trained on this trunk), --model BUNDLE, deep-{net} for the "
                "unweighted distance, or --backbone-weights imagenet",
            )
        if net and weights == "kmeans":
            waiting[name] = reason
            metrics[name] = None  # keeps the order asked for
            continue
        metrics.update(_metrics(args, name, weights, reason, heads))
    if args.model:
        from pathlib import Path

        from metric.bundle import load_bundle

        bundle = load_bundle(args.model)
        _log_trunk(bundle.describe())
        metrics[f"model:{Path(args.model).name}"] = bundle
    data = _load(args)
    if waiting:
        corpus = (
            _folder_corpus(args)
            if args.kmeans_corpus
            else kmeans_corpus(
                *((data.p0, data.p1) if args.jnd else (data.ref, data.p0, data.p1)),
                n=args.kmeans_patches,
                seed=args.seed,
            )
        )
        for name, reason in waiting.items():
            metrics.update(_metrics(args, name, "kmeans", reason, heads, corpus))
    report = (
        evaluate_jnd(data, metrics)
        if args.jnd
        else evaluate_2afc(data, metrics, n_boot=args.n_boot, precision=args.precision, progress=True)
    )
    text = json.dumps(report, indent=2)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text + "\n")
    out.write(text + "\n")


def _train(args, out) -> None:
    """Trains the heads on 2AFC judgments and saves them to --out."""
    from metric.train import TrainConfig, build_model, train_heads, training_corpus, trunk_weights

    cfg = TrainConfig(
        net=args.net,
        variant=args.variant,
        version=args.version,
        backbone_weights=args.backbone_weights,
        epochs=args.epochs,
        epochs_decay=args.epochs_decay,
        lr=args.lr,
        batch_size=args.batch_size,
        seed=args.seed,
        kmeans_patches=args.kmeans_patches,
    )
    cfg.validate()
    data = _load(args)
    weights, reason = trunk_weights(cfg)
    corpus = None
    if weights == "kmeans":
        corpus = _folder_corpus(args) if args.kmeans_corpus else training_corpus(data, cfg)
    model = build_model(cfg, weights=(weights, reason), kmeans_corpus=corpus)
    _note_trunk(model, reason, args)
    result = train_heads(
        data, cfg, fast=not args.reference_loop and args.variant == "lin", progress=True, model=model
    )
    path = result.save(args.out)
    desc = result.model.describe()
    out.write(
        json.dumps(
            {
                "heads": str(path),
                "trunk": str(path.parent / "trunk.pth") if result.ships_trunk else None,
                "config": str(path.parent / "config.json"),
                "backbone": {
                    "weights": weights,
                    "source": desc["backbone_weights"],
                    "reason": desc.get("backbone_reason", ""),
                },
                "kmeans_corpus": desc.get("kmeans_corpus"),
                "seconds": round(result.seconds, 2),
                "final_loss": result.losses[-1],
            }
        )
        + "\n"
    )


def _hardware(args, out) -> None:
    """The detected machine, its explanations and what ``auto`` picks on the CPU and the GPU."""
    from metric.hardware import choose_precision, detect

    hw = detect()
    auto = {"cpu": choose_precision("auto", device="cpu", hardware=hw).describe()}
    if hw.cuda_name:
        auto["cuda"] = choose_precision("auto", device="cuda", hardware=hw).describe()
    report = {
        **hw.describe(),
        "machine": hw.machine_line(),
        "bf16": hw.bf16_explanation(),
        "cuda": hw.cuda_explanation(),
        "auto": auto,
    }
    out.write(json.dumps(report, indent=2) + "\n")


_COMMANDS = {"distance": _distance, "evaluate": _evaluate, "train": _train, "hardware": _hardware}


def _run(args) -> int:
    if getattr(args, "kmeans_patches", 1) < 1:
        raise MetricError(f"--kmeans-patches must be >= 1, got {args.kmeans_patches}")
    _COMMANDS[args.command](args, sys.stdout)
    return 0
