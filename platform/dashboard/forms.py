"""The researcher's study forms: a new study (kind, source, engine options, collection settings) and a study's
collection settings. The forms only parse and type the fields; every rule (ranges, caps, sources, what may
change mid-study) is the service's, the same one the API runs: the form turns its fields into the API's
`build_config` and `config` dicts, and `service_error()` puts an ApplicationError back on the field it names.

Defaults come from their owners (distortions.dataset.StudyConfig for the engine, studies.collection for the
collection settings), never retyped here. Settings that depend on the kind (judgments per item, HIT size,
sentinels, ...) carry both kinds' defaults in data-default-2afc / data-default-jnd attributes for
static/js/study_form.js, and a blank field means the kind's default.
"""

from __future__ import annotations

import dataclasses

from django import forms

from core.exceptions import ApplicationError
from distortions import registry
from distortions.dataset import StudyConfig
from judgments.reviews import REASON_MAX
from studies.collection import (
    DEFAULTS,
    PLATFORMS,
    SAMPLERS,
    TRAINING_NETS,
    TRAINING_WEIGHTS,
    collection_config,
    votes_range,
)
from studies.models import Study
from studies.services import cnn_pool_ready
from studies.sources import source_set_list_for

KINDS = tuple(DEFAULTS)  # "2afc", "jnd"
BACKBONE_CHOICES = [(f"{n}:{w}", f"{n} ({w} weights)") for n in TRAINING_NETS for w in TRAINING_WEIGHTS]


def engine_default(name: str):
    """A StudyConfig field's default."""
    f = StudyConfig.__dataclass_fields__[name]
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _kind_engine_defaults(kind: str) -> dict:
    c = StudyConfig(kind=kind)
    return {"n_sentinels": c.n_sentinels, "n_practice": c.n_practice}


def _rounded(value):
    return round(value, 4) if isinstance(value, float) else value


def _collection_fields(kind: str) -> dict:
    """The form's view of a merged collection config (studies.collection_config) of `kind`."""
    c = collection_config(kind, {})
    return _fields_of(c)


def _fields_of(c: dict) -> dict:
    excl, timing, training = c["exclusion"], c["timing"], c["training"]
    sampling, stopping = c["sampling"], c["stopping"]
    low, high = votes_range(c, "train")
    return {
        "jpi_train": low,
        "jpi_train_max": high if high > low else None,
        "jpi_val": c["judgments_per_item"].get("val"),
        "hit_size": c["hit_size"],
        "sentinel_rate": _rounded(c["sentinel_rate"]),
        "practice": c["practice"],
        "lease_ttl_s": c["lease_ttl_s"],
        "min_sentinel_accuracy": _rounded(excl.get("min_sentinel_accuracy")),
        "max_side_bias": _rounded(excl.get("max_side_bias")),
        "min_median_rt_ms": _rounded(excl.get("min_median_rt_ms")),
        "ref_ms": timing.get("ref_ms"),
        "gap_ms": timing.get("gap_ms"),
        "distorted_ms": timing.get("distorted_ms"),
        "consent_text": c["consent_text"],
        "instructions": c["instructions"],
        "completion_code": c["completion_code"] or "",
        "prolific_completion_url": c["prolific_completion_url"],
        "platforms": list(c["platforms"]),
        "training_every": training["every"],
        "backbones": [f"{b['net']}:{b['weights']}" for b in training["backbones"]],
        "sampler": sampling["sampler"],
        "pool_factor": sampling["pool_factor"],
        "uniform_share": _rounded(sampling["uniform_share"]),
        "stopping_confidence": _rounded(stopping["confidence"]),
        "stopping_tie_width": _rounded(stopping["tie_width"]),
    }


KIND_DEFAULTS = {kind: {**_collection_fields(kind), **_kind_engine_defaults(kind)} for kind in KINDS}
KIND_DEPENDENT = sorted(
    name for name in KIND_DEFAULTS["2afc"] if KIND_DEFAULTS["2afc"][name] != KIND_DEFAULTS["jnd"][name]
)
JND_ONLY = ("ref_ms", "gap_ms", "distorted_ms")
EXCLUSION_FIELDS = ("min_sentinel_accuracy", "max_side_bias", "min_median_rt_ms")

