"""The paper's 20 traditional distortions (Zhang et al. 2018, Table 2), in registry order.

Severity maps linearly onto each physical parameter between the documented endpoints; the endpoints
were chosen by eye on 64x64 patches (docs/contact_sheet.png) so that 0 is barely visible and 1 severe.
"""

from __future__ import annotations

import math

import numpy as np

from distortions.functional import blur as fb
from distortions.functional import compression as fc
from distortions.functional import noise as fn
from distortions.functional import photometric as fp
from distortions.functional import spatial as fs
from distortions.registry import Distortion, Param, lerp, register, unit_direction
from distortions.rng import child_seed

SEED = Param(int, 0, 2**32 - 1, "seed of the pure noise/field realisation")


def _sign(rng: np.random.Generator) -> float:
    return 1.0 if rng.random() < 0.5 else -1.0


# --- photometric ----------------------------------------------------------------------------------
@register
class LightnessShift(Distortion):
    name, family = "lightness_shift", "photometric"
    combines_within_family = True
    summary = "Shift CIELAB lightness L* up or down."
    severity_doc = "|delta_l| = 1 -> 25 L* units, sign random"
    params_schema = {"delta_l": Param(float, -25.0, 25.0)}

    def _params_at(self, s, rng):
        return {"delta_l": _sign(rng) * lerp(1.0, 25.0, s)}

    def _apply(self, image, delta_l):
        return fp.lightness_shift(image, delta_l)


@register
class ColorShift(Distortion):
    name, family = "color_shift", "photometric"
    combines_within_family = True
    summary = "Global colour cast: shift CIELAB (a*, b*)."
    severity_doc = "|(delta_a, delta_b)| = 1 -> 25, hue direction random"
    params_schema = {"delta_a": Param(float, -25.0, 25.0), "delta_b": Param(float, -25.0, 25.0)}

    def _params_at(self, s, rng):
        m = lerp(1.0, 25.0, s)
        sy, cx = unit_direction(rng)
        return {"delta_a": m * cx, "delta_b": m * sy}

    def _apply(self, image, delta_a, delta_b):
        return fp.color_shift(image, delta_a, delta_b)


@register
class Contrast(Distortion):
    name, family = "contrast", "photometric"
    combines_within_family = True
    summary = "Scale deviations from the mean grey level."
    severity_doc = "factor = exp(+/-(0.03 -> 0.9)): 0.97/1.03 -> 0.41/2.46, direction random"
    params_schema = {"factor": Param(float, 0.4, 2.5)}

    def _params_at(self, s, rng):
        return {"factor": math.exp(_sign(rng) * lerp(0.03, 0.9, s))}

    def _apply(self, image, factor):
        return fp.contrast(image, factor)


@register
class Saturation(Distortion):
    name, family = "saturation", "photometric"
    combines_within_family = True
    summary = "Scale HSV saturation (towards grey or more vivid)."
    severity_doc = "factor = exp(+/-(0.05 -> 1.6)): 0.95/1.05 -> 0.20/4.95, direction random"
    params_schema = {"factor": Param(float, 0.2, 5.0)}

    def _params_at(self, s, rng):
        return {"factor": math.exp(_sign(rng) * lerp(0.05, 1.6, s))}

    def _apply(self, image, factor):
        return fp.saturation(image, factor)


# --- noise ----------------------------------------------------------------------------------------
@register
class UniformWhiteNoise(Distortion):
    name, family = "uniform_white_noise", "noise"
    summary = "Additive i.i.d. uniform noise per pixel and channel."
    severity_doc = "amplitude (half-width, [0,1] scale) = 0.01 -> 0.4"
    params_schema = {"amplitude": Param(float, 0.01, 0.4), "seed": SEED}

    def _params_at(self, s, rng):
        return {"amplitude": lerp(0.01, 0.4, s), "seed": child_seed(rng)}

    def _apply(self, image, amplitude, seed):
        return fn.uniform_white_noise(image, amplitude, seed)


@register
class GaussianWhiteNoise(Distortion):
    name, family = "gaussian_white_noise", "noise"
    summary = "Additive i.i.d. Gaussian noise."
    severity_doc = "sigma ([0,1] scale) = 0.005 -> 0.25"
    params_schema = {"sigma": Param(float, 0.005, 0.25), "seed": SEED}

    def _params_at(self, s, rng):
        return {"sigma": lerp(0.005, 0.25, s), "seed": child_seed(rng)}

    def _apply(self, image, sigma, seed):
        return fn.gaussian_white_noise(image, sigma, seed)


