"""Sequential composition of atomic distortions (the paper's "308 composed types").

Allowed chains (our decision; the paper never published its list):
- 1 to ``max_ops`` distinct atomic distortions;
- at most one op from each of the noise, blur, spatial and compression families (two noises or two
  blurs stack into one stronger op of the same kind, which the single-op family already covers);
  photometric ops may combine with each other (e.g. contrast then saturation);
- JPEG, if present, is last: compression ends an imaging pipeline, and noise on top of JPEG would
  hide its blocking artifacts;
- a CNN-autoencoder output stands alone (BAPPS keeps the families apart).

Each distortion class declares its part of these rules (``Distortion.stands_alone``,
``combines_within_family``, ``ends_chain``, ``opt_in``, ``category``); nothing here names a family.

With the 20 traditional ops this allows 287 ordered pairs (``allowed_pairs()``), against the
paper's 308 of 380.
"""

from __future__ import annotations

import numpy as np

from distortions import registry
from distortions.errors import DistortionError
from distortions.imageio import check_image, to_float, to_uint8


def chain_allowed(op_names: list[str]) -> bool:
    if not op_names or len(set(op_names)) != len(op_names):
        return False
    classes = [registry.get(n) for n in op_names]
    if len(classes) > 1 and any(cls.stands_alone for cls in classes):
        return False
    families = [cls.family for cls in classes]
    for cls in classes:
        if families.count(cls.family) > 1 and not cls.combines_within_family:
            return False
    return all(not cls.ends_chain or i == len(classes) - 1 for i, cls in enumerate(classes))


def _ending_ops_last(names: list[str]) -> list[str]:
    ends = {n for n in names if registry.get(n).ends_chain}
    return [n for n in names if n not in ends] + [n for n in names if n in ends]


def allowed_pairs(candidates: list[str] | None = None) -> list[tuple[str, str]]:
    names = candidates or registry.names()
    return [(a, b) for a in names for b in names if chain_allowed([a, b])]


def apply_ops(image: np.ndarray, ops: list[dict]) -> np.ndarray:
    """Apply recorded ops [{"name", "params"}] in order. Float in between, one rounding at the end."""
    check_image(image)
    if not isinstance(ops, list) or not ops:
        raise DistortionError("ops must be a non-empty list of {'name', 'params'}")
    x = to_float(image)
    for op in ops:
        if (
            not isinstance(op, dict)
            or set(op) - {"name", "params", "family", "provenance"}
            or "name" not in op
        ):
            raise DistortionError(f"each op must be {{'name', 'params'}}, got {op!r}")
        x = registry.get(op["name"])().apply_float(x, op.get("params"))
    return to_uint8(x)


class ChainSampler:
    """Draws an allowed chain of ops and their params from an item's Generator.

    ``family_weights`` sets the mix of first ops by family; ``p_compose`` is the probability of a
    chain longer than one; lengths 2..max_ops are equally likely.
    """

    def __init__(
        self,
        *,
        family_weights: dict[str, float] | None = None,
        names: list[str] | None = None,
        p_compose: float = 0.3,
        max_ops: int = 2,
        severity_range: tuple[float, float] = (0.0, 1.0),
    ):
        weights = family_weights or {}
        # an opt-in distortion (e.g. one needing a trained model pool) joins only when its family has a weight
        pool = names or [
            n
            for n in registry.names()
            if not registry.get(n).opt_in or weights.get(registry.get(n).family, 0) > 0
        ]
        for n in pool:
            registry.get(n)
        unknown = set(weights) - set(registry.FAMILIES)
        if unknown:
            raise DistortionError(f"unknown families {sorted(unknown)}; known: {list(registry.FAMILIES)}")
        if any(w < 0 for w in weights.values()):
            raise DistortionError("family weights must be >= 0")
        self.names = [n for n in pool if not weights or weights.get(registry.get(n).family, 0) > 0]
        if not self.names:
            raise DistortionError("no distortion left after applying family weights")
        if not (0.0 <= p_compose <= 1.0):
            raise DistortionError(f"p_compose must be in [0, 1], got {p_compose}")
        if not (1 <= int(max_ops) <= 4):
            raise DistortionError(f"max_ops must be 1..4, got {max_ops}")
        fam_w = {registry.get(n).family: float(weights.get(registry.get(n).family, 1.0)) for n in self.names}
        per_family = {f: sum(1 for n in self.names if registry.get(n).family == f) for f in fam_w}
        w = np.array([fam_w[registry.get(n).family] / per_family[registry.get(n).family] for n in self.names])
        self.probs = w / w.sum()
        self.p_compose = float(p_compose)
        self.max_ops = int(max_ops)
        self.ops = {n: registry.get(n)(severity_range=severity_range) for n in self.names}

    def category_of(self, ops: list[dict]) -> str:
        """BAPPS-style category of a chain: the declared category of its op that is not 'traditional'
        (e.g. 'cnn' for autoencoder outputs), else 'traditional'. An empty chain (an identical JND pair)
        takes the sampler's own: a special category only if the sampler draws nothing else."""
        if ops:
            special = sorted({registry.get(op["name"]).category for op in ops} - {"traditional"})
            return special[0] if special else "traditional"
        categories = {registry.get(n).category for n in self.names}
        return categories.pop() if len(categories) == 1 else "traditional"

    def sample(self, rng: np.random.Generator) -> list[dict]:
        length = 1
        if self.max_ops > 1 and rng.random() < self.p_compose:
            length = int(rng.integers(2, self.max_ops + 1))
        chain: list[str] = [self.names[int(rng.choice(len(self.names), p=self.probs))]]
        while len(chain) < length:
            options = [i for i, n in enumerate(self.names) if chain_allowed(_ending_ops_last(chain + [n]))]
            if not options:
                break
            p = self.probs[options] / self.probs[options].sum()
            chain.append(self.names[options[int(rng.choice(len(options), p=p))]])
        chain = _ending_ops_last(chain)
        return [{"name": n, "params": self.ops[n].sample(rng)} for n in chain]
