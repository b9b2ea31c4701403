"""`edgetl attack ART --out FILE`: the teacher-transfer attack on an artifact's reference
images, crafted on this host from public information only (train/attack.py), written as an
attack file that `bench --robustness --attack FILE` scores on any device like data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgetl.core.artifact.attack_set import AttackSet, pixels_digest
from edgetl.core.artifact.reference import ReferenceSet
from edgetl.core.errors import EdgetlError
from edgetl.core.events import say
from edgetl.core.options import joined, numbers, option
from edgetl.core.outputs import check_writable
from edgetl.core.records import Manifest, RunInfo
from edgetl.core.records.detector import is_detector
from edgetl.core.records.robustness import AttackInfo


@dataclass
class AttackOptions:
    artifact: Path
    out: Path = option(help="Write the attack file here (.npz).")
    epsilons: tuple[int, ...] = option(
        (2, 4, 8), "Perturbation budgets in 1/255 of the pixel range, e.g. 2,4,8.",
        parse=numbers, unparse=joined,
    )  # fmt: skip
    method: str = option("pgd", "pgd (iterated) or fgsm (one step).", choices=("pgd", "fgsm"))
    steps: int = option(10, "PGD steps per epsilon.")
    surrogate_images: int = option(
        1000, "The attacker's labelled images: at most this many of the run's train split."
    )
    force: bool = option(False, "Replace an existing --out file.")


def attack(opts: AttackOptions) -> AttackSet:
    """Craft and write the attack file; returns it (its record filled in as read back)."""
    manifest, run_dir = _checked(opts)
    from edgetl.core.data.splitting import stratified_sample
    from edgetl.train.attack import Attack, craft, fit_surrogate, public_backbone, scratch_top1
    from edgetl.train.model import Run

    info = RunInfo.read(run_dir)  # the record only: the run's head is never read
    reference = ReferenceSet.load(opts.artifact / manifest.reference.file)
    train = Run(run_dir, info).splits().part("train")
    if len(train) > opts.surrogate_images:
        train = train.subset(stratified_sample(train.labels, opts.surrogate_images, 0))
    backbone = public_backbone(info)
    say(f"attack: public {backbone.name} ({backbone.weights_source}); fitting the attacker's "
        f"head on {len(train)} train images")  # fmt: skip
    head, fit_top1 = fit_surrogate(backbone, train, len(info.classes))
    attack = Attack(opts.method, tuple(float(e) for e in opts.epsilons), opts.steps)
    images = craft(backbone, head, reference.images, reference.labels, attack)
    scratch = scratch_top1(run_dir, info, [reference.images, *images], reference.labels,
                           info.preprocess)  # fmt: skip
    record = AttackInfo(
        file="", sha256="", method=attack.describe(),
        backbone=f"{backbone.name} ({backbone.weights_source})",
        weights_sha256=backbone.weights_sha256,
        surrogate=(f"logistic regression on the public backbone's features of {len(train)} "
                   f"of the run's train images (top-1 {fit_top1:.1%} on them); the user's "
                   "head and fine-tuned weights are never read"),
        scratch={} if scratch is None else dict(
            zip(["clean", *(f"{e:g}" for e in attack.epsilons)], scratch, strict=True)),
    )  # fmt: skip
    crafted = AttackSet(images, reference.labels, list(attack.epsilons),
                        pixels_digest(reference.images), record)  # fmt: skip
    crafted.save(opts.out)
    say(f"attack: wrote {opts.out}")
    return AttackSet.load(opts.out)


def _checked(opts: AttackOptions) -> tuple[Manifest, Path]:
    """The artifact's manifest and its run's folder, or exit 2 before any work."""
    if opts.out.exists() and not opts.force:
        raise EdgetlError(f"--out {opts.out}: exists; give --force to replace it")
    if opts.out.exists() and opts.out.is_dir():
        raise EdgetlError(f"--out {opts.out}: a directory; give a file name (.npz)")
    check_writable(opts.out, "--out")
    if not opts.epsilons or min(opts.epsilons) < 1 or max(opts.epsilons) > 64:
        raise EdgetlError(f"--epsilons {joined(opts.epsilons)}: give whole numbers 1..64 "
                          "(in 1/255 of the pixel range), e.g. 2,4,8")  # fmt: skip
    if opts.steps < 1 or opts.surrogate_images < 2:
        raise EdgetlError("--steps must be at least 1 and --surrogate-images at least 2")
    if is_detector(opts.artifact):
        raise EdgetlError(f"{opts.artifact}: a detector; the attack is for classifiers")
    manifest = Manifest.read(opts.artifact)  # every checksum verified
    run_dir = manifest.run.here()
    if run_dir is None:
        raise EdgetlError(
            f"{opts.artifact}: its run {manifest.run.path} is not here (or changed since "
            "export); the attack needs the run's record and data (which backbone, which train "
            "images). Craft it on the host that trained it"
        )
    return manifest, run_dir
