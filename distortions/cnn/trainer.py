"""Training autoencoders with snapshots, exact resume after a crash, and pools of models.

A run directory holds ``spec.json``, ``latest.pt`` (everything needed to resume: weights, optimiser
states, RNG states, step; rewritten atomically), ``snapshot_<step>.pt`` (generator weights + spec + step)
and, when finished, ``done.json``. A killed run restarted on the same directory continues from
``latest.pt`` and ends with the same weights as an uninterrupted run (on the same machine and threads).

The feature term of the loss (``ArchSpec.feature_weight``) needs a deep-feature network, which this
library does not own: the caller passes ``feature_distance``, a picklable factory ``f(device)`` that
returns a module ``d(x, y)`` giving a per-image distance for N x 3 x H x W batches in [-1, 1]: the
unweighted LPIPS-alex ``metric.features.cnn_feature_distance``, which the platform passes and
``python -m distortions train-cnn-pool`` names by default (``--feature-distance module:function`` names
another; ``none`` or no factory leaves the feature term out: L1 plus the adversarial term).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import multiprocessing
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from distortions._parallel import ordered_map
from distortions.cnn.model import Discriminator, Generator
from distortions.cnn.space import ArchSpec, sample_specs
from distortions.errors import DistortionError

logger = logging.getLogger(__name__)


@dataclass
class Budget:
    """CPU default: ~16 models in minutes on 2 cores. Paper scale: see docs/distortions.md."""

    steps: int = 200
    batch_size: int = 12
    snapshots: list = field(default_factory=lambda: [5, 25, 80, 200])
    checkpoint_every: int = 20

    def validate(self) -> Budget:
        if self.steps < 1 or self.batch_size < 1 or self.checkpoint_every < 1:
            raise DistortionError("steps, batch_size and checkpoint_every must be >= 1")
        if (
            not self.snapshots
            or sorted(set(self.snapshots)) != list(self.snapshots)
            or self.snapshots[-1] != self.steps
        ):
            raise DistortionError("snapshots must be increasing step numbers ending at steps")
        return self


# --- input corruption (the "denoising" part) -------------------------------------------------------------
def _pink(shape, gen: torch.Generator) -> torch.Tensor:
    n, c, h, w = shape
    white = torch.randn(shape, generator=gen)
    fy = torch.fft.fftfreq(h).reshape(-1, 1)
    fx = torch.fft.rfftfreq(w).reshape(1, -1)
    f = torch.sqrt(fx**2 + fy**2)
    f[0, 0] = 1.0
    amp = f.pow(-0.5)
    amp[0, 0] = 0.0
    shaped = torch.fft.irfft2(torch.fft.rfft2(white) * amp, s=(h, w))
    return shaped / shaped.std(dim=(2, 3), keepdim=True).clamp_min(1e-8)


def corrupt(x: torch.Tensor, spec: ArchSpec, gen: torch.Generator) -> torch.Tensor:
    """x in [-1, 1]; deterministic given the generator's state."""
    s = spec.corruption_strength
    if spec.corruption == "none" or s == 0:
        return x
    if spec.corruption == "white_noise":
        return (x + 0.4 * s * torch.randn(x.shape, generator=gen)).clamp(-1, 1)
    if spec.corruption == "pink_noise":
        return (x + 0.4 * s * _pink(x.shape, gen)).clamp(-1, 1)
    if spec.corruption == "grayscale":
        gray = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).expand_as(x)
        return (1 - s) * x + s * gray
    factor = 4 if s > 0.5 else 2  # downsample
    small = F.avg_pool2d(x, factor)
    return F.interpolate(small, size=x.shape[2:], mode="bilinear", align_corners=False)


# f(device) -> a module d(x, y) of per-image distances (see the module docstring)
FeatureDistance = Callable[[torch.device], torch.nn.Module]


def _atomic_save(obj, path: Path) -> str:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    data = buffer.getvalue()
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    tmp.replace(path)
    return hashlib.sha256(data).hexdigest()


@dataclass
class _Nets:
    """The networks, optimisers, feature distance and data generator of one training run."""

    generator: Generator
    opt_g: torch.optim.Optimizer
    disc: Discriminator | None
    opt_d: torch.optim.Optimizer | None
    feature: torch.nn.Module | None
    data_gen: torch.Generator


