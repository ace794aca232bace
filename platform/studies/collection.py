"""A study's collection settings (Study.config): overlap, HIT size, sentinels, leases, QC, timing.

Stored as JSON on the study; every read goes through `collection_config()`, which merges the defaults for
the study's kind and validates the result, so old rows keep working when a default is added.

Defaults follow the paper's protocol (docs/science.md, "Collection protocol"): 2AFC collects 2 judgments
per train triplet and 5 per val triplet, with 15 sentinels a session (hit_size 85 test trials at
sentinel_rate 0.15); JND collects 3 per pair with 20 % sentinels (160 test + 40 sentinel trials) and
reference 1 s, blank 250 ms, distorted 1 s.
"""

from __future__ import annotations

import copy
import json
import math
import secrets
from urllib.parse import quote, urlsplit

from django.conf import settings

from core.exceptions import ApplicationError

DEFAULTS = {
    "2afc": {
        "judgments_per_item": {"train": 2, "val": 5},
        "hit_size": 85,
        "sentinel_rate": 0.15,
        "practice": True,
        "lease_ttl_s": 900,
        "exclusion": {"min_sentinel_accuracy": 14 / 15},
        "timing": {},
    },
    "jnd": {
        "judgments_per_item": {"train": 3, "val": 3},
        "hit_size": 160,
        "sentinel_rate": 0.2,
        "practice": True,
        "lease_ttl_s": 1200,
        "exclusion": {"min_sentinel_accuracy": 0.75},
        "timing": {"ref_ms": 1000, "gap_ms": 250, "distorted_ms": 1000},
    },
}
COMMON = {
    "completion_code": None,  # generated once per study (Prolific / anonymous completion code)
    "prolific_completion_url": "https://app.prolific.com/submissions/complete?cc={code}",
    "consent_text": (
        "You are invited to take part in a study of how people judge the similarity of images. "
        "You will see small image patches and answer simple questions about them. Participation is "
        "voluntary; you may stop at any time. We store your answers and response times with an "
        "anonymous identifier only."
    ),
    "instructions": "",
    # Continuous training (training.services): retrain + evaluate every `every` new accepted judgments
    # (null: only on demand or by the periodic check), lin heads on each backbone in `backbones`. Weights
    # "auto": ImageNet when torchvision's weights file is present or can be fetched, a k-means trunk (drawn
    # from the study's own train patches) otherwise; "random" is the paper's control.
    "training": {
        "every": 500,
        "backbones": [{"net": "alex", "weights": "auto"}],
        "baselines": ["l2_lab", "l2_rgb", "dssim_lab", "psnr", "ms_ssim"],
        "official_lpips": True,
        "n_boot": 500,
        "epochs": 5,
        "epochs_decay": 5,
        "lr": 1e-3,
        "min_steps": 2000,  # small studies get more epochs: at least this many optimiser steps
    },
    # A simulation study takes only simulated workers (manage.py simulate_crowd); others never take them.
    "simulation": False,
    # Crowd platforms whose participants may start (e.g. ["prolific"]: no anonymous or MTurk starts).
    "platforms": ["prolific", "mturk", "anonymous"],
    # Adaptive collection (docs/adaptive.md). The build makes pool_factor times the budgeted train items as
    # candidates; the sampler (metric.sampling) picks which are asked, mixed with a uniform stream at
    # uniform_share. The val split is always built at its normal size and served uniformly.
    "sampling": {"sampler": "uniform", "pool_factor": 1, "uniform_share": 0.2},
    # Bayesian stopping for a judgments_per_item range [min, max] (metric.sampling.need_more_votes): an
    # item past min gets another vote unless its posterior is this confident about the side or a tie.
    "stopping": {"confidence": 0.9, "tie_width": 0.1},
}
PLATFORMS = ("prolific", "mturk", "anonymous")
# metric.sampling.SAMPLERS' names, here so that web processes never import torch (a test keeps them equal)
SAMPLERS = ("uniform", "disagreement", "uncertainty", "info_gain")
POOL_FACTOR_MAX = 20
EXCLUSION_KEYS = {"min_sentinel_accuracy", "max_side_bias", "min_median_rt_ms"}
TIMING_KEYS = {"ref_ms", "gap_ms", "distorted_ms"}


def new_completion_code() -> str:
    return secrets.token_hex(4).upper()


