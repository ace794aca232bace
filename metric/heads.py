"""Non-negative 1x1 linear heads, stored in the reference's file format (`lin{k}.model.1.weight`)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from metric.errors import MetricError, WeightsUnavailableError

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
VERSIONS = ("0.0", "0.1")


class LinearHeads(nn.Module):
    """One Dropout + 1x1 conv (no bias) per tapped layer."""

    def __init__(self, channels: tuple[int, ...], *, use_dropout: bool = True):
        super().__init__()
        self.channels = tuple(channels)
        self.use_dropout = use_dropout
        self.dropout = nn.Dropout(p=0.5) if use_dropout else nn.Identity()
        self.convs = nn.ModuleList(nn.Conv2d(c, 1, kernel_size=1, bias=False) for c in channels)

    def forward_layer(self, k: int, diff: torch.Tensor) -> torch.Tensor:
        return self.convs[k](self.dropout(diff))

    @torch.no_grad()
    def clamp_(self) -> None:
        """Keep every head weight >= 0 (after each optimizer step)."""
        for conv in self.convs:
            conv.weight.clamp_(min=0)

    def flat_weights(self) -> torch.Tensor:
        return torch.cat([conv.weight.reshape(-1) for conv in self.convs])

    @torch.no_grad()
    def set_flat_weights(self, w: torch.Tensor) -> None:
        offset = 0
        for conv, c in zip(self.convs, self.channels, strict=True):
            conv.weight.copy_(w[offset : offset + c].reshape(1, c, 1, 1))
            offset += c

    # --- the reference's file format ---------------------------------------------------------------
    def reference_state_dict(self) -> dict[str, torch.Tensor]:
        return {
            f"lin{k}.model.1.weight": conv.weight.detach().cpu().clone() for k, conv in enumerate(self.convs)
        }

    def load_reference_state_dict(
        self, state: dict[str, torch.Tensor], *, source: str = "state dict"
    ) -> None:
        """Strict: every `lin{k}.model.1.weight` must be present with the right shape, nothing else
        may be, and every weight must be >= 0."""
        expected = {f"lin{k}.model.1.weight": (1, c, 1, 1) for k, c in enumerate(self.channels)}
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        if missing or unexpected:
            raise MetricError(
                f"head weights in {source} do not match: missing {missing}, unexpected {unexpected}"
            )
        for key, shape in expected.items():
            if not torch.is_tensor(state[key]):
                raise MetricError(f"{source}: {key} is a {type(state[key]).__name__}, not a tensor")
            if tuple(state[key].shape) != shape:
                raise MetricError(f"{source}: {key} has shape {tuple(state[key].shape)}, expected {shape}")
            if bool((state[key] < 0).any()):
                raise MetricError(f"{source}: {key} has negative weights; LPIPS heads must be >= 0")
        with torch.no_grad():
            for k, conv in enumerate(self.convs):
                conv.weight.copy_(state[f"lin{k}.model.1.weight"])


def official_head_path(net: str, version: str) -> Path:
    if version not in VERSIONS:
        raise MetricError(f"version must be one of {VERSIONS}, got {version!r}")
    return WEIGHTS_DIR / f"v{version}" / f"{net}.pth"


def load_head_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise WeightsUnavailableError(f"head weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a pickle payload, garbage, a truncated file: pickle, zip and torch errors
        raise MetricError(
            f"{path} is not a readable PyTorch weights file ({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise MetricError(f"{path} does not hold a state dict")
    return state


def save_head_file(heads: LinearHeads, path: str | os.PathLike) -> Path:
    """Save in the reference format, so `lpips.LPIPS(model_path=...)` loads it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(heads.reference_state_dict(), path)
    return path