# Where the service's `extra["field"]` lands on the form (most specific first); unknown ones: non-field.
SERVICE_FIELDS = {
    "build_config.n_items": "n_items",
    "build_config.patch_size": "patch_size",
    "build_config.seed": "seed",
    "build_config.sentinels": "n_sentinels",
    "build_config.practice": "n_practice",
    "build_config.composition.max_ops": "max_ops",
    "build_config.composition.p_compose": "p_compose",
    "build_config.composition": "p_compose",
    "build_config.distortions": "distortions",
    "build_config.severity_range": "severity_min",
    "build_config.splits": "train_fraction",
    "build_config.source": "photos",
    "build_config.families": "families",
    "config.judgments_per_item": "jpi_train",
    "config.sampling": "sampler",
    "config.stopping": "stopping_confidence",
    "config.hit_size": "hit_size",
    "config.sentinel_rate": "sentinel_rate",
    "config.practice": "practice",
    "config.lease_ttl_s": "lease_ttl_s",
    "config.exclusion": "min_sentinel_accuracy",
    "config.timing": "ref_ms",
    "config.consent_text": "consent_text",
    "config.instructions": "instructions",
    "config.completion_code": "completion_code",
    "config.prolific_completion_url": "prolific_completion_url",
    "config.platforms": "platforms",
    "config.training.every": "training_every",
    "config.training.backbones": "backbones",
    "config.training": "training_every",
}
# Sections whose messages name the setting they refuse (studies.collection._validate_sampling).
SUBFIELD_WORDS = {
    "config.sampling": (("pool_factor", "pool_factor"), ("uniform_share", "uniform_share")),
    "config.stopping": (("confidence", "stopping_confidence"), ("tie_width", "stopping_tie_width")),
}
# The engine's own messages (DistortionError, field "build_config") name what they refuse.
ENGINE_WORDS = (
    ("p_compose", "p_compose"),
    ("max_ops", "max_ops"),
    ("n_items", "n_items"),
    ("patch_size", "patch_size"),
    ("no source image is at least", "patch_size"),
    ("seed", "seed"),
    ("severity", "severity_min"),
    ("splits", "train_fraction"),
    ("family weights", "families"),
    ("unknown families", "families"),
    ("no distortion left", "distortions"),
    ("unknown distortion", "distortions"),
    ("CNN", "families"),
)


def _int(label: str, help_text: str, **kw) -> forms.IntegerField:
    return forms.IntegerField(label=label, help_text=help_text, required=False, **kw)


def _float(label: str, help_text: str, **kw) -> forms.FloatField:
    return forms.FloatField(
        label=label,
        help_text=help_text,
        required=False,
        widget=forms.NumberInput(attrs={"step": "any"}),
        **kw,
    )