def _build_nets(spec: ArchSpec, dev: torch.device, feature_distance: FeatureDistance | None) -> _Nets:
    """Seeds torch with the spec, then builds the generator before the discriminator (the init order)."""
    torch.manual_seed(spec.seed)
    gen_model = Generator(spec).to(dev)
    disc = Discriminator(spec.disc_layers).to(dev) if spec.adversarial_weight > 0 else None
    opt_g = torch.optim.Adam(gen_model.parameters(), lr=spec.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=spec.lr, betas=(0.5, 0.999)) if disc is not None else None
    feature = feature_distance(dev) if spec.feature_weight > 0 and feature_distance is not None else None
    data_gen = torch.Generator().manual_seed(spec.seed + 1)
    return _Nets(gen_model, opt_g, disc, opt_d, feature, data_gen)


def _resume(nets: _Nets, latest: Path, dev: torch.device) -> tuple[int, list]:
    """Restores weights, optimisers and both RNG states from ``latest.pt``; returns (step, snapshots)."""
    state = torch.load(latest, map_location=dev, weights_only=False)
    nets.generator.load_state_dict(state["generator"])
    nets.opt_g.load_state_dict(state["opt_g"])
    if nets.disc is not None:
        nets.disc.load_state_dict(state["disc"])
        nets.opt_d.load_state_dict(state["opt_d"])
    nets.data_gen.set_state(state["data_rng"])
    torch.set_rng_state(state["torch_rng"])
    return state["step"], state["snapshots"]


def _train_step(
    nets: _Nets, spec: ArchSpec, patches: torch.Tensor, batch_size: int, dev: torch.device
) -> torch.Tensor:
    """One generator update (then one discriminator update); returns the generator loss."""
    idx = torch.randint(0, len(patches), (batch_size,), generator=nets.data_gen)
    target = patches[idx]
    inp = corrupt(target.cpu(), spec, nets.data_gen).to(dev)
    out = nets.generator(inp)
    loss = F.l1_loss(out, target)
    if nets.feature is not None:
        loss = loss + spec.feature_weight * nets.feature(out, target).mean()
    if nets.disc is not None:
        logits = nets.disc(out)
        loss = loss + spec.adversarial_weight * F.binary_cross_entropy_with_logits(
            logits, torch.ones_like(logits)
        )
    nets.opt_g.zero_grad(set_to_none=True)
    loss.backward()
    nets.opt_g.step()
    if nets.disc is not None:
        real, fake = nets.disc(target), nets.disc(out.detach())
        d_loss = F.binary_cross_entropy_with_logits(
            real, torch.ones_like(real)
        ) + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))
        nets.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        nets.opt_d.step()
    return loss


def _save_latest(nets: _Nets, step: int, snapshots: list, latest: Path) -> None:
    """Everything needed to resume exactly: weights, optimiser states, RNG states, step, snapshots."""
    _atomic_save(
        {
            "generator": nets.generator.state_dict(),
            "opt_g": nets.opt_g.state_dict(),
            "disc": nets.disc.state_dict() if nets.disc is not None else None,
            "opt_d": nets.opt_d.state_dict() if nets.opt_d is not None else None,
            "data_rng": nets.data_gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "step": step,
            "snapshots": snapshots,
        },
        latest,
    )


def _save_snapshot(nets: _Nets, spec: ArchSpec, step: int, run: Path) -> dict:
    """Saves the generator at this step as ``snapshot_<step>.pt``; returns {"step", "file", "sha256"}."""
    name = f"snapshot_{step:06d}.pt"
    sha = _atomic_save(
        {"generator": nets.generator.state_dict(), "spec": spec.to_dict(), "step": step}, run / name
    )
    return {"step": step, "file": name, "sha256": sha}


def _progress_bar(total: int, initial: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True)