class _SpectralNoise(Distortion):
    exponent: float = 0.0
    params_schema = {"sigma": Param(float, 0.005, 0.25), "seed": SEED}
    severity_doc = "sigma (std of the shaped noise, [0,1] scale) = 0.005 -> 0.25"

    def _params_at(self, s, rng):
        return {"sigma": lerp(0.005, 0.25, s), "seed": child_seed(rng)}

    def _apply(self, image, sigma, seed):
        return fn.colored_noise(image, sigma, self.exponent, seed)


@register
class PinkNoise(_SpectralNoise):
    name, family, exponent = "pink_noise", "noise", 1.0
    summary = "Additive Gaussian noise with a 1/f power spectrum."


@register
class BlueNoise(_SpectralNoise):
    name, family, exponent = "blue_noise", "noise", -1.0
    summary = "Additive Gaussian noise with an f power spectrum (high frequencies)."


@register
class ColoredNoise(Distortion):
    name, family = "colored_noise", "noise"
    summary = "Gaussian noise with a 1/f^e spectrum, e drawn between violet (-2) and brown (+2)."
    severity_doc = "sigma = 0.005 -> 0.25; exponent uniform in [-2, 2]"
    params_schema = {"sigma": Param(float, 0.005, 0.25), "exponent": Param(float, -2.0, 2.0), "seed": SEED}

    def _params_at(self, s, rng):
        return {
            "sigma": lerp(0.005, 0.25, s),
            "exponent": float(rng.uniform(-2.0, 2.0)),
            "seed": child_seed(rng),
        }

    def _apply(self, image, sigma, exponent, seed):
        return fn.colored_noise(image, sigma, exponent, seed)


@register
class Checkerboard(Distortion):
    name, family = "checkerboard", "noise"
    summary = "Additive checkerboard grid, like transposed-convolution artifacts."
    severity_doc = "amplitude = 0.005 -> 0.2; cell size 1-4 px and phase random"
    params_schema = {
        "amplitude": Param(float, 0.005, 0.2),
        "cell": Param(int, 1, 4),
        "phase_y": Param(int, 0, 3),
        "phase_x": Param(int, 0, 3),
    }

    def _params_at(self, s, rng):
        cell = int(rng.integers(1, 5))
        return {
            "amplitude": lerp(0.005, 0.2, s),
            "cell": cell,
            "phase_y": int(rng.integers(0, cell)),
            "phase_x": int(rng.integers(0, cell)),
        }

    def _apply(self, image, amplitude, cell, phase_y, phase_x):
        return fn.checkerboard(image, amplitude, cell, phase_y, phase_x)


# --- blur -----------------------------------------------------------------------------------------
@register
class GaussianBlur(Distortion):
    name, family = "gaussian_blur", "blur"
    summary = "Isotropic Gaussian blur."
    severity_doc = "sigma = 0.4 -> 3.0 px"
    params_schema = {"sigma": Param(float, 0.4, 3.0)}

    def _params_at(self, s, rng):
        return {"sigma": lerp(0.4, 3.0, s)}

    def _apply(self, image, sigma):
        return fb.gaussian_blur(image, sigma)


@register
class Bilateral(Distortion):
    name, family = "bilateral", "blur"
    summary = "Edge-preserving bilateral smoothing."
    severity_doc = "sigma_spatial = 0.8 -> 4.0 px and sigma_color = 0.03 -> 0.6 together"
    params_schema = {"sigma_spatial": Param(float, 0.8, 4.0), "sigma_color": Param(float, 0.03, 0.6)}

    def _params_at(self, s, rng):
        return {"sigma_spatial": lerp(0.8, 4.0, s), "sigma_color": lerp(0.03, 0.6, s)}

    def _apply(self, image, sigma_spatial, sigma_color):
        return fb.bilateral(image, sigma_spatial, sigma_color)


# --- spatial --------------------------------------------------------------------------------------
@register
class Shift(Distortion):
    name, family = "shift", "spatial"
    summary = "Sub-pixel translation with reflected borders."
    severity_doc = "|(dy, dx)| = 0.3 -> 6 px, direction random"
    params_schema = {"dy": Param(float, -6.0, 6.0), "dx": Param(float, -6.0, 6.0)}

    def _params_at(self, s, rng):
        m = lerp(0.3, 6.0, s)
        sy, cx = unit_direction(rng)
        return {"dy": m * sy, "dx": m * cx}

    def _apply(self, image, dy, dx):
        return fs.shift(image, dy, dx)