class CollectionForm(forms.Form):
    """The collection settings (studies.collection) of a study of `kind`."""

    jpi_train = _int(
        "Judgments per train item", "How many people judge each train item (with a maximum: at least)."
    )
    jpi_train_max = _int(
        "At most, per train item",
        "Blank: a fixed count. A maximum turns on Bayesian stopping: more votes only where undecided.",
    )
    jpi_val = _int("Judgments per val item", "How many people judge each val item (more: a tighter ceiling).")
    hit_size = _int("HIT size", "Test trials per assignment (sentinels come on top).")
    sentinel_rate = _float("Sentinel rate", "Share of a HIT's counted trials that are sentinels, below 0.9.")
    practice = forms.BooleanField(
        label="Practice trials first", required=False, help_text="Workers answer the practice items first."
    )
    lease_ttl_s = _int("Lease time (seconds)", "How long a started HIT holds its items before they go back.")
    min_sentinel_accuracy = _float(
        "Minimum sentinel accuracy", "Exclude a worker whose sentinel accuracy is below this; blank: no rule."
    )
    max_side_bias = _float(
        "Maximum side bias",
        "Exclude a worker whose share of one answer is further than this from 0.5; blank: no rule.",
    )
    min_median_rt_ms = _float(
        "Minimum median response time (ms)", "Exclude a worker answering faster than this; blank: no rule."
    )
    ref_ms = _int("Reference shown (ms)", "JND: how long the reference patch is shown.")
    gap_ms = _int("Blank gap (ms)", "JND: the blank between the two patches.")
    distorted_ms = _int("Distorted shown (ms)", "JND: how long the compared patch is shown.")
    consent_text = forms.CharField(
        label="Consent text",
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="Shown before the first trial; the worker must agree to go on.",
    )
    instructions = forms.CharField(
        label="Instructions",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Extra instructions shown with the task; blank: the standard ones only.",
    )
    completion_code = forms.CharField(
        label="Completion code",
        required=False,
        help_text="4-64 letters and digits shown at the end (Prolific); blank: one is generated.",
    )
    prolific_completion_url = forms.CharField(
        label="Prolific completion URL",
        required=False,
        help_text="Where Prolific workers go when done; an https Prolific URL with {code}.",
    )
    platforms = forms.MultipleChoiceField(
        label="Crowd platforms",
        required=False,
        widget=forms.CheckboxSelectMultiple,
        choices=[(p, p.capitalize() if p != "mturk" else "MTurk") for p in PLATFORMS],
        help_text="Where participants may start from.",
    )
    training_every = _int(
        "Retrain every", "Retrain and evaluate after this many new accepted judgments; blank: only on demand."
    )
    backbones = forms.MultipleChoiceField(
        label="Backbones",
        required=False,
        widget=forms.CheckboxSelectMultiple,
        choices=BACKBONE_CHOICES,
        help_text="LPIPS heads trained on each; auto: ImageNet weights when present, else a k-means trunk.",
    )

    sampler = forms.ChoiceField(
        label="Sampler",
        required=False,
        choices=[(name, name) for name in SAMPLERS],
        help_text="What to ask next from a candidate pool (docs/adaptive.md); uniform: at random.",
    )
    pool_factor = _int(
        "Candidate pool", "Build this many times the train items as candidates; the sampler picks the budget."
    )
    uniform_share = _float("Uniform share", "Share of the sampler's draws made at random, 0-1.")
    stopping_confidence = _float(
        "Stopping confidence", "With a maximum: stop once the posterior is this sure of the side or a tie."
    )
    stopping_tie_width = _float("Tie width", "With a maximum: p within 0.5 +/- half this counts as a tie.")

    def __init__(self, *args, kind: str = "2afc", current: dict | None = None, **kwargs):
        """`current`: the study's stored config (the settings page); None: a new study's defaults."""
        self.kind = kind
        self.is_jnd = kind == "jnd"  # for templates, where form.kind is the field of that name
        self.current = current
        base = _fields_of(collection_config(kind, current)) if current is not None else KIND_DEFAULTS[kind]
        kwargs.setdefault("initial", {})
        kwargs["initial"] = {**{k: v for k, v in base.items() if k in self.base_fields}, **kwargs["initial"]}
        super().__init__(*args, **kwargs)
        for name, field in self.fields.items():
            if name in KIND_DEPENDENT:
                field.widget.attrs["data-default-2afc"] = _attr(KIND_DEFAULTS["2afc"][name])
                field.widget.attrs["data-default-jnd"] = _attr(KIND_DEFAULTS["jnd"][name])

    # --- the API's config dict -------------------------------------------------------------------------
    def collection(self, kind: str) -> dict:
        """The `config` the API would get: every setting the researcher changed from what it was (the kind's
        defaults for a new study, the study's settings on the settings page), whole top-level values."""
        d = self.cleaned_data
        stored = dict(self.current or {})
        before = collection_config(kind, stored)
        values = {n: d.get(n) for n in self.fields if not self.fields[n].disabled}
        shown = _fields_of(before)

        def changed(name) -> bool:
            if name not in values:
                return False
            value = values[name]
            if value in (None, "") and name not in (*EXCLUSION_FIELDS, "training_every", "jpi_train_max"):
                return False  # blank: keep it (a new study: the kind's default)
            if isinstance(value, list) and isinstance(shown[name], list):
                return sorted(value) != sorted(shown[name])
            return value != shown[name]

        config: dict = {}
        jpi = dict(before["judgments_per_item"])
        if changed("jpi_val"):
            jpi["val"] = values["jpi_val"]
        if changed("jpi_train") or changed("jpi_train_max"):
            low = values["jpi_train"] if changed("jpi_train") else shown["jpi_train"]
            high = values["jpi_train_max"] if "jpi_train_max" in values else shown["jpi_train_max"]
            jpi["train"] = low if high is None or high == low else [low, high]
        if jpi != before["judgments_per_item"]:
            config["judgments_per_item"] = jpi
        for section, names in (
            (
                "sampling",
                (("sampler", "sampler"), ("pool_factor", "pool_factor"), ("uniform_share", "uniform_share")),
            ),
            ("stopping", (("confidence", "stopping_confidence"), ("tie_width", "stopping_tie_width"))),
        ):
            values_of = dict(before[section])
            for key, name in names:
                if changed(name):
                    values_of[key] = values[name]
            if values_of != before[section]:
                config[section] = values_of
        for name in ("hit_size", "sentinel_rate", "practice", "lease_ttl_s", "consent_text", "instructions"):
            if changed(name):
                config[name] = values[name]
        for name in ("completion_code", "prolific_completion_url", "platforms"):
            if changed(name):
                config[name] = values[name]
        excl = dict(before["exclusion"])
        for name in EXCLUSION_FIELDS:
            if changed(name):
                excl[name] = values[name]
        if excl != before["exclusion"]:
            config["exclusion"] = excl
        if kind == "jnd":
            timing = dict(before["timing"])
            for name in JND_ONLY:
                if changed(name):
                    timing[name] = values[name]
            if timing != before["timing"]:
                config["timing"] = timing
        training = dict(before["training"])
        if changed("training_every"):
            training["every"] = values["training_every"]
        if changed("backbones"):
            training["backbones"] = [
                {"net": net, "weights": weights}
                for net, weights in (b.split(":", 1) for b in values["backbones"])
            ]
        if training != before["training"]:
            config["training"] = {**stored.get("training", {}), **training}
        return config

    def service_error(self, exc: ApplicationError) -> None:
        """Put the service's error on the field it names (a non-field error when it names none we show)."""
        key = str(exc.extra.get("field") or "")
        name = None
        for prefix, candidate in sorted(SERVICE_FIELDS.items(), key=lambda kv: -len(kv[0])):
            if key == prefix or key.startswith(prefix + "."):
                name = candidate
                break
        if key == "config.judgments_per_item" and "'val'" in exc.message:
            name = "jpi_val"
        if key == "config.exclusion" or key == "config.timing":
            name = next((f for f in EXCLUSION_FIELDS + JND_ONLY if f in exc.message), name)
        if key in SUBFIELD_WORDS:
            name = next((f for word, f in SUBFIELD_WORDS[key] if word in exc.message), name)
        if key == "build_config":
            name = next((f for word, f in ENGINE_WORDS if word in exc.message), None)
        if name == "families":
            name = next((f for f in self.fields if f.startswith("family_")), None)
        if name not in self.fields or self.fields[name].disabled:
            name = None
        self.add_error(name, exc.message)


