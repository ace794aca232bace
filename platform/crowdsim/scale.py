"""BAPPS-scale simulation studies (issue 19): a 2AFC study of the paper's shape, answered by a simulated
crowd, built in minutes so that the platform's costs can be measured at that size (devtools.bench_scale).

Shape: the paper's 2AFC train/val split and categories (docs/science.md, "Sizes"; paper Table 3): train
traditional 56,640 / cnn 38,120 / mix 56,640 (2 judgments each), val traditional, cnn and color 4,700 each,
superres 10,900, deblur 9,400, frameinterp 1,900 (5 each): 187,700 triplets. A smaller `items` keeps the
proportions (largest remainder).

The honest shortcut: the distortion engine builds `distinct` real triplets (plus its sentinels and
practice items), and the study's test items reuse them in turn (item i shows triplet i mod `distinct`;
its records say `copy_of`). Building 187k distinct triplets would take the engine minutes but write
~560k PNG files; the costs measured here are the database's, the aggregates', the exports' and
training's per-item work, which do not depend on whether two items share a file. An export of the study
therefore holds `distinct` distinct images per part, not 187k: its size is reported as what it is.

The crowd: workers `scale-<seed>-<w>` with the personas of crowdsim.simulation (10 % spammers, 5 %
lapses, Thurstone noise 0.15) take HITs in turn, each answered in full and submitted, until `judgments`
non-practice judgments are stored or the study has no work left. Answers come from a hidden l2_lab
observer's distances on the distinct triplets, through crowdsim.simulation.answer_2afc.

Two writers take the same crowd through the same decisions:
- `crowd_run_services`: the real code paths (assignment_start, judgment_submit, assignment_submit), one
  call per HIT and per answer. Hours at BAPPS size; the equivalence test runs it on a small study.
- `crowd_run_bulk`: the engine's queue rule replayed in memory (least loaded first, then index; never an
  item twice to a worker; QC exclusions give their counts back), the HIT composed by the engine's own
  hit_sequence, each judgment built by judgments.answers.judgment_build and each HIT's QC by
  judgments.qc.qc_summary, rows written with multi-row INSERTs and the items' counters set once.
  tests/apps/crowdsim/test_scale_study.py proves both write the same rows and counters for the same seed.
"""

from __future__ import annotations

import heapq
import math
import random
import shutil
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import connection, reset_queries, transaction
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from core.exceptions import ApplicationError
from judgments import sql, tallies
from judgments.answers import judgment_build, judgment_submit
from judgments.assignments import assignment_start, hit_pools, hit_sequence
from judgments.models import Assignment, CrowdPlatform, Judgment, Trial, Worker
from judgments.qc import assignment_submit, qc_summary
from judgments.workers import worker_hash
from studies.models import Item, Study
from studies.targets import item_targets_sync

# (split, category, triplets): the paper's 2AFC sets (docs/science.md, "Sizes")
BAPPS_2AFC = (
    ("train", "traditional", 56_640),
    ("train", "cnn", 38_120),
    ("train", "mix", 56_640),
    ("val", "traditional", 4_700),
    ("val", "cnn", 4_700),
    ("val", "color", 4_700),
    ("val", "superres", 10_900),
    ("val", "deblur", 9_400),
    ("val", "frameinterp", 1_900),
)
BAPPS_ITEMS = sum(n for _, _, n in BAPPS_2AFC)  # 187,700
# what the simulated crowd's browser sends with every answer (crowdsim.simulation._answer_trial)
DURATIONS = {"ref_ms": 1000, "gap_ms": 250, "distorted_ms": 1000}
DISPLAY = {"refresh_hz": 60, "simulated": True}
HIT_SPACING_S = 10.0  # bulk path: HIT h starts h x this after the first (a steady crowd, for the timeline)


@dataclass(frozen=True)
class ScaleParams:
    items: int = BAPPS_ITEMS
    judgments: int = 500_000  # non-practice judgments (tests and sentinels) to store, at most
    seed: int = 0
    distinct: int = 2_000  # distinct engine triplets the test items reuse
    workers: int = 600
    spammers: float = 0.1
    hit_size: int = 85  # the paper's protocol (studies.collection defaults)
    sentinel_rate: float = 0.15

    def name(self) -> str:
        """The study's name: the key a rerun finds the built study by."""
        return (
            f"BAPPS scale: {self.items} items, {self.judgments} judgments, seed {self.seed}, "
            f"{self.distinct} distinct triplets, {self.workers} workers, {self.spammers:g} spammers, "
            f"HIT {self.hit_size}, sentinels {self.sentinel_rate:g}"
        )

    def config(self) -> dict:
        """Collection config: the paper's protocol; training as devtools.bench_training times it (AlexNet
        with random weights: the cost of ImageNet weights without the download)."""
        return {
            "simulation": True,
            "judgments_per_item": {"train": 2, "val": 5},
            "hit_size": self.hit_size,
            "sentinel_rate": self.sentinel_rate,
            "training": {
                "every": 500,
                "backbones": [{"net": "alex", "weights": "random"}],
                "baselines": ["l2_lab", "psnr"],
                "official_lpips": False,
                "n_boot": 200,
            },
        }