@register
class AffineWarp(Distortion):
    name, family = "affine_warp", "spatial"
    summary = "Rotation, shear and anisotropic scaling about the centre."
    severity_doc = (
        "magnitude m = 0.01 -> 0.25 along a random unit direction u in 4-D: rotation 60*m*u0 deg, "
        "shear 60*m*u1 deg, scale exp(m*u2), exp(m*u3)"
    )
    params_schema = {
        "rotation_deg": Param(float, -15.0, 15.0),
        "shear_deg": Param(float, -15.0, 15.0),
        "scale_x": Param(float, 0.77, 1.3),
        "scale_y": Param(float, 0.77, 1.3),
    }

    def _params_at(self, s, rng):
        m = lerp(0.01, 0.25, s)
        u = rng.normal(size=4)
        u /= np.linalg.norm(u) + 1e-12
        return {
            "rotation_deg": float(60 * m * u[0]),
            "shear_deg": float(60 * m * u[1]),
            "scale_x": float(math.exp(m * u[2])),
            "scale_y": float(math.exp(m * u[3])),
        }

    def _apply(self, image, rotation_deg, shear_deg, scale_x, scale_y):
        return fs.affine_warp(image, rotation_deg, shear_deg, scale_x, scale_y)


@register
class Homography(Distortion):
    name, family = "homography", "spatial"
    summary = "Perspective warp: the four corners move independently."
    severity_doc = "largest corner offset = 0.3 -> 8 px; offsets uniform, scaled so the largest hits it"
    params_schema = {f"c{i}": Param(float, -8.0, 8.0) for i in range(8)}

    def _params_at(self, s, rng):
        v = rng.uniform(-1.0, 1.0, size=8)
        v *= lerp(0.3, 8.0, s) / max(np.abs(v).max(), 1e-12)
        return {f"c{i}": float(v[i]) for i in range(8)}

    def _apply(self, image, **corners):
        return fs.homography(image, [corners[f"c{i}"] for i in range(8)])


class _FieldWarp(Distortion):
    order: int = 1
    severity_doc = "largest control displacement = 0.2 -> 4 px; grid 3-5 control points per side"
    params_schema = {"magnitude": Param(float, 0.2, 4.0), "grid": Param(int, 3, 5), "seed": SEED}

    def _params_at(self, s, rng):
        return {"magnitude": lerp(0.2, 4.0, s), "grid": int(rng.integers(3, 6)), "seed": child_seed(rng)}

    def _apply(self, image, magnitude, grid, seed):
        return fs.field_warp(image, grid, magnitude, seed, self.order)


@register
class LinearWarp(_FieldWarp):
    name, family, order = "linear_warp", "spatial", 1
    summary = "Smooth random displacement field, linearly interpolated from a coarse grid."


@register
class CubicWarp(_FieldWarp):
    name, family, order = "cubic_warp", "spatial", 3
    summary = "Smooth random displacement field, cubic-spline interpolated from a coarse grid."


@register
class Ghosting(Distortion):
    name, family = "ghosting", "spatial"
    summary = "A displaced, faded copy blended over the image (echo)."
    severity_doc = "alpha = 0.03 -> 0.5; offset 3-10 px in a random direction"
    params_schema = {
        "alpha": Param(float, 0.03, 0.5),
        "dy": Param(float, -10.0, 10.0),
        "dx": Param(float, -10.0, 10.0),
    }

    def _params_at(self, s, rng):
        d = float(rng.uniform(3.0, 10.0))
        sy, cx = unit_direction(rng)
        return {"alpha": lerp(0.03, 0.5, s), "dy": d * sy, "dx": d * cx}

    def _apply(self, image, alpha, dy, dx):
        return fs.ghosting(image, alpha, dy, dx)


@register
class ChromaticAberration(Distortion):
    name, family = "chromatic_aberration", "spatial"
    summary = "Lateral colour fringing: red and blue planes displaced in opposite directions."
    severity_doc = "red-blue separation = 0.3 -> 4 px, direction random"
    params_schema = {"dy": Param(float, -4.0, 4.0), "dx": Param(float, -4.0, 4.0)}

    def _params_at(self, s, rng):
        m = lerp(0.3, 4.0, s)
        sy, cx = unit_direction(rng)
        return {"dy": m * sy, "dx": m * cx}

    def _apply(self, image, dy, dx):
        return fs.chromatic_aberration(image, dy, dx)


# --- compression ----------------------------------------------------------------------------------
@register
class JpegCompression(Distortion):
    name, family = "jpeg", "compression"
    ends_chain = True
    summary = "JPEG round trip (Pillow/libjpeg, 4:2:0)."
    severity_doc = "quality = 90 -> 5 (rounded to an integer)"
    params_schema = {"quality": Param(int, 5, 90)}

    def _params_at(self, s, rng):
        return {"quality": int(round(lerp(90.0, 5.0, s)))}

    def _apply(self, image, quality):
        return fc.jpeg(image, quality)
