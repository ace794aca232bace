"""Generator (encoder-decoder with optional skips) and a small PatchGAN discriminator."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from distortions.cnn.space import ArchSpec


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    return nn.Identity()


class _Up(nn.Module):
    def __init__(self, method: str, cin: int, cout: int, factor: int):
        super().__init__()
        self.method, self.factor = method, factor
        if factor == 1:
            self.op = nn.Conv2d(cin, cout, 3, padding=1)
        elif method == "transpose":
            self.op = nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1)
        elif method == "pixelshuffle":
            self.op = nn.Sequential(nn.Conv2d(cin, cout * 4, 3, padding=1), nn.PixelShuffle(2))
        else:
            self.op = nn.Conv2d(cin, cout, 3, padding=1)

    def forward(self, x):
        if self.factor == 2 and self.method in ("bilinear", "nearest"):
            x = F.interpolate(
                x,
                scale_factor=2,
                mode=self.method,
                **({"align_corners": False} if self.method == "bilinear" else {}),
            )
        return self.op(x)


class Generator(nn.Module):
    """Level i of the encoder halves the resolution (level 0 by first_stride); the decoder mirrors it,
    concatenating the encoder's activation at skip levels. Output: tanh, in [-1, 1]."""

    def __init__(self, spec: ArchSpec):
        super().__init__()
        self.spec = spec
        chans = [min(spec.first_channels * 2**i, spec.max_channels) for i in range(spec.n_layers)]
        self.strides = [spec.first_stride] + [2] * (spec.n_layers - 1)
        self.skips = set(spec.skip_layers)
        self.top_skip = spec.force_top_skip
        enc, cin = [], 3
        for i, c in enumerate(chans):
            enc.append(
                nn.Sequential(
                    nn.Conv2d(cin, c, 4 if self.strides[i] == 2 else 3, stride=self.strides[i], padding=1),
                    _norm(spec.norm if i else "none", c),
                    nn.LeakyReLU(0.2),
                )
            )
            cin = c
        self.encoder = nn.ModuleList(enc)
        dec = []
        for i in reversed(range(spec.n_layers)):
            cout = chans[i - 1] if i > 0 else spec.first_channels
            extra = chans[i - 1] if (i > 0 and i in self.skips) else 0
            block = [_Up(spec.upsample, chans[i], cout, self.strides[i]), _norm(spec.norm, cout), nn.ReLU()]
            if i in spec.dropout_layers:
                block.append(nn.Dropout(0.5))
            dec.append(
                nn.ModuleDict(
                    {
                        "up": nn.Sequential(*block),
                        "merge": nn.Conv2d(cout + extra, cout, 1) if extra else nn.Identity(),
                    }
                )
            )
        self.decoder = nn.ModuleList(dec)
        self.head = nn.Conv2d(spec.first_channels + (3 if self.top_skip else 0), 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inp, feats = x, []
        for layer in self.encoder:
            x = layer(x)
            feats.append(x)
        for j, i in enumerate(reversed(range(self.spec.n_layers))):
            x = self.decoder[j]["up"](x)
            if i > 0 and i in self.skips:
                x = self.decoder[j]["merge"](torch.cat([x, feats[i - 1]], dim=1))
        if self.top_skip:
            x = torch.cat([x, inp], dim=1)
        return torch.tanh(self.head(x))


class Discriminator(nn.Module):
    def __init__(self, layers: int = 3, channels: int = 32):
        super().__init__()
        mods, cin = [], 3
        for i in range(layers):
            cout = channels * 2**i
            mods += [nn.Conv2d(cin, cout, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            cin = cout
        mods.append(nn.Conv2d(cin, 1, 3, padding=1))
        self.model = nn.Sequential(*mods)

    def forward(self, x):
        return self.model(x)