def bapps_split(n_items: int) -> list[tuple[str, str, int]]:
    """(split, category, items) for n_items test items in the paper's proportions (largest remainder, so
    the counts sum to n_items exactly)."""
    quotas = [(split, cat, n * n_items / BAPPS_ITEMS) for split, cat, n in BAPPS_2AFC]
    counts = [math.floor(q) for _, _, q in quotas]
    order = sorted(range(len(quotas)), key=lambda k: (-(quotas[k][2] - counts[k]), k))
    for k in order[: n_items - sum(counts)]:
        counts[k] += 1
    return [(split, cat, n) for (split, cat, _), n in zip(quotas, counts, strict=True)]


# --- the stimuli ---------------------------------------------------------------------------------------
def _engine_entries(params: ScaleParams) -> list[dict]:
    """The distinct triplets, sentinels and practice items, built by the distortion engine into media
    storage (content-addressed: a rerun rewrites the same files)."""
    import distortions
    from studies.services import DEMO_BUILD_CONFIG

    media = Path(settings.MEDIA_ROOT)
    workdir = media / "builds" / f"scale-{params.seed}-{params.distinct}"
    config = {**DEMO_BUILD_CONFIG, "seed": 1800 + params.seed, "n_items": params.distinct}
    try:
        distortions.build_study(config, workdir, progress=True, images_dir=media / "stimuli")
        return distortions.read_manifest(workdir / "manifest.jsonl")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _item(study: Study, index: int, e: dict, **fields) -> Item:
    now = timezone.now()
    return Item(
        study=study,
        index=index,
        ref_image=f"stimuli/{e['files']['ref']}",
        p0_image=f"stimuli/{e['files']['p0']}",
        p1_image=f"stimuli/{e['files']['p1']}",
        records={"patch": e["patch"], **e["records"], "pixels_sha256": e["pixels_sha256"]},
        created_at=now,
        updated_at=now,
        **fields,
    )


def scale_items_write(study: Study, params: ScaleParams, entries: list[dict], progress=None) -> int:
    """The study's items: the engine's practice and sentinel items as built, then the test items of the
    BAPPS split, each showing distinct triplet index mod `distinct` (records: copy_of). Returns how many."""
    extra = [e for e in entries if e["role"] != "test"]
    tests = [e for e in entries if e["role"] == "test"]
    rows = [
        _item(study, k, e, split="train", category=e["role"], role=e["role"], expected=e["expected"] or "")
        for k, e in enumerate(extra)
    ]
    sql.insert_rows(rows)
    index, batch = len(rows), []
    # splits and categories interleaved in index order (seeded), as the engine draws them: the queue takes
    # items by index, so a crowd that stops early has judged every set, not the first category only
    labels = [(split, category) for split, category, n in bapps_split(params.items) for _ in range(n)]
    random.Random(params.seed).shuffle(labels)
    for split, category in labels:
        e = tests[(index - len(extra)) % len(tests)]
        item = _item(study, index, e, split=split, category=category, role="test")
        item.records["copy_of"] = e["index"]
        batch.append(item)
        index += 1
        if len(batch) == 5000:
            sql.insert_rows(batch)
            reset_queries()  # DEBUG keeps every statement's text otherwise (GBs at this size)
            batch = []
            if progress:
                progress(index - len(extra))
    if batch:
        sql.insert_rows(batch)
    item_targets_sync(study=study)  # each item's n_target: its split's count, as a build sets it
    if progress:
        progress(params.items)
    return index


# --- the crowd ------------------------------------------------------------------------------------------
class _DistanceTable:
    """An observer whose distances were measured once per item (answer_2afc asks distance(ref, side))."""

    def __init__(self, table: dict):
        self.table = table

    def distance(self, ref, side) -> float:
        return self.table[ref][side]