def _attr(value) -> str:
    if isinstance(value, bool):
        return "on" if value else ""
    return "" if value is None else str(value)


class StudyNewForm(CollectionForm):
    """A new study: its kind and source, the engine's options and the collection settings."""

    name = forms.CharField(label="Name", max_length=200, help_text="For you; annotators never see it.")
    kind = forms.ChoiceField(
        label="Kind",
        choices=Study.Kind.choices,
        widget=forms.RadioSelect,
        initial="2afc",
        help_text="2AFC: which of two distortions is closer to the reference. JND: same or different.",
    )
    source = forms.ChoiceField(
        label="Stimuli",
        widget=forms.RadioSelect,
        initial="engine",
        choices=[("engine", "Distortion engine"), ("zip", "A zip of real-algorithm outputs")],
        help_text="The engine draws distorted patches from photos; a zip brings your own (uploaded next).",
    )
    photos = forms.ChoiceField(
        label="Photos", required=False, help_text="Where the reference patches are cut from."
    )
    n_items = _int("Test items", "How many triplets (2AFC) or pairs (JND) the engine draws.")
    patch_size = _int("Patch size (pixels)", "The side of each square patch.")
    seed = _int("Seed", "The same options and seed give the same stimuli, byte for byte.")
    severity_min = _float(
        "Lowest severity", "Severities are drawn between these (0: none, 1: the strongest)."
    )
    severity_max = _float("Highest severity", "The upper end of the severity range.")
    p_compose = _float(
        "Composition probability", "Chance that a patch gets a chain of 2 or more distortions."
    )
    max_ops = _int("Longest chain", "At most this many distortions in one chain.")
    distortions = forms.MultipleChoiceField(
        label="Only these distortions",
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None checked: every distortion of the families with a weight.",
    )
    train_fraction = _float("Train share", "Share of test items in the train split; the rest go to val.")
    n_sentinels = _int("Sentinels", "Items with an obvious answer, used for quality control.")
    n_practice = _int("Practice items", "Easy items shown first (not counted).")

    ENGINE_FIELDS = (
        "photos",
        "n_items",
        "patch_size",
        "seed",
        "severity_min",
        "severity_max",
        "p_compose",
        "max_ops",
        "distortions",
        "train_fraction",
        "n_sentinels",
        "n_practice",
    )

    def __init__(self, *args, owner, **kwargs):
        data = args[0] if args else kwargs.get("data")
        kind = (data or {}).get("kind") or kwargs.get("initial", {}).get("kind") or "2afc"
        kind = kind if kind in KINDS else "2afc"
        self.owner = owner
        self.with_cnn = cnn_pool_ready()
        super().__init__(*args, kind=kind, **kwargs)
        families = [f for f in registry.FAMILIES if f != "cnn" or self.with_cnn]
        defaults = {
            "n_items": engine_default("n_items"),
            "patch_size": engine_default("patch_size"),
            "seed": engine_default("seed"),
            "severity_min": engine_default("severity_range")[0],
            "severity_max": engine_default("severity_range")[1],
            "p_compose": engine_default("composition")["p_compose"],
            "max_ops": engine_default("composition")["max_ops"],
            "train_fraction": engine_default("splits")["train"],
            **_kind_engine_defaults(kind),
        }
        for family in families:
            opt_in = any(registry.get(n).opt_in for n in registry.names(family))
            name = f"family_{family}"
            self.fields[name] = _float(
                f"{family.capitalize()} weight",
                "Share of first distortions from this family; 0 leaves it out."
                + (" Autoencoder outputs of the trained pool." if family == "cnn" else ""),
            )
            defaults[name] = 0 if opt_in else 1
        self.family_fields = [f"family_{f}" for f in families]
        self.fields["distortions"].choices = [
            (n, f"{n} ({registry.get(n).family})")
            for n in registry.names()
            if registry.get(n).family in families
        ]
        self.fields["photos"].choices = [("skimage", "The bundled demo photos (scikit-image)")] + [
            (str(s.pk), f"{s.name} ({s.n_images} photos)") for s in source_set_list_for(user=owner)
        ]
        self.fields["photos"].initial = "skimage"
        for name, value in defaults.items():
            self.initial.setdefault(name, value)
        order = ["name", "kind", "source", *self.ENGINE_FIELDS, *self.family_fields]
        self.order_fields(order)

    def clean(self):
        data = super().clean()
        if data.get("source") == "zip":  # the engine's options do not apply
            for name in (*self.ENGINE_FIELDS, *self.family_fields):
                self.errors.pop(name, None)
        return data

    @property
    def preview_params(self) -> str:
        """The fields the live preview reads (htmx hx-params): the engine's, never the CSRF token or the
        long texts (a GET's URL stays short, and no secret goes into a server's access log)."""
        return ",".join(["kind", "source", *self.ENGINE_FIELDS, *self.family_fields])

    # --- the API's build_config dict ---------------------------------------------------------------------
    def build_config(self) -> dict:
        """The `build_config` the API would get (without `kind`); blank fields keep the engine's defaults."""
        d = self.cleaned_data
        kind = self.kind
        out: dict = {}
        for name in ("n_items", "patch_size", "seed"):
            if d.get(name) is not None:
                out[name] = d[name]
        if d.get("photos") not in (None, "", "skimage"):
            out["source"] = {"type": "upload", "id": d["photos"]}
        low, high = engine_default("severity_range")
        low = low if d.get("severity_min") is None else d["severity_min"]
        high = high if d.get("severity_max") is None else d["severity_max"]
        if [low, high] != engine_default("severity_range"):
            out["severity_range"] = [low, high]
        composition = dict(engine_default("composition"))
        for name in ("p_compose", "max_ops"):
            if d.get(name) is not None:
                composition[name] = d[name]
        if composition != engine_default("composition"):
            out["composition"] = composition
        families = {n.removeprefix("family_"): d[n] for n in self.family_fields if d.get(n) is not None}
        defaults = {n.removeprefix("family_"): self.initial[n] for n in self.family_fields}
        if families and {**defaults, **families} != defaults:
            out["families"] = {**defaults, **families}
        if d.get("distortions"):
            out["distortions"] = list(d["distortions"])
        if d.get("train_fraction") is not None:
            share = d["train_fraction"]
            splits = {"train": share, "val": round(1.0 - share, 6)}
            if splits != engine_default("splits"):
                out["splits"] = splits
        kind_defaults = _kind_engine_defaults(kind)
        for name, section in (("n_sentinels", "sentinels"), ("n_practice", "practice")):
            if d.get(name) is not None and d[name] != kind_defaults[name]:
                out[section] = {"n": d[name]}
        return out


# --- the studies list and the workers table ---
class StudyFilterForm(forms.Form):
    status = forms.ChoiceField(
        label="Status",
        required=False,
        choices=[("", "All statuses"), *Study.Status.choices],
    )


class WorkerReviewForm(forms.Form):
    decision = forms.ChoiceField(choices=[("approve", "Approve"), ("reject", "Reject")])
    reason = forms.CharField(
        label="Reason",
        required=False,
        max_length=REASON_MAX,
        widget=forms.Textarea(attrs={"rows": 2, "maxlength": REASON_MAX}),
    )
