"""The search, step by step: latency of every architecture (prune what is over budget),
FP32 heads on cached features (one extraction per backbone x size), INT8 through the guard
only where it could still be on the front, the Pareto front and the choice on val, then the
chosen model fine-tuned and exported to SEARCH/chosen."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgetl.backends.probe import TimedArch
from edgetl.backends.profiles import load_target
from edgetl.core.data.dataset import load_dataset
from edgetl.core.data.splits import Splits
from edgetl.core.errors import EdgetlError
from edgetl.core.events import quiet
from edgetl.core.measures.evidence import DEFAULT_CONFIDENCE
from edgetl.core.options import carried
from edgetl.core.ui import progress
from edgetl.quantize.guard import check_certifiable
from edgetl.stages.export import ExportOptions, export
from edgetl.stages.export.plan import GUARD_IMAGES
from edgetl.stages.finetune import FinetuneOptions, finetune
from edgetl.stages.search.front import choose, drop_unpaid, front
from edgetl.stages.search.latency import (
    LoadedArch,
    check_reference,
    compile_arch,
    load_arch,
    load_reference,
    reference_probe,
    time_archs,
)
from edgetl.stages.search.options import SearchOptions, check_options
from edgetl.stages.search.space import Candidate, grid, head_hidden
from edgetl.stages.search.state import RANKED, Record, SearchState, Status, resume
from edgetl.train.backbones import Backbone, load_backbone
from edgetl.train.devices import resolve_device
from edgetl.train.extract import default_workers
from edgetl.train.features import cached_features, default_cache_dir, row_precision
from edgetl.train.loop import eval_logits, evaluate_logits, train_head
from edgetl.train.model import Head

CALIBRATION_IMAGES = 32  # for timing an INT8 architecture only: its accuracy comes later
REFERENCE = "--reference"  # the key the reference artifact is timed under, with the candidates
# Crops the search keeps in memory for its later stages (each export decodes the same val and
# test images at a candidate's size): 1 GiB holds 7,000 crops at 224 px.
CROP_MEMO_BYTES = 1 << 30


@dataclass(frozen=True)
class SearchResult:
    out: Path
    state: SearchState

    @property
    def chosen(self) -> Record | None:
        return self.state.records.get(self.state.chosen or "")

    @property
    def passed(self) -> bool:
        return self.chosen is not None

    @property
    def failures(self) -> list[str]:
        if self.chosen is not None:
            return []
        if self.state.stopped:
            return [f"{self.state.stopped}, before any candidate was measured whole; run the "
                    "same search again to resume"]  # fmt: skip
        return ["no candidate meets the budget: raise --max-latency or --max-size, or add "
                "smaller --sizes / --backbones"]  # fmt: skip


class Search:
    """One search run: its options, data, state on disk and the clock."""

    def __init__(self, opts: SearchOptions):
        self.opts = opts
        self.profile = load_target(opts.target)
        self.started = time.perf_counter()
        self.splits: Splits = load_dataset(opts.data, opts.val_fraction, opts.test_fraction,
                                           opts.seed)  # fmt: skip
        self.splits.remember_crops(CROP_MEMO_BYTES)  # the one scan; each crop made once
        self.classes = len(self.splits.classes)
        if "int8" in (opts.precisions or self.profile.precisions):  # exit 2 now, not at export
            val = min(len(self.splits.val), GUARD_IMAGES)  # what each export's guard measures
            check_certifiable(val, opts.max_accuracy_drop, DEFAULT_CONFIDENCE)
        self.state = SearchState(opts.settings())
        self.device = resolve_device("auto")
        self.cache = opts.cache_dir or default_cache_dir()

    # -- the clock and the state ---------------------------------------------------------
    def out_of_time(self) -> bool:
        limit = self.opts.budget_minutes
        if limit is None or time.perf_counter() - self.started < limit * 60:
            return False
        self.state.stopped = f"--budget-minutes {limit:g} reached: the best so far is chosen"
        return True

    def save(self) -> None:
        self.state.seconds = time.perf_counter() - self.started
        self.state.write(self.opts.out)

    # -- step 1: latency, nothing trained --------------------------------------------------
    def measure_latency(self, records: list[Record]) -> None:
        """Every architecture not timed yet, loaded, then timed together (interleaved):
        here, or with --on on a lab device."""
        opts = self.opts
        todo = list({r.candidate.arch: r for r in records if r.p50_ms is None}.values())
        if not todo or self.out_of_time():
            return
        timed = self.time_on_device(todo) if opts.on else self.time_here(todo)
        reference = timed.pop(REFERENCE, None)
        if reference is not None and self.state.reference is None:
            self.state.reference = {"artifact": str(opts.reference), **reference.to_dict()}
        budget = self.state.budget_ms = self.budget_ms()
        by_arch = {self.state.records[key].candidate.arch: t for key, t in timed.items()}
        for record in records:  # one timing serves every K of an architecture
            found = by_arch.get(record.candidate.arch)
            if found is None or record.p50_ms is not None:
                continue
            timing = found.to_dict()
            record.p50_ms, record.p90_ms = timing["p50_ms"], timing["p90_ms"]
            record.size_mb, record.runtime = found.size_mb, found.runtime
            measured = record.p90_ms if opts.latency == "p90" else record.p50_ms
            if measured > budget:
                record.status = Status.OVER_BUDGET
                record.reason = f"{opts.latency} {measured:.2f} ms > {budget:.4g} ms"
            elif opts.max_size_mb is not None and found.size_mb > opts.max_size_mb:
                record.status = Status.OVER_BUDGET
                record.reason = f"{found.size_mb:.2f} MB > {opts.max_size_mb:g} MB"
        drop_unpaid(records, opts.int8_payoff)
        self.save()

    def budget_ms(self) -> float:
        """The latency budget in ms: --max-latency's, or its multiple of the reference's
        p50/p90 as timed in the same rounds as the candidates."""
        if self.opts.max_latency_x is None:
            assert self.opts.max_latency_ms is not None
            return self.opts.max_latency_ms
        assert self.state.reference is not None
        return round(self.opts.max_latency_x * self.state.reference[f"{self.opts.latency}_ms"], 4)

    def inputs(self, record: Record) -> tuple[Candidate, Backbone, np.ndarray]:
        backbone = self.backbone(record.backbone, record.size)
        calibration = self.splits.train.sample(CALIBRATION_IMAGES, self.opts.seed)
        return record.candidate, backbone, calibration.arrays(backbone.preprocess)

    def time_here(self, records: list[Record]) -> dict[str, TimedArch]:
        loaded: dict[str, LoadedArch] = {}
        for record in records:
            candidate, backbone, arrays = self.inputs(record)
            loaded[record.key] = load_arch(candidate, backbone, self.classes, arrays,
                                           self.profile)  # fmt: skip
        if self.opts.reference is not None:
            loaded[REFERENCE] = load_reference(self.opts.reference, self.profile)
        return time_archs(loaded, self.opts.iterations)

    def time_on_device(self, records: list[Record]) -> dict[str, TimedArch]:
        """Each architecture compiled here (SEARCH/probes), copied to the lab device once by
        content, all timed there in one interleaved run of `edgetl probe-latency`."""
        from edgetl.stages.lab.probes import time_on

        folders = {}
        for record in records:
            candidate, backbone, arrays = self.inputs(record)
            folder = self.opts.out / "probes" / _slug(record.key)
            compile_arch(candidate, backbone, self.classes, arrays, self.profile, folder)
            folders[record.key] = folder
        if self.opts.reference is not None:
            staged = self.opts.out / "probes" / "reference"
            folders[REFERENCE] = reference_probe(self.opts.reference, self.profile, staged)
        assert self.opts.on is not None
        return time_on(folders, self.profile.backend, self.opts.on, self.opts.lab,
                       self.opts.iterations)  # fmt: skip

    def backbone(self, name: str, size: int) -> Backbone:
        return load_backbone(name, self.opts.weights, size)

    # -- step 2: FP32 heads on cached features -----------------------------------------------
    def train_heads(self, records: list[Record]) -> dict[str, float]:
        """FP32 val (and test) top-1 per within-budget candidate; returns the FP32 val top-1
        of every (backbone, size, head) trained, for the INT8 step."""
        fp32: dict[str, float] = {}
        groups: dict[str, list[Record]] = {}
        for record in records:
            if record.status == Status.PENDING and record.unfreeze == 0:
                groups.setdefault(f"{record.backbone}@{record.size}", []).append(record)
        for group in groups.values():
            if self.out_of_time():
                break
            first = group[0]
            backbone = self.backbone(first.backbone, first.size)
            feats, _ = cached_features(
                backbone, self.splits, self.device, self.opts.batch_size, self.workers(),
                self.cache,
            )  # fmt: skip
            choice = row_precision(self.cache, backbone, self.device, feats, self.splits,
                                   0, self.opts.head_training())  # fmt: skip
            feats = {role: choice.rounded(rows) for role, rows in feats.items()}
            for head in dict.fromkeys(r.head for r in group):
                val, test = self.fit_head(backbone, feats, head)
                fp32[replace(first.candidate, head=head, precision="fp32").key] = val
                for record in group:
                    if record.head == head:
                        record.trained = True
                        if record.precision == "fp32":
                            record.val_top1, record.test_top1 = val, test
            self.save()
        return fp32

    def fit_head(
        self, backbone: Backbone, feats: dict[str, torch.Tensor], head_name: str
    ) -> tuple[float, float]:
        torch.manual_seed(self.opts.seed)  # as finetune does: the head its run would train
        head = Head(backbone.num_features, self.classes, head_hidden(head_name))
        head.set_feature_stats(feats["train"])
        labels = {role: torch.from_numpy(self.splits.part(role).labels) for role in feats}
        with quiet():  # one head of many: the search's bar says where it is
            train_head(head, feats["train"], labels["train"], feats["val"], labels["val"],
                       self.opts.head_training())  # fmt: skip
        val = evaluate_logits(eval_logits(head, feats["val"]), labels["val"])[1]
        test = evaluate_logits(eval_logits(head, feats["test"]), labels["test"])[1]
        return _score(val), _score(test)

    def fine_tune(self, records: list[Record], fp32: dict[str, float]) -> None:
        """FP32 candidates with K > 0 stages fine-tuned: real `finetune --unfreeze K` runs
        (the expensive step: images through the backbone's training), within budget only;
        their val top-1 joins `fp32` for the INT8/FP16 step."""
        for record in sorted(records, key=lambda r: (r.unfreeze, r.p50_ms or 0.0)):
            if (
                record.unfreeze == 0
                or record.precision != "fp32"
                or record.status != Status.PENDING
            ):
                continue
            if record.val_top1 is None:
                if self.out_of_time():
                    break
                info = self.run(record)
                record.val_top1 = info.metrics.val_top1
                record.test_top1 = info.metrics.test_top1
                record.trained = True
                self.save()
            fp32[record.key] = record.val_top1

    def workers(self) -> int:
        return default_workers() if self.opts.workers is None else self.opts.workers

    # -- step 3: INT8 and FP16 (measured through export) where they could still be on the front
    def quantize(self, records: list[Record], fp32: dict[str, float]) -> None:
        for record in sorted(records, key=lambda r: r.p50_ms or 0.0):
            if record.precision == "fp32" or record.status != Status.PENDING:
                continue
            if record.val_top1 is not None or self.out_of_time():
                continue
            ceiling = fp32.get(replace(record.candidate, precision="fp32").key)
            if ceiling is None:
                continue
            beaten = [
                r for r in records
                if r.val_top1 is not None and r.status == Status.PENDING
                and (r.p50_ms or 0) <= (record.p50_ms or 0) and r.val_top1 > ceiling
            ]  # fmt: skip
            if beaten:
                record.status = Status.DOMINATED
                record.reason = f"{beaten[0].key} is as fast and beats even its FP32 val top-1"
                self.save()
                continue
            try:
                manifest = self.export(record)
            except EdgetlError as exc:  # e.g. too few images to calibrate: this one fails
                record.status, record.reason = Status.FAILED, str(exc)
                self.save()
                continue
            if manifest is None:
                record.status, record.reason = (
                    Status.FAILED,
                    "the INT8 guard found no model in budget",
                )
            else:
                record.val_top1 = _score(manifest.accuracy.val.top1)
                record.test_top1 = _score(manifest.accuracy.test.top1)
            self.save()

    def run(self, record: Record) -> Any:
        """A real run of `record` (for K = 0, its head as the search trained it); its info."""
        opts = carried(FinetuneOptions, self.opts, out=self.run_dir(record),
                       backbone=record.backbone, image_size=record.size,
                       hidden=record.candidate.hidden, cache_dir=self.cache, force=True,
                       unfreeze=record.unfreeze)  # fmt: skip
        with quiet():  # a run of the search's: its own table says what came of it
            return finetune(opts, self.splits)

    def export(self, record: Record, out: Path | None = None) -> Any:
        """A real run of `record` exported; the manifest, or None when the guard found no
        INT8 model within budget."""
        opts = self.opts
        self.run(record)
        export_opts = ExportOptions(
            run=self.run_dir(record), target=opts.target, precision=record.precision, out=out,
            max_accuracy_drop=opts.max_accuracy_drop, force=True,
        )  # fmt: skip
        with quiet():
            result = export(export_opts, self.splits)
        return result.manifest if result.passed else None

    def run_dir(self, record: Record) -> Path:
        return self.opts.out / "runs" / _slug(record.key)


def _score(top1: float) -> float:
    """Top-1 as every source records it (runs: 5 digits): then 36 of 38 from a head, a run
    or an export is one number, and a tie goes to the faster candidate."""
    return round(top1, 5)


def _slug(key: str) -> str:
    return key.replace("/", "-").replace("@", "-")


def search(opts: SearchOptions) -> SearchResult:
    check_options(opts)
    opts.out.mkdir(parents=True, exist_ok=True)
    run = Search(opts)
    if opts.reference is not None:
        check_reference(opts.reference, run.profile)  # exit 2 before anything is timed
    if not opts.force:
        run.state = resume(opts.out, opts.settings())
    precisions = opts.precisions or list(run.profile.precisions)
    for precision in precisions:
        run.profile.check_precision(precision)  # exit 2 naming what the target supports
    candidates = grid(opts.backbones, opts.sizes, opts.heads, precisions, opts.unfreeze)
    records = [
        run.state.records.setdefault(
            c.key, Record(c.key, c.backbone, c.size, c.head, c.precision, c.unfreeze)
        )
        for c in candidates
    ]
    with progress() as bar:
        task = bar.add_task("search", total=len(records), info="")

        def tick(step: str) -> None:
            done = sum(r.status != Status.PENDING or r.val_top1 is not None for r in records)
            pruned = sum(r.status == Status.OVER_BUDGET for r in records)
            bar.update(task, completed=done, info=f"{step}: {pruned} pruned, "
                       f"{len(records) - done} left")  # fmt: skip

        tick("latency")
        run.measure_latency(records)
        tick("heads")
        fp32 = run.train_heads(records)
        tick("fine-tune")
        run.fine_tune(records, fp32)
        tick("int8")
        run.quantize(records, fp32)
        tick("done")
    _settle(run, records)
    return SearchResult(opts.out, run.state)


def _settle(run: Search, records: list[Record]) -> None:
    """Statuses from the front, the chosen one exported to SEARCH/chosen, state written."""
    on_front = {r.key for r in front(records)}
    for record in records:
        if record.val_top1 is not None and record.status in RANKED:
            record.status = Status.ON_THE_FRONT if record.key in on_front else Status.DOMINATED
    chosen = choose(records)
    if chosen is not None:
        chosen.status = Status.CHOSEN
        exported = (run.opts.out / "chosen" / "manifest.json").is_file()
        if not (exported and run.state.chosen == chosen.key and chosen.test_top1 is not None):
            _export_chosen(run, chosen)
        run.state.chosen = chosen.key
    run.save()


def _export_chosen(run: Search, chosen: Record) -> None:
    target = run.opts.out / "chosen"
    staged = run.opts.out / ".chosen-staging"
    shutil.rmtree(staged, ignore_errors=True)
    manifest = run.export(chosen, staged)
    if manifest is None:
        raise EdgetlError(f"{chosen.key}: its export failed on a re-run; search again with --force")
    chosen.test_top1 = _score(manifest.accuracy.test.top1)
    if target.exists():
        shutil.rmtree(target)
    staged.rename(target)
