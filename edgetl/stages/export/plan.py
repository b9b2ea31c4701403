"""Step 1 of an export: resolve what will be made, and check every option, before any work."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from edgetl.backends import Placement, resolve
from edgetl.backends.profiles import load_target
from edgetl.core.errors import EdgetlError
from edgetl.core.events import say
from edgetl.core.measures.evidence import DEFAULT_CONFIDENCE, DEFAULT_RULE, RULES
from edgetl.core.outputs import check_not_input
from edgetl.core.targets import Precision, TargetProfile
from edgetl.quantize.calibration import MIN_SAMPLES
from edgetl.quantize.guard import check_certifiable
from edgetl.quantize.recipes import Recipe, load_recipe
from edgetl.stages.export.options import ExportOptions
from edgetl.train.model import Run, load_run

GUARD_IMAGES = 1000  # validation images the INT8 accuracy guard measures (at most)


@dataclass(frozen=True)
class Plan:
    """Everything an export decides up front: the run, the profile (alias resolved), the
    precision, the INT8 recipe (None otherwise), where it compiles and measures, the output
    directory and the signing key."""

    opts: ExportOptions
    run: Run
    profile: TargetProfile
    precision: Precision
    recipe: Recipe | None
    placement: Placement
    out: Path
    signing_key: Any

    @cached_property
    def compiler(self) -> Any:
        """The target's compiler (backends.compiler.Compiler): it makes the artifact."""
        return self.placement.compiler()

    @cached_property
    def measurer(self) -> Any:
        """The compiler of the runtime that measures here: it runs in-memory graphs."""
        return self.placement.measurer()

    @property
    def measuring(self) -> TargetProfile:
        """The profile the model is measured with here: the target's, on the device it runs
        on here (another device of the same runtime when the target's is absent)."""
        return replace(self.profile, device=self.placement.device)

    @property
    def name(self) -> str:
        return f"{self.profile.name}-{self.precision}"


def _data_dir(run: Run) -> Path | None:
    """The run's dataset folder (None: the built-in digits, or a source no longer there)."""
    source = Path(run.info.data.source)
    return source if run.info.data.source != "digits" and source.exists() else None


def default_out(run: Path, profile: TargetProfile, precision: str) -> Path:
    return run / "export" / f"{profile.name}-{precision}"


def resolve_plan(opts: ExportOptions) -> Plan:
    """The plan, or EdgetlError (exit 2) naming the option at fault; nothing is written."""
    _check_counts(opts)
    run = load_run(opts.run)
    profile = load_target(opts.target)
    if profile.alias is not None:
        say(f"target {profile.alias} is an alias: exporting for {profile.name}")
    precision = profile.check_precision(opts.precision)
    recipe = _check_int8_options(opts, profile, precision)
    if recipe is not None:  # exit 2 now, not after minutes of quantizing, when val is too small
        val = min(run.info.data.sizes.get("val", 0), val_sample_size(opts, int8=True))
        check_certifiable(val, *guard_terms(opts))
    placement = resolve(profile, f"target {profile.name}", export=True)
    if placement.note:
        say(placement.note)
    out = opts.out or default_out(opts.run, profile, precision)
    signing_key = None
    if opts.sign is not None:
        from edgetl.core.artifact.signing import load_private_key

        signing_key = load_private_key(opts.sign)  # a bad key is exit 2 before the work
    check_not_input(
        out,
        {
            "the run": opts.run,
            "--calib-data": opts.calib_data,
            "the --target file": _user_file(opts.target),
            "the --recipe file": _user_file(opts.recipe),
            "the --sign key": opts.sign,
            # The next finetune reads it again: an artifact inside it broke that one.
            "the run's data": _data_dir(run),
        },
        allowed_inside={"the run": opts.run / "export"},
    )
    return Plan(opts, run, profile, precision, recipe, placement, out, signing_key)


def val_sample_size(opts: ExportOptions, int8: bool) -> int:
    """Validation images an export measures at most: the parity check's, and for INT8 at
    least the guard's."""
    return max(opts.parity_samples, GUARD_IMAGES) if int8 else opts.parity_samples


def guard_terms(opts: ExportOptions) -> tuple[float, float]:
    """The guard's budget (points) and the confidence of its bound."""
    confidence = DEFAULT_CONFIDENCE if opts.confidence is None else opts.confidence
    return opts.max_accuracy_drop, confidence


def _user_file(name: str | None) -> Path | None:
    return Path(name) if name is not None and name.endswith(".toml") else None


def _check_counts(opts: ExportOptions) -> None:
    for option, value in (
        ("--parity-samples", opts.parity_samples),
        ("--reference-samples", opts.reference_samples),
    ):
        if value < 1:
            raise EdgetlError(f"{option} {value}: must be at least 1")


def _check_int8_options(
    opts: ExportOptions, profile: TargetProfile, precision: str
) -> Recipe | None:
    """The INT8 recipe, or None for other precisions; INT8 options without INT8 are an error."""
    if precision != "int8":
        given = [
            name
            for name, value in (
                ("--recipe", opts.recipe),
                ("--calib-data", opts.calib_data),
                ("--calib-samples", opts.calib_samples),
                ("--confidence", opts.confidence),
                ("--rule", None if opts.rule == DEFAULT_RULE else opts.rule),
            )
            if value is not None
        ]
        if given:
            raise EdgetlError(f"{', '.join(given)}: only used with --precision int8")
        return None
    if opts.rule not in RULES:
        raise EdgetlError(f"--rule {opts.rule}: choose one of {', '.join(RULES)}")
    if not 0 <= opts.max_accuracy_drop <= 100:
        raise EdgetlError(
            f"--max-accuracy-drop {opts.max_accuracy_drop}: give points of top-1 between 0 and 100"
        )
    if opts.calib_samples is not None and opts.calib_samples < MIN_SAMPLES:
        raise EdgetlError(f"--calib-samples {opts.calib_samples}: need at least {MIN_SAMPLES}")
    if opts.calib_data is not None and not opts.calib_data.exists():
        raise EdgetlError(f"--calib-data {opts.calib_data}: no such directory or .npy file")
    return load_recipe(opts.recipe or profile.recipe)
