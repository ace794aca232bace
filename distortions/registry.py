"""The distortion base class and the registry by name.

Every distortion separates sampling from application:

- ``params = distortion.sample(rng)`` draws a severity in the spec's ``severity_range`` and any
  nuisance values (directions, noise seeds) from the item's Generator, and returns JSON scalars;
- ``image = distortion.apply(image, params)`` is pure and deterministic.

Severity runs from 0 (barely visible on a 64x64 patch) to 1 (severe); each class documents how it
maps to physical parameters in ``severity_doc``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from distortions.errors import DistortionError
from distortions.imageio import check_image, to_float, to_uint8

FAMILIES = ("photometric", "noise", "blur", "spatial", "compression", "cnn")

_REGISTRY: dict[str, type[Distortion]] = {}


@dataclass(frozen=True)
class Param:
    """One physical parameter: its type and the closed range apply() accepts."""

    kind: type
    low: float = 0.0
    high: float = 0.0
    doc: str = ""
    pattern: str = ""  # for kind=str: a regular expression the whole value must match

    def check(self, name: str, owner: str, value: Any) -> None:
        if self.kind is str:
            if not isinstance(value, str) or not re.fullmatch(self.pattern, value):
                raise DistortionError(
                    f"{owner}: param {name!r} must be a string matching {self.pattern}, got {value!r}"
                )
            return
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise DistortionError(f"{owner}: param {name!r} must be a number, got {value!r}")
        if self.kind is int and not float(value).is_integer():
            raise DistortionError(f"{owner}: param {name!r} must be an integer, got {value!r}")
        if not math.isfinite(value) or not (self.low <= value <= self.high):
            raise DistortionError(
                f"{owner}: param {name!r}={value!r} is outside its valid range [{self.low}, {self.high}]"
            )


def lerp(low: float, high: float, severity: float) -> float:
    return float(low + (high - low) * severity)


def unit_direction(rng: np.random.Generator) -> tuple[float, float]:
    theta = rng.uniform(0.0, 2.0 * math.pi)
    return math.sin(theta), math.cos(theta)


class Distortion:
    """Base class. Subclasses set name/family/params_schema and implement params_at and _apply."""

    name: ClassVar[str]
    family: ClassVar[str]
    summary: ClassVar[str]
    severity_doc: ClassVar[str]
    params_schema: ClassVar[dict[str, Param]]
    # spec keys besides severity_range that from_dict accepts (e.g. where a model pool lives)
    extra_spec_keys: ClassVar[tuple[str, ...]] = ()
    # What the pipeline needs to know, declared by each distortion (see distortions.pipeline):
    stands_alone: ClassVar[bool] = False  # never composed with another op
    combines_within_family: ClassVar[bool] = False  # may share a chain with another op of its family
    ends_chain: ClassVar[bool] = False  # always the last op of a chain (e.g. compression)
    opt_in: ClassVar[bool] = False  # a sampler draws it only when its family is given a weight
    category: ClassVar[str] = "traditional"  # the BAPPS category of a chain containing it

    @classmethod
    def available(cls) -> bool:
        """Whether it can be applied here now (e.g. a trained model it needs exists)."""
        return True

    def __init__(self, severity_range: tuple[float, float] | list[float] = (0.0, 1.0)):
        lo, hi = self._check_severity_range(severity_range)
        self.severity_range = (lo, hi)

    def _check_severity_range(self, value) -> tuple[float, float]:
        try:
            lo, hi = (float(v) for v in value)
        except (TypeError, ValueError) as exc:
            raise DistortionError(f"{self.name}: severity_range must be two numbers, got {value!r}") from exc
        if not (0.0 <= lo <= hi <= 1.0):
            raise DistortionError(
                f"{self.name}: severity_range must satisfy 0 <= low <= high <= 1, got {value!r}"
            )
        return lo, hi

    # --- serialization ---------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"name": self.name, "severity_range": list(self.severity_range)}

    @staticmethod
    def from_dict(data: dict) -> Distortion:
        if not isinstance(data, dict) or "name" not in data:
            raise DistortionError(f"a distortion spec needs a 'name', got {data!r}")
        cls = get(data["name"])
        unknown = set(data) - {"name", "severity_range", *cls.extra_spec_keys}
        if unknown:
            raise DistortionError(f"{data['name']}: unknown spec keys {sorted(unknown)}")
        return cls(**{k: v for k, v in data.items() if k != "name"})

    def __repr__(self) -> str:
        return f"{type(self).__name__}(severity_range={self.severity_range})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Distortion) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    # --- sampling --------------------------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> dict:
        severity = float(rng.uniform(*self.severity_range))
        return self.params_at(severity, rng)

    def params_at(self, severity: float, rng: np.random.Generator) -> dict:
        """Params at a given severity; nuisance values (direction, seed) are drawn from rng."""
        if not (0.0 <= severity <= 1.0):
            raise DistortionError(f"{self.name}: severity must be in [0, 1], got {severity}")
        params = {"severity": float(severity), **self._params_at(float(severity), rng)}
        self.validate_params(params)
        return params

    def _params_at(self, severity: float, rng: np.random.Generator) -> dict:
        raise NotImplementedError

    # --- application -----------------------------------------------------------------------------
    def validate_params(self, params: dict) -> None:
        if not isinstance(params, dict):
            raise DistortionError(f"{self.name}: params must be a dict, got {type(params).__name__}")
        expected = set(self.params_schema) | {"severity"}
        missing, unknown = expected - set(params), set(params) - expected
        if missing or unknown:
            raise DistortionError(
                f"{self.name}: params must have exactly {sorted(expected)}; "
                f"missing {sorted(missing)}, unknown {sorted(unknown)}"
            )
        Param(float, 0.0, 1.0).check("severity", self.name, params["severity"])
        for key, spec in self.params_schema.items():
            spec.check(key, self.name, params[key])

    def apply_float(self, image: np.ndarray, params: dict) -> np.ndarray:
        """Apply to a float32 H x W x 3 image in [0, 1] (used inside chains)."""
        self.validate_params(params)
        args = {k: s.kind(params[k]) for k, s in self.params_schema.items()}
        return self._apply(image, **args)

    def provenance(self, params: dict) -> dict | None:
        """Extra facts a record should carry beside the params (e.g. a model's architecture)."""
        return None

    def apply(self, image: np.ndarray, params: dict) -> np.ndarray:
        """Apply to a uint8 H x W x 3 image; returns uint8 of the same shape. Pure and deterministic."""
        check_image(image)
        return to_uint8(self.apply_float(to_float(image), params))

    def _apply(self, image: np.ndarray, **params) -> np.ndarray:
        raise NotImplementedError


def register(cls: type[Distortion]) -> type[Distortion]:
    if cls.family not in FAMILIES:
        raise DistortionError(f"{cls.__name__}: unknown family {cls.family!r}")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise DistortionError(f"distortion name {cls.name!r} is already registered")
    _REGISTRY[cls.name] = cls
    return cls


def get(name: str) -> type[Distortion]:
    _load_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise DistortionError(f"unknown distortion {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None


def names(family: str | None = None) -> list[str]:
    """Registered names, by family (FAMILIES order), then in definition order: stable whatever the
    import order."""
    _load_builtin()
    ordered = sorted(_REGISTRY.items(), key=lambda kv: FAMILIES.index(kv[1].family))
    return [n for n, cls in ordered if family is None or cls.family == family]


def available_names() -> list[str]:
    """Names usable here now: those whose class says it is ``available()``."""
    return [n for n in names() if get(n).available()]


def create(name: str, **spec) -> Distortion:
    return get(name)(**spec)


def _load_builtin() -> None:
    from distortions import transforms  # noqa: F401  (registers the 20 traditional distortions)
    from distortions.cnn import distortion  # noqa: F401  (registers cnn_autoencoder)