def collection_config(kind: str, config: dict | None, *, saving: bool = False) -> dict:
    """The full, validated collection config for a study of `kind` (defaults merged under `config`): a
    fresh dict the caller may change. Every answer reads it, so valid configs are remembered (as JSON text,
    by kind and config) and decoded instead of merged and validated again; invalid ones raise every time.
    `saving`: also apply the rules a config must meet when it is saved (the completion URL's, stopping's
    open lower ends), which rows stored before those rules existed need not meet to be read."""
    if saving:
        merged = _collection_config(kind, config)
        problem = completion_url_problem(merged["prolific_completion_url"])
        if problem:
            _fail(problem, "prolific_completion_url")
        # need_more_votes takes neither lower end (they decide nothing); stored rows may still hold them
        for key, low, high in (("confidence", 0.5, 0.999), ("tie_width", 0, 0.5)):
            if merged["stopping"][key] <= low:
                got = merged["stopping"][key]
                _fail(f"stopping.{key} must be a number in ({low}, {high}], got {got!r}", "stopping")
        return merged
    try:
        key = (kind, json.dumps(config, sort_keys=True))
    except (TypeError, ValueError):  # not JSON (a caller's Python object): merge it the long way
        return _collection_config(kind, config)
    text = _valid_configs.get(key)
    if text is None:
        merged = _collection_config(kind, config)
        if json.loads(json.dumps(merged)) != merged:  # tuples and the like would not survive the round trip
            return merged
        if len(_valid_configs) >= 1024:  # studies are few; this only bounds memory
            _valid_configs.clear()
        _valid_configs[key] = text = json.dumps(merged)
    return json.loads(text)


_valid_configs: dict[tuple[str, str], str] = {}


def _collection_config(kind: str, config: dict | None) -> dict:
    if kind not in DEFAULTS:
        raise ApplicationError(f"unknown study kind {kind!r}; use '2afc' or 'jnd'")
    merged = copy.deepcopy({**COMMON, **DEFAULTS[kind]})
    for key, value in (config or {}).items():
        if key not in merged:
            raise ApplicationError(
                f"unknown study setting {key!r}", {"field": "config", "valid": sorted(merged)}
            )
        if isinstance(merged[key], dict) and isinstance(value, dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    _validate(kind, merged)
    return merged


def _fail(message: str, key: str):
    raise ApplicationError(message, {"field": f"config.{key}"})


def _validate(kind: str, c: dict) -> None:
    jpi = c["judgments_per_item"]
    if not isinstance(jpi, dict) or set(jpi) - {"train", "val"}:
        _fail("judgments_per_item maps 'train' and 'val' to a count", "judgments_per_item")
    for split, n in jpi.items():
        if split == "train" and isinstance(n, list):
            if (
                len(n) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in n)
                or not 1 <= n[0] <= n[1] <= 100
            ):
                _fail(
                    f"judgments_per_item['train'] as a range is [min, max] with 1 <= min <= max <= 100, "
                    f"got {n!r}",
                    "judgments_per_item",
                )
        elif not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 100:
            _fail(
                f"judgments_per_item[{split!r}] must be an integer in 1..100"
                f"{' or a range [min, max]' if split == 'train' else ''}, got {n!r}",
                "judgments_per_item",
            )
    _validate_sampling(c["sampling"], c["stopping"])
    hs = c["hit_size"]
    if not isinstance(hs, int) or isinstance(hs, bool) or not 1 <= hs <= 2000:
        _fail(f"hit_size must be an integer in 1..2000, got {hs!r}", "hit_size")
    rate = c["sentinel_rate"]
    if not isinstance(rate, (int, float)) or isinstance(rate, bool) or not 0 <= rate < 0.9:
        _fail(f"sentinel_rate must be a number in [0, 0.9), got {rate!r}", "sentinel_rate")
    ttl = c["lease_ttl_s"]
    if not isinstance(ttl, int) or isinstance(ttl, bool) or not 30 <= ttl <= 24 * 3600:
        _fail(f"lease_ttl_s must be an integer number of seconds in 30..86400, got {ttl!r}", "lease_ttl_s")
    if not isinstance(c["practice"], bool):
        _fail("practice must be true or false", "practice")
    excl = c["exclusion"]
    if not isinstance(excl, dict) or set(excl) - EXCLUSION_KEYS:
        _fail(f"exclusion keys are {sorted(EXCLUSION_KEYS)}", "exclusion")
    for key, value in excl.items():
        if value is not None and (
            not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0
        ):
            _fail(f"exclusion.{key} must be a non-negative number or null", "exclusion")
    timing = c["timing"]
    if not isinstance(timing, dict) or set(timing) - TIMING_KEYS:
        _fail(f"timing keys are {sorted(TIMING_KEYS)}", "timing")
    for key, value in timing.items():
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 10_000:
            _fail(f"timing.{key} must be milliseconds in 0..10000", "timing")
    if kind == "jnd" and set(timing) != TIMING_KEYS:
        _fail(f"a JND study needs timing {sorted(TIMING_KEYS)}", "timing")
    for key in ("consent_text", "instructions"):
        if not isinstance(c[key], str) or len(c[key]) > 20_000:
            _fail(f"{key} must be text (at most 20000 characters)", key)
    code = c["completion_code"]
    if code is not None and (not isinstance(code, str) or not 4 <= len(code) <= 64 or not code.isalnum()):
        _fail("completion_code must be 4-64 letters and digits", "completion_code")
    tr = c["training"]
    if not isinstance(tr, dict) or set(tr) - set(COMMON["training"]):
        _fail(f"training keys are {sorted(COMMON['training'])}", "training")
    _validate_training(tr)
    if not isinstance(c["simulation"], bool):
        _fail("simulation must be true or false", "simulation")
    platforms = c["platforms"]
    if (
        not isinstance(platforms, list)
        or not platforms
        or not all(p in PLATFORMS for p in platforms)
        or len(set(platforms)) != len(platforms)
    ):
        _fail(f"platforms is a non-empty list of distinct values from {list(PLATFORMS)}", "platforms")
    url = c["prolific_completion_url"]
    if not isinstance(url, str) or not url.startswith("https://") or "{code}" not in url:
        _fail("prolific_completion_url must be an https URL containing {code}", "prolific_completion_url")