def train_autoencoder(
    spec: ArchSpec,
    patches: torch.Tensor,
    run_dir: str | os.PathLike,
    budget: Budget | None = None,
    *,
    device: str = "cpu",
    progress: bool = False,
    on_step=None,
    feature_distance: FeatureDistance | None = None,
) -> list[dict]:
    """Train (or resume) one autoencoder; returns its snapshots [{"step", "file", "sha256"}]."""
    budget = (budget or Budget()).validate()
    spec.validate()
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    done = run / "done.json"
    if done.exists():
        return json.loads(done.read_text())["snapshots"]
    (run / "spec.json").write_text(spec.to_json() + "\n")
    dev = torch.device(device)
    nets = _build_nets(spec, dev, feature_distance)
    step, snapshots = 0, []
    latest = run / "latest.pt"
    if latest.exists():
        step, snapshots = _resume(nets, latest, dev)
        logger.info("resuming %s at step %d", run, step)
    patches = patches.to(dev)
    bar = _progress_bar(budget.steps, step, run.name) if progress else None
    nets.generator.train()
    while step < budget.steps:
        loss = _train_step(nets, spec, patches, budget.batch_size, dev)
        step += 1
        if not math.isfinite(float(loss.detach())):
            raise DistortionError(f"{run}: loss diverged at step {step}")
        if step in budget.snapshots:
            snapshots.append(_save_snapshot(nets, spec, step, run))
        if step in budget.snapshots or step % budget.checkpoint_every == 0:
            _save_latest(nets, step, snapshots, latest)
        if bar is not None:
            bar.update(1)
        if on_step is not None:
            on_step(step, budget.steps)
    if bar is not None:
        bar.close()
    done.write_text(
        json.dumps({"snapshots": snapshots, "spec": spec.to_dict(), "budget": asdict(budget)}, indent=2)
    )
    return snapshots


# --- pools ------------------------------------------------------------------------------------------------
def corpus_patches(n: int = 512, seed: int = 0, source: dict | None = None) -> torch.Tensor:
    """Training patches (N x 3 x 64 x 64 in [-1, 1]) from a patch source (default: scikit-image photos)."""
    from distortions.sources import source_from_dict

    src = source_from_dict(source)
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(99,))))
    arr = np.stack([src.sample_patch(rng)[0] for _ in range(n)])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def _train_one(args) -> dict:
    index, spec_dict, run_dir, corpus_path, budget_dict, device, feature_distance = args
    torch.set_num_threads(1)
    patches = torch.load(corpus_path, weights_only=True)
    spec = ArchSpec.from_dict(spec_dict)
    snaps = train_autoencoder(
        spec, patches, run_dir, Budget(**budget_dict), device=device, feature_distance=feature_distance
    )
    return {"index": index, "dir": Path(run_dir).name, "spec": spec.to_dict(), "snapshots": snaps}


def train_pool(
    out_dir: str | os.PathLike,
    *,
    n_models: int = 16,
    seed: int = 0,
    budget: Budget | None = None,
    corpus: int = 512,
    jobs: int | None = None,
    device: str | None = None,
    progress: bool = True,
    on_progress=None,
    feature_distance: FeatureDistance | None = None,
) -> dict:
    """Sample n_models specs with the seed and train each (resumable; finished models are reused).
    Writes pool.json, the index the cnn_autoencoder distortion reads. ``feature_distance``: see the
    module docstring (a module-level function, so that the training processes can unpickle it)."""
    budget = (budget or Budget()).validate()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    corpus_path = out / f"corpus-{seed}-{corpus}.pt"
    if not corpus_path.exists():
        _atomic_save(corpus_patches(corpus, seed), corpus_path)
    specs = sample_specs(n_models, seed)
    tasks = [
        (
            i,
            s.to_dict(),
            str(out / f"model_{i:03d}"),
            str(corpus_path),
            asdict(budget),
            device,
            feature_distance,
        )
        for i, s in enumerate(specs)
    ]
    jobs = 1 if device != "cpu" else max(1, min(jobs or os.cpu_count() or 1, n_models))
    models = list(
        ordered_map(
            _train_one,
            tasks,
            jobs=jobs,
            context=multiprocessing.get_context("spawn"),
            progress=progress,
            desc="train CNN pool",
            unit="model",
            on_progress=on_progress,
        )
    )
    manifest = {
        "seed": seed,
        "n_models": n_models,
        "budget": asdict(budget),
        "device": device,
        "models": sorted(models, key=lambda m: m["index"]),
    }
    tmp = out / "pool.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    tmp.replace(out / "pool.json")
    return manifest