def item_distances(study: Study) -> dict:
    """item index -> {"p0": d(ref, p0), "p1": d(ref, p1)} under the hidden l2_lab observer, measured once
    per distinct triplet."""
    from crowdsim.simulation import Observer, decode_png  # torch: only where answers are simulated

    observer, media, by_files, out = Observer("l2_lab"), Path(settings.MEDIA_ROOT), {}, {}
    for index, ref, p0, p1 in (
        Item.objects.filter(study=study)
        .order_by("index")
        .values_list("index", "ref_image", "p0_image", "p1_image")
    ):
        if (ref, p0, p1) not in by_files:
            r, a, b = (decode_png((media / name).read_bytes()) for name in (ref, p0, p1))
            by_files[(ref, p0, p1)] = {"p0": observer.distance(r, a), "p1": observer.distance(r, b)}
        out[index] = by_files[(ref, p0, p1)]
    return out


@dataclass
class ScaleCrowd:
    """The simulated crowd's decisions, the same whichever writer stores them: who takes HIT h, and what a
    worker answers to a trial (crowdsim.simulation's personas and answer_2afc, one random stream per
    worker, drawn in trial order)."""

    params: ScaleParams
    distances: dict
    personas: list = field(init=False)
    rngs: dict = field(default_factory=dict)

    def __post_init__(self):
        from crowdsim.simulation import _personas

        self.personas = _personas(
            self.params.workers,
            seed=self.params.seed,
            spammers=self.params.spammers,
            noise=0.15,
            lapse=0.05,
            left_bias=0.0,
        )
        self.observer = _DistanceTable(self.distances)
        from crowdsim.simulation import answer_2afc

        self.answer_2afc = answer_2afc

    def worker_of(self, hit: int) -> int:
        return hit % self.params.workers

    def worker_id(self, w: int) -> str:
        return f"scale-{self.params.seed}-{w}"

    def answer(self, w: int, item_index: int, swap: bool) -> tuple[str, float]:
        """(response, rt_ms) of worker w to a trial of the item, p0 on the left unless `swap`."""
        rng = self.rngs.setdefault(w, random.Random(self.params.seed * 100_003 + w))
        persona = self.personas[w]
        left, right = ("p1", "p0") if swap else ("p0", "p1")
        response = self.answer_2afc(self.observer, persona, rng, left, item_index, right)
        return response, max(150.0, rng.gauss(persona.rt_ms, persona.rt_ms / 4))


def hit_rng(params: ScaleParams) -> random.Random:
    """The random stream HITs are composed from (sentinel draws, order, sides): the engine draws from
    judgments.assignments._rng; the equivalence test gives it this seeded stream."""
    return random.Random(params.seed)


def _counted(sequence) -> int:
    return sum(1 for _, kind, _ in sequence if kind != Trial.Kind.PRACTICE)


def crowd_run_services(study: Study, crowd: ScaleCrowd, progress=None) -> int:
    """The crowd through the real code paths, one HIT at a time; returns the non-practice judgments
    stored."""
    stored, hit = 0, 0
    while stored < crowd.params.judgments:
        w = crowd.worker_of(hit)
        try:
            started = assignment_start(
                study=study, platform=CrowdPlatform.SIMULATED, worker_id=crowd.worker_id(w)
            )
        except ApplicationError as exc:
            if exc.extra.get("code") == "no_work":
                break
            raise
        for trial in sorted(started.trials, key=lambda t: t.position):
            response, rt_ms = crowd.answer(w, trial.item.index, trial.swap)
            judgment_submit(
                token=started.assignment.token,
                trial_id=trial.public_id,
                response=response,
                rt_ms=rt_ms,
                idempotency_key=f"scale-{hit:07d}-{trial.position:03d}",
                durations=dict(DURATIONS),
                display=dict(DISPLAY),
            )
            stored += trial.kind != Trial.Kind.PRACTICE
        assignment_submit(token=started.assignment.token)
        hit += 1
        if progress:
            progress(stored)
    return stored


@dataclass(slots=True)
class _Slot:
    """A test item as the bulk path's queue holds it (what hit_compose and judgment_build read)."""

    pk: object
    index: int
    split: str
    expected: str = ""


class _Queue:
    """The assignment engine's rule (judgments.assignments._window) over in-memory loads: items below their
    split's target, least loaded first, then by index; never an item a worker had."""

    def __init__(self, slots: list[_Slot], targets: dict):
        self.slots = {s.index: s for s in slots}
        self.targets = targets
        self.load = dict.fromkeys(self.slots, 0)
        self.heap = [(0, s.index) for s in sorted(slots, key=lambda s: s.index)]  # sorted: a heap already
        self.seen: dict[int, set] = {}

    def take(self, w: int, n: int) -> list[_Slot]:
        seen = self.seen.setdefault(w, set())
        taken, aside = [], []
        while self.heap and len(taken) < n:
            load, index = heapq.heappop(self.heap)
            (aside if index in seen else taken).append((load, index))
        for entry in aside:
            heapq.heappush(self.heap, entry)
        seen.update(index for _, index in taken)
        return [self.slots[index] for _, index in taken]

    def settle(self, slots: list[_Slot], *, counted: bool) -> None:
        """A HIT's items after its submission: one judgment more each unless QC excluded the HIT."""
        for s in slots:
            self.load[s.index] += counted
            if self.load[s.index] < self.targets[s.split]:
                heapq.heappush(self.heap, (self.load[s.index], s.index))


