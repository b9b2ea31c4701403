"""The attack file `edgetl attack` writes and `bench --robustness --attack FILE` scores: the
artifact's reference images perturbed by an attacker who has only public information (the
pretrained backbone's weights and a head of their own), as uint8 pixels at the model's input
size, one set per epsilon. Crafted on a host (it needs torch), read anywhere (NumPy only),
like the reference set: an .npz read with allow_pickle=False.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.core.artifact.reference import read_arrays, write_arrays
from edgetl.core.errors import EdgetlError
from edgetl.core.fields import Source, read_fields, write_fields
from edgetl.core.records.robustness import AttackInfo

ATTACK_SCHEMA = "edgetl.attack/1"


def pixels_digest(images: np.ndarray) -> str:
    """sha256 of uint8 pixels and their shape: which images a file or a condition holds."""
    hashed = hashlib.sha256(str(tuple(images.shape)).encode())
    hashed.update(np.ascontiguousarray(images).tobytes())
    return hashed.hexdigest()


@dataclass
class AttackSet:
    images: np.ndarray  # (E, N, 3, S, S) uint8: the reference images under each epsilon
    labels: np.ndarray  # (N,) int64, the reference set's
    epsilons: list[float]  # in 1/255 of the pixel range, one per set
    clean_sha256: str  # pixels_digest of the reference images it was crafted from
    info: AttackInfo  # file and sha256 are filled in when read

    def save(self, path: Path) -> None:
        record = {"schema": ATTACK_SCHEMA, **write_fields(self.info)}
        write_arrays(path, {
            "images": self.images, "labels": self.labels,
            "epsilons": np.asarray(self.epsilons, dtype=np.float64),
            "clean_sha256": np.asarray(self.clean_sha256),
            "record": np.asarray(json.dumps(record, sort_keys=True)),
        })  # fmt: skip

    @classmethod
    def load(cls, path: Path) -> AttackSet:
        if not path.is_file():
            raise EdgetlError(f"--attack {path}: no such file; make one with `edgetl attack ART`")
        arrays = read_arrays(path, "attack file",
                             ("images", "labels", "epsilons", "clean_sha256", "record"),
                             "craft it again with `edgetl attack`")  # fmt: skip
        images, labels, epsilons = arrays["images"], arrays["labels"], arrays["epsilons"]
        if (
            images.dtype != np.uint8
            or images.ndim != 5
            or images.shape[:2] != (len(epsilons), len(labels))
        ):
            raise EdgetlError(f"{path}: images are not (epsilons, N, 3, S, S) uint8; craft it "
                              "again with `edgetl attack`")  # fmt: skip
        record = _record(path, str(arrays["record"]))
        from edgetl.core.files import sha256_file

        info: AttackInfo = read_fields(
            AttackInfo, {**record, "file": str(path), "sha256": sha256_file(path)},
            Source(str(path), strict=False),
        )  # fmt: skip
        return cls(images, labels.astype(np.int64), [float(e) for e in epsilons],
                   str(arrays["clean_sha256"]), info)  # fmt: skip

    def check_digest(self, clean: str, artifact: Path) -> None:
        """The file was crafted from the images whose pixels_digest is `clean` (the
        artifact's reference set), or exit 2 saying what to do."""
        if clean != self.clean_sha256:
            raise EdgetlError(
                f"--attack {self.info.file}: crafted from other images than {artifact}'s "
                f"reference set; craft it for this artifact: edgetl attack {artifact} --out FILE"
            )


def _record(path: Path, text: str) -> dict[str, Any]:
    try:
        record = json.loads(text)
    except ValueError as exc:
        raise EdgetlError(f"{path}: its record is not JSON ({exc})") from exc
    if not isinstance(record, dict) or record.get("schema") != ATTACK_SCHEMA:
        raise EdgetlError(f"{path}: not an {ATTACK_SCHEMA} file; craft it with `edgetl attack`")
    return {key: value for key, value in record.items() if key != "schema"}