def _validate_sampling(sampling, stopping) -> None:
    if not isinstance(sampling, dict) or set(sampling) != set(COMMON["sampling"]):
        _fail(f"sampling keys are {sorted(COMMON['sampling'])}", "sampling")
    if sampling["sampler"] not in SAMPLERS:
        _fail(f"sampling.sampler must be one of {list(SAMPLERS)}, got {sampling['sampler']!r}", "sampling")
    factor = sampling["pool_factor"]
    if not isinstance(factor, int) or isinstance(factor, bool) or not 1 <= factor <= POOL_FACTOR_MAX:
        _fail(f"sampling.pool_factor must be an integer in 1..{POOL_FACTOR_MAX}, got {factor!r}", "sampling")
    share = sampling["uniform_share"]
    if not isinstance(share, (int, float)) or isinstance(share, bool) or not 0 <= share <= 1:
        _fail(f"sampling.uniform_share must be a number in [0, 1], got {share!r}", "sampling")
    if not isinstance(stopping, dict) or set(stopping) != set(COMMON["stopping"]):
        _fail(f"stopping keys are {sorted(COMMON['stopping'])}", "stopping")
    for key, low, high in (("confidence", 0.5, 0.999), ("tie_width", 0.0, 0.5)):
        value = stopping[key]
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not low <= value <= high:
            _fail(f"stopping.{key} must be a number in [{low}, {high}], got {value!r}", "stopping")


def votes_range(config: dict, split: str) -> tuple[int, int]:
    """(min, max) judgments an item of `split` gets: a fixed count n is (n, n); a train range [min, max]
    turns on Bayesian stopping between the two. A split the config does not name takes the largest."""
    jpi = config["judgments_per_item"]
    n = jpi.get(split)
    if n is None:
        n = max(v if isinstance(v, int) else v[1] for v in jpi.values())
    return (n, n) if isinstance(n, int) else (n[0], n[1])


def train_vote_budget(config: dict, budget_items: int) -> int:
    """The study's total of train judgments: budget items x the mean of the range (x n for a fixed count),
    rounded down. Bayesian stopping never raises an item's target beyond it (judgments.stopping)."""
    low, high = votes_range(config, "train")
    return budget_items * low + (budget_items * (high - low)) // 2