def _bulk_workers(crowd: ScaleCrowd) -> list[Worker]:
    """The crowd's Worker rows (worker_get_or_create's identity: the salted hash of the simulated id)."""
    hashes = [
        worker_hash(platform=CrowdPlatform.SIMULATED, external_id=crowd.worker_id(w))
        for w in range(crowd.params.workers)
    ]
    have = {
        w.external_hash: w
        for w in Worker.objects.filter(platform=CrowdPlatform.SIMULATED, external_hash__in=hashes)
    }
    new = [
        Worker(platform=CrowdPlatform.SIMULATED, external_hash=h, is_simulated=True)
        for h in hashes
        if h not in have
    ]
    Worker.objects.bulk_create(new)
    have.update({w.external_hash: w for w in new})
    return [have[h] for h in hashes]


class _BulkHit:
    """One HIT's rows, built as the real path would store them."""

    def __init__(self, study: Study, config: dict, worker: Worker, sequence, start):
        self.assignment = Assignment(
            study=study,
            worker=worker,
            platform=CrowdPlatform.SIMULATED,
            platform_info={},
            n_trials=len(sequence),
            n_answered=len(sequence),
            status=Assignment.Status.SUBMITTED,
            completion_code=config["completion_code"] or "",
            created_at=start,
        )
        self.trials, self.judgments = [], []

    def answer(self, study, config, crowd, w, hit, pos, item, kind, swap, now) -> Judgment:
        trial = Trial(
            assignment_id=self.assignment.pk,
            worker_id=self.assignment.worker_id,
            item_id=item.pk,
            position=pos,
            kind=kind,
            swap=swap,
            answered=True,
            created_at=self.assignment.created_at,
            updated_at=now,
        )
        response, rt_ms = crowd.answer(w, item.index, swap)
        row = sql.AnswerRow(
            trial_id=trial.pk,
            trial_kind=kind,
            swap=swap,
            answered=False,
            item_id=item.pk,
            pk=self.assignment.pk,
            status=Assignment.Status.STARTED,
            lease_expires_at=None,
            worker_id=self.assignment.worker_id,
            n_answered=pos,
            n_trials=self.assignment.n_trials,
            study_id=study.pk,
            study_kind=study.kind,
            study_config=config,
            expected=item.expected,
            judgment_id=None,
            judgment_key=None,
        )
        judgment = judgment_build(
            row,
            config,
            now=now,
            response=response,
            rt_ms=rt_ms,
            idempotency_key=f"scale-{hit:07d}-{pos:03d}",
            client_shown_at=None,
            client_answered_at=None,
            durations=dict(DURATIONS),
            display=dict(DISPLAY),
        )
        self.trials.append(trial)
        self.judgments.append(judgment)
        tallies.add_to(self.assignment, judgment)  # what store_answers' update adds
        return judgment

    def submit(self, study, config, now) -> bool:
        """QC as assignment_submit applies it; returns whether the HIT counts."""
        rows = [
            {"kind": j.kind, "correct": j.correct, "response": j.response, "rt_ms": j.rt_ms}
            for j in self.judgments
            if j.kind != Trial.Kind.PRACTICE
        ]
        qc = qc_summary(rows=rows, kind=study.kind, rule=config["exclusion"])
        a = self.assignment
        a.qc, a.excluded, a.submitted_at, a.last_answer_at = qc, qc["excluded"], now, now
        a.lease_expires_at = now + timedelta(seconds=config["lease_ttl_s"])
        a.updated_at = now
        return not a.excluded


