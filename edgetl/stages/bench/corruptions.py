"""Camera conditions for `bench --robustness`: a suite of corruption families at graded
severities (a TOML file in corruptions/, data not code), applied with albumentations to the
reference images at the model's input size, before the artifact's own normalization.

Deterministic: each condition draws from its own generator, seeded by the suite's seed and
the condition's name, so the same images give the same bytes on every run (and the report
carries each condition's pixels_digest, so two machines can tell whether they fed the same pixels).
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgetl.core.datafiles import load_toml
from edgetl.core.errors import EdgetlError
from edgetl.core.fields import Source, read_fields

DEFAULT_SUITE = "camera"
INSTALL = "pip install 'edgetl[robustness]' (albumentations)"


@dataclass(frozen=True)
class Family:
    """One corruption family: an albumentations transform graded by one parameter."""

    transform: str
    parameter: str
    values: list[float]  # one per severity, 1..len(values)
    spatial: bool = False  # pixels at the suite's reference_size, scaled to the input
    odd: bool = False  # kernel sizes: rounded to odd numbers
    fixed: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    seed: int
    reference_size: int
    families: dict[str, Family]
    source: str = ""

    def conditions(self) -> Iterator[tuple[str, int]]:
        """(family, severity) in the file's order, severities from 1."""
        for name, family in self.families.items():
            for severity in range(1, len(family.values) + 1):
                yield name, severity


def load_suite(name: str = DEFAULT_SUITE) -> Suite:
    """A shipped suite by name, or a user's .toml by path; every transform is built once
    here, so a wrong name or parameter is exit 2 naming the file before any measuring."""
    data, source = load_toml(name, "edgetl.corruptions", "--corruptions", "corruptions")
    suite: Suite = read_fields(Suite, {**data, "source": source}, Source(source))
    if not suite.families:
        raise EdgetlError(f"{source}: no [families.NAME] tables; give at least one")
    for family_name, family in suite.families.items():
        if not family.values:
            raise EdgetlError(f"{source}: families.{family_name}.values is empty")
        for severity in range(1, len(family.values) + 1):
            _transform(suite, family_name, severity, suite.reference_size)
    return suite


def corrupt(suite: Suite, family: str, severity: int, images: np.ndarray) -> np.ndarray:
    """`images` (N, 3, S, S) uint8 under one condition, same shape and dtype."""
    size = images.shape[-1]
    transform = _transform(suite, family, severity, size)
    out = np.empty_like(images)
    for index, image in enumerate(images):
        hwc = np.ascontiguousarray(image.transpose(1, 2, 0))
        out[index] = transform(image=hwc)["image"].transpose(2, 0, 1)
    return out


def _transform(suite: Suite, family_name: str, severity: int, size: int) -> Any:
    """The albumentations pipeline of one condition, seeded by the suite and its name."""
    albumentations = _albumentations()
    family = suite.families[family_name]
    where = f"{suite.source}: families.{family_name}"
    maker = getattr(albumentations, family.transform, None)
    if maker is None or not isinstance(maker, type):
        raise EdgetlError(f"{where}.transform {family.transform!r}: not an albumentations "
                          "transform (e.g. GaussNoise, Defocus, ImageCompression)")  # fmt: skip
    value = _scaled(family, family.values[severity - 1], size / suite.reference_size)
    arguments = {**_tuples(family.fixed), family.parameter: (value, value), "p": 1.0}
    try:
        transform = maker(**arguments)
    except Exception as exc:  # pydantic's validation error names the parameter
        raise EdgetlError(f"{where}: {family.transform}({arguments}) refused: {exc}") from exc
    seed = (suite.seed + zlib.crc32(f"{family_name}:{severity}".encode())) % 2**32
    return albumentations.Compose([transform], seed=seed)


def _scaled(family: Family, value: float, factor: float) -> float | int:
    if not family.spatial:
        return int(value) if float(value).is_integer() and _integral(family) else value
    pixels = max(1, round(value * factor))
    if family.odd and pixels % 2 == 0:
        pixels += 1
    return max(pixels, 3) if family.odd else pixels


def _integral(family: Family) -> bool:
    return all(float(v).is_integer() for v in family.values)


def _tuples(fixed: dict[str, Any]) -> dict[str, Any]:
    """TOML arrays as the tuples albumentations' ranges are."""
    return {key: tuple(value) if isinstance(value, list) else value for key, value in fixed.items()}


def _albumentations() -> Any:
    # Its import asks pypi.org for a newer release (2 s timeout) and warns when there is one
    # or the network fails: on every bench, and on an offline device a raw UserWarning
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    try:
        import albumentations
    except ImportError as exc:
        raise EdgetlError(f"--robustness needs albumentations here: {INSTALL}") from exc
    return albumentations
