"""Small helpers shared by evaluation and training: precision contexts and optional progress bars."""

from __future__ import annotations

import contextlib

import torch

from metric.hardware import PRECISIONS, check_precision

__all__ = ["PRECISIONS", "autocast", "progress_iter"]


def autocast(precision: str, device: torch.device):
    """No-op for fp32, else torch.autocast with bf16/fp16 on the device's type (``auto`` is resolved
    before: metric.hardware.choose_precision)."""
    check_precision(precision, allow_auto=False)
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def progress_iter(iterable, total: int, desc: str, enabled: bool, unit: str = "batch"):
    """The iterable, wrapped in a tqdm bar when enabled."""
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, dynamic_ncols=True)
