"""python -m metric {distance, evaluate, train} (benchmarks against the reference: manage.py bench_metric)"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from metric.errors import MetricError


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--net", default="alex", help="alex | vgg | squeeze (default alex)")
    p.add_argument("--version", default="0.1", help="0.1 (default) or 0.0")
    p.add_argument(
        "--backbone-weights",
        default="imagenet",
        help="imagenet (torchvision, cached) | random | kmeans | path to a .pth (default imagenet)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed for random/kmeans backbones")


def _add_data_args(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--bapps", nargs="+", help="BAPPS folders, e.g. dataset/2afc/val/traditional (one per category)"
    )
    src.add_argument("--manifest", help="a perceptlab JSONL manifest")
    p.add_argument("--split", default=None, help="manifest split to use (train/val)")
    p.add_argument("--jnd", action="store_true", help="the data is JND pairs (p0, p1, same)")


def _load(args):
    from metric import data

    if args.manifest:
        return data.read_manifest(args.manifest, kind="jnd" if args.jnd else "2afc", split=args.split)
    return data.read_bapps_jnd(args.bapps) if args.jnd else data.read_bapps_2afc(args.bapps)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m metric", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("distance", help="LPIPS distance between two images")
    p.add_argument("img0")
    p.add_argument("img1")
    _add_model_args(p)
    p.add_argument("--heads", default="official", help="official | none (unweighted) | path to a head .pth")
    p.add_argument(
        "--size", type=int, default=None, help="resize both images to SIZE x SIZE first (default: keep)"
    )
    p.add_argument(
        "--model",
        default=None,
        metavar="BUNDLE",
        help="a downloaded model bundle (zip or its folder); replaces --net, --heads, --backbone-weights",
    )

    p = sub.add_parser("evaluate", help="2AFC (or JND mAP) per category with bootstrap CIs")
    _add_data_args(p)
    _add_model_args(p)
    p.add_argument(
        "--metrics",
        default="lpips-alex,l2_lab,dssim_rgb,psnr,ms_ssim",
        help="comma-separated: l2_lab, l2_rgb, dssim_lab, dssim_rgb, psnr, ms_ssim, lpips-<net>, deep-<net>",
    )
    p.add_argument(
        "--heads", action="append", default=[], metavar="NAME=PATH", help="trained heads for lpips-<net>"
    )
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--out", help="write the JSON report here")

    p = sub.add_parser("train", help="train LPIPS heads on 2AFC judgments")
    _add_data_args(p)
    _add_model_args(p)
    p.add_argument("--variant", default="lin", choices=["lin", "tune", "scratch"])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--epochs-decay", type=int, default=5)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument(
        "--reference-loop", action="store_true", help="full forward passes instead of the fast lin path"
    )
    p.add_argument("--out", required=True, help="output folder (heads.pth, rank.pth, config.json)")

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        return _run(args)
    except MetricError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2


def _distance(args, out) -> None:
    """The LPIPS distance between two images, with the model's description."""
    import torch

    from metric.data import load_patch, to_tensor
    from metric.lpips import LPIPS

    if args.model:
        from metric.bundle import load_bundle

        model = load_bundle(args.model)
    else:
        heads = None if args.heads == "none" else args.heads
        model = LPIPS(
            net=args.net,
            version=args.version,
            backbone_weights=args.backbone_weights,
            head_weights=heads,
            seed=args.seed,
        )
    try:
        a, b = (load_patch(p, args.size) for p in (args.img0, args.img1))
    except OSError as exc:
        raise MetricError(f"cannot read image: {exc}") from exc
    with torch.no_grad():
        d = float(model(to_tensor(a[None]), to_tensor(b[None])).flatten()[0])
    out.write(json.dumps({"distance": d, **model.describe(), "input_range": "[-1,1] from uint8"}) + "\n")


def _evaluate(args, out) -> None:
    """The 2AFC (or JND) report of the named metrics, also written to --out when given."""
    from metric.evaluate import evaluate_2afc, evaluate_jnd, resolve_metrics

    heads = dict(h.split("=", 1) for h in args.heads)
    metrics = resolve_metrics(
        [m for m in args.metrics.split(",") if m],
        backbone_weights=args.backbone_weights,
        version=args.version,
        seed=args.seed,
        heads=heads,
    )
    data = _load(args)
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
    from metric.train import TrainConfig, train_heads

    if args.jnd:
        raise MetricError("training uses 2AFC judgments")
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
    )
    result = train_heads(
        _load(args), cfg, fast=not args.reference_loop and args.variant == "lin", progress=True
    )
    path = result.save(args.out)
    out.write(
        json.dumps({"heads": str(path), "seconds": round(result.seconds, 2), "final_loss": result.losses[-1]})
        + "\n"
    )


_COMMANDS = {"distance": _distance, "evaluate": _evaluate, "train": _train}


def _run(args) -> int:
    _COMMANDS[args.command](args, sys.stdout)
    return 0