def completion_url_problem(url) -> str | None:
    """Why `url` cannot be a Prolific completion URL, or None: https on a host in
    settings.PROLIFIC_COMPLETION_HOSTS, exactly one `{code}` and no other braces (no format fields)."""
    if (
        not isinstance(url, str)
        or not 0 < len(url) <= 2000
        or any(ch.isspace() or ord(ch) < 32 for ch in url)
    ):
        return "prolific_completion_url must be a URL of at most 2000 characters without spaces"
    if url.count("{code}") != 1 or "{" in url.replace("{code}", "") or "}" in url.replace("{code}", ""):
        return "prolific_completion_url must contain {code} exactly once and no other braces"
    try:
        parts = urlsplit(url.replace("{code}", "CODE"))
        port = parts.port
    except ValueError:
        return "prolific_completion_url is not a valid URL"
    hosts = [h.lower() for h in settings.PROLIFIC_COMPLETION_HOSTS]
    if (
        parts.scheme != "https"
        or parts.username
        or parts.password
        or port not in (None, 443)
        or (parts.hostname or "").lower() not in hosts
    ):
        return f"prolific_completion_url must be an https URL on {', '.join(hosts)}"
    return None


def completion_redirect(config, code: str) -> str | None:
    """The Prolific completion URL for `code` from a study's stored config (Study.config; the default when it
    names none), or None when the stored URL fails completion_url_problem (a row saved before the rule, or
    edited by hand). Never raises."""
    url = (
        config.get("prolific_completion_url", COMMON["prolific_completion_url"])
        if isinstance(config, dict)
        else None
    )
    if completion_url_problem(url) is not None:
        return None
    return url.replace("{code}", quote(str(code or ""), safe=""))


# Training settings: every field typed and capped (settings.PERCEPTLAB_TRAINING_LIMITS). Backbone weights come
# from the allowed sources only (never a file path); baselines by name (metric.baselines.BASELINES, named
# here so that web processes never import torch; a test keeps the two lists equal).
TRAINING_NETS = ("alex", "vgg", "squeeze")
TRAINING_WEIGHTS = ("auto", "imagenet", "kmeans", "random")
TRAINING_BASELINES = ("l2_lab", "l2_rgb", "dssim_lab", "dssim_rgb", "psnr", "ms_ssim")


def _validate_training(tr: dict) -> None:
    from django.conf import settings

    caps = settings.PERCEPTLAB_TRAINING_LIMITS

    def count(key: str, low: int, *, null: bool = False):
        value = tr[key]
        if (value is None and null) or (
            isinstance(value, int) and not isinstance(value, bool) and low <= value <= caps[key]
        ):
            return
        _fail(
            f"training.{key} must be an integer in {low}..{caps[key]}{' or null' if null else ''}, "
            f"got {value!r}",
            f"training.{key}",
        )

    count("every", 1, null=True)
    count("n_boot", 1)
    count("epochs", 1)
    count("epochs_decay", 0)
    count("min_steps", 0)
    lr, (lr_low, lr_high) = tr["lr"], caps["lr"]
    if not isinstance(lr, (int, float)) or isinstance(lr, bool) or not lr_low <= lr <= lr_high:
        _fail(f"training.lr must be a number in [{lr_low}, {lr_high}], got {lr!r}", "training.lr")
    if not isinstance(tr["official_lpips"], bool):
        _fail("training.official_lpips must be true or false", "training.official_lpips")
    backbones = tr["backbones"]
    if (
        not isinstance(backbones, list)
        or not 1 <= len(backbones) <= caps["backbones"]
        or not all(
            isinstance(b, dict)
            and set(b) <= {"net", "weights", "seed"}
            and b.get("net") in TRAINING_NETS
            and b.get("weights") in TRAINING_WEIGHTS
            and (
                isinstance(b.get("seed", 0), int)
                and not isinstance(b.get("seed", 0), bool)
                and 0 <= b.get("seed", 0) <= caps["seed"]
            )
            for b in backbones
        )
    ):
        _fail(
            f"training.backbones is a list of 1..{caps['backbones']} {{net: {'|'.join(TRAINING_NETS)}, "
            f"weights: {'|'.join(TRAINING_WEIGHTS)}, seed?: 0..{caps['seed']}}}",
            "training.backbones",
        )
    baselines = tr["baselines"]
    if (
        not isinstance(baselines, list)
        or not all(isinstance(b, str) and b in TRAINING_BASELINES for b in baselines)
        or len(set(baselines)) != len(baselines)
    ):
        _fail(
            f"training.baselines is a list of distinct names from {list(TRAINING_BASELINES)}",
            "training.baselines",
        )


def sentinels_per_hit(config: dict) -> int:
    """Sentinel trials per HIT: sentinel_rate is their share of all counted trials (tests + sentinels)."""
    rate = float(config["sentinel_rate"])
    return int(math.floor(rate * config["hit_size"] / (1.0 - rate) + 0.5)) if rate > 0 else 0