def crowd_run_bulk(study: Study, crowd: ScaleCrowd, *, start=None, progress=None) -> int:
    """The crowd's HITs written in bulk (module docstring); returns the non-practice judgments stored.
    Call inside a transaction."""
    config = study.collection
    jpi = config["judgments_per_item"]
    targets = {split: jpi.get(split, max(jpi.values())) for split in Item.Split.values}
    queue = _Queue(
        [
            _Slot(pk, index, split)
            for pk, index, split in Item.objects.filter(study=study, role=Item.Role.TEST).values_list(
                "pk", "index", "split"
            )
        ],
        targets,
    )
    pools, workers, rng = hit_pools(study=study), _bulk_workers(crowd), hit_rng(crowd.params)
    n_hits_max = math.ceil(crowd.params.judgments / max(1, crowd.params.hit_size)) + 1
    start = start or timezone.now() - timedelta(seconds=HIT_SPACING_S * n_hits_max)
    stored, hit, pending = 0, 0, []
    while stored < crowd.params.judgments:
        w = crowd.worker_of(hit)
        tests = queue.take(w, config["hit_size"])
        if not tests:
            break
        sequence = hit_sequence(study=study, config=config, tests=tests, rng=rng, pools=pools)
        now = start + timedelta(seconds=HIT_SPACING_S * hit)
        bulk = _BulkHit(study, config, workers[w], sequence, now)
        for pos, (item, kind, swap) in enumerate(sequence):
            judgment = bulk.answer(study, config, crowd, w, hit, pos, item, kind, swap, now)
            now = now + timedelta(milliseconds=judgment.rt_ms)
        counted = bulk.submit(study, config, now)
        queue.settle(tests, counted=counted)
        pending.append(bulk)
        stored += _counted(sequence)
        hit += 1
        if len(pending) >= 200:
            _bulk_flush(pending)
            pending = []
        if progress:
            progress(stored)
    _bulk_flush(pending)
    for n in sorted({n for n in queue.load.values() if n}):
        ids = [s.pk for i, s in queue.slots.items() if queue.load[i] == n]
        for k in range(0, len(ids), 5000):
            Item.objects.filter(pk__in=ids[k : k + 5000]).update(n_judgments=n)
    _choice_counts_set(study)
    return stored


def _choice_counts_set(study: Study) -> None:
    """Each test item's n_ones (its accepted votes for p1, which the answer path keeps) in one UPDATE."""
    ones = (
        Judgment.objects.filter(
            item=OuterRef("pk"), kind=Trial.Kind.TEST, choice=1, assignment__excluded=False
        )
        .order_by()
        .values("item")
        .annotate(c=Count("pk"))
        .values("c")
    )
    Item.objects.filter(study=study, role=Item.Role.TEST).update(n_ones=Coalesce(Subquery(ones), 0))


def _bulk_flush(hits: list[_BulkHit]) -> None:
    if not hits:
        return
    sql.insert_rows([h.assignment for h in hits])
    sql.insert_rows([t for h in hits for t in h.trials])
    sql.insert_rows([j for h in hits for j in h.judgments])
    reset_queries()  # DEBUG keeps every statement's text otherwise (GBs at this size)


# --- the command's entry point --------------------------------------------------------------------------
def scale_study_find(params: ScaleParams) -> Study | None:
    """The study built earlier with these parameters (built whole or not at all: one transaction)."""
    return Study.objects.filter(name=params.name(), kind=Study.Kind.TWO_AFC).order_by("created_at").first()


def scale_study_build(params: ScaleParams, *, owner=None, progress_factory=None) -> tuple[Study, bool]:
    """The scale study with these parameters: found (False) or built now (True), in one transaction so that
    an interrupted build leaves nothing. `progress_factory(total, desc)` gives a callable(done) for a bar."""
    from studies.services import study_create

    found = scale_study_find(params)
    if found is not None:
        return found, False
    entries = _engine_entries(params)
    with transaction.atomic():
        study = study_create(
            name=params.name(), kind=Study.Kind.TWO_AFC, build_config={}, owner=owner, config=params.config()
        )
        bar = progress_factory(params.items, "items") if progress_factory else None
        scale_items_write(study, params, entries, progress=bar)
        Study.objects.filter(pk=study.pk).update(status=Study.Status.ACTIVE)
        study.refresh_from_db()
        crowd = ScaleCrowd(params, item_distances(study))
        bar = progress_factory(params.judgments, "judgments") if progress_factory else None
        crowd_run_bulk(study, crowd, progress=bar)
    if connection.vendor == "postgresql" and connection.get_autocommit():
        # what autovacuum does after a bulk load, now: plans for the new rows, the items' dead versions (the
        # build updates each item's counters) cleared, and the visibility map set, which the dashboard's
        # index-only scans of the items (item_tally_idx) need
        with connection.cursor() as cursor:
            for model in (Item, Assignment, Trial, Judgment):
                cursor.execute(f"VACUUM (ANALYZE) {model._meta.db_table}")
    return study, True


def params_dict(params: ScaleParams) -> dict:
    return asdict(params)
