"""The build stage, on the device: a TensorRT bundle -> model.engine, checked on the reference
set against the logits the host measured for the same graph."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edgetl.backends import run_all
from edgetl.backends.tensorrt.detector_check import check_detector, refuse
from edgetl.backends.tensorrt.options import TensorRtOptions
from edgetl.backends.tensorrt.record import EngineDevice, EngineRecord
from edgetl.backends.tensorrt.runtime import ENGINE_FILE, TIMING_CACHE, TensorRtRuntime
from edgetl.core.artifact.reference import ReferenceSet
from edgetl.core.env import jetson
from edgetl.core.errors import EdgetlError
from edgetl.core.events import say
from edgetl.core.fields import write_fields
from edgetl.core.files import atomic_write_bytes
from edgetl.core.measures.parity import compare
from edgetl.core.records import MANIFEST_FILE, Manifest
from edgetl.core.records.detector import DetectorManifest, is_detector
from edgetl.core.records.manifest import Compiled


@dataclass
class BuildOptions:
    bundle: Path
    dla_core: int | None = None  # None: the profile's
    workspace_mb: int | None = None  # None: the profile's
    trust: tuple[Path, ...] = ()  # public keys one of which must have signed the bundle


def build(opts: BuildOptions) -> EngineRecord:
    from edgetl.core.artifact.archives import is_archive, unpack_archive
    from edgetl.core.artifact.signing import trusted_keys

    if is_archive(opts.bundle):
        opts.bundle = unpack_archive(opts.bundle)  # what follows, and the caller, use the dir
        say(f"unpacked into {opts.bundle} (every member checked)")
    detector = is_detector(opts.bundle)
    reader = DetectorManifest if detector else Manifest
    manifest = reader.read(opts.bundle, trust=trusted_keys(opts.trust))  # every sha256 first
    if manifest.backend != "tensorrt":
        raise EdgetlError(
            f"{opts.bundle}: an artifact for {manifest.backend}; `edgetl build` builds TensorRT "
            "bundles (export with --target jetson or tensorrt-gpu)"
        )
    backend = TensorRtRuntime()
    reason = backend.missing()
    if reason is not None:
        raise EdgetlError(
            f"{opts.bundle}: TensorRT cannot run here ({reason}); run `edgetl build` on the "
            "device (JetPack brings TensorRT), see the bundle's DEVICE.md"
        )
    import tensorrt

    version = str(tensorrt.__version__)
    options = _settings(opts, manifest, version)
    dla, workspace = options.dla_core, options.workspace_mb
    say(f"building {ENGINE_FILE} with TensorRT {version} ...")
    record = write_engine(opts.bundle, manifest.precision, workspace, dla)
    if dla >= 0:
        say(
            f"layers on DLA {dla}: {record.dla_layers}, on the GPU: "
            f"{record.gpu_layers} {record.gpu_fallback_layers}"
        )
    checked = check_detector if detector else _check
    record = replace(record, parity=checked(opts.bundle, manifest))  # type: ignore[arg-type]
    record.write(opts.bundle)
    return record


def write_engine(bundle: Path, precision: str, workspace_mb: int, dla_core: int) -> EngineRecord:
    """Build `bundle`'s engine with the TensorRT here; write it, the timing cache and the
    engine record (TensorRT version, device, sha256: what load() checks); the record."""
    import tensorrt

    from edgetl.backends.tensorrt.cuda_device import identity
    from edgetl.backends.tensorrt.engine import build_engine

    version = str(tensorrt.__version__)
    cache_path = bundle / TIMING_CACHE
    built = build_engine(
        bundle,
        precision,
        workspace_mb,
        dla_core,
        cache_path.read_bytes() if cache_path.is_file() else None,
        calibration_for(bundle, version),
    )
    for warning in built.warnings:
        say(f"[yellow]warning:[/] {warning}")
    record = EngineRecord(
        **built.record,
        device=EngineDevice(**identity()),
        jetson=jetson(),
        built=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        engine_sha256=hashlib.sha256(built.engine).hexdigest(),
    )
    atomic_write_bytes(bundle / ENGINE_FILE, built.engine)
    atomic_write_bytes(cache_path, built.timing_cache)
    record.write(bundle)
    return record


def _settings(opts: BuildOptions, manifest: Compiled, version: str) -> TensorRtOptions:
    """The bundle's TensorRT settings with the command line's overrides; exit 2 when the
    bundle was made for other TensorRT majors than the one found here."""
    where = str(opts.bundle / MANIFEST_FILE)
    options: TensorRtOptions = TensorRtRuntime().options(manifest.runtime_options, where)
    found = int(version.split(".")[0])
    if options.majors and found not in options.majors:
        remedy = (
            "JetPack 6.0 brings TensorRT 8.6, which edgetl does not build for: upgrade to "
            "JetPack 6.1 or later (TensorRT 10.3)"
            if found < 10
            else "export again with a profile for it"
        )
        raise EdgetlError(
            f"{opts.bundle}: made for TensorRT {', '.join(options.tensorrt_versions)}, this "
            f"device has {version}; {remedy}"
        )
    return replace(
        options,
        dla_core=options.dla_core if opts.dla_core is None else opts.dla_core,
        workspace_mb=options.workspace_mb if opts.workspace_mb is None else opts.workspace_mb,
    )


def calibration_for(bundle: Path, version: str) -> bytes | None:
    """The bundle's calibration cache with its header for the TensorRT found here: TensorRT
    ignores a cache written for another version, silently."""
    from edgetl.backends.tensorrt.calibration_cache import parse_cache, write_cache
    from edgetl.backends.tensorrt.runtime import CALIBRATION_CACHE, encode_version

    path = bundle / CALIBRATION_CACHE
    if not path.is_file():
        return None
    _, scales = parse_cache(path.read_text())  # float32 scales: written back bit for bit
    return write_cache(scales, encode_version(version)).encode()


def _check(bundle: Path, manifest: Manifest) -> dict[str, Any]:
    """The engine on the reference set against the host's logits of the same graph."""
    reference = ReferenceSet.load(bundle / manifest.reference.file)
    if reference.artifact_logits is None:
        raise EdgetlError(f"{bundle}: the reference set has no host logits; export again")
    where = str(bundle / MANIFEST_FILE)
    options: TensorRtOptions = TensorRtRuntime().options(manifest.runtime_options, where)
    tolerance = options.device_parity.get(manifest.precision)
    if tolerance is None:
        raise EdgetlError(f"{bundle}: the profile gives no device_parity for {manifest.precision}")
    runner = TensorRtRuntime().load(bundle, manifest.runtime_spec())
    try:
        logits = run_all(runner, manifest.preprocess.normalize(reference.images))
    finally:
        runner.close()
    parity = compare(reference.artifact_logits, logits, reference.labels, tolerance)
    say(
        f"engine vs host on {parity.n} reference images: max |logit diff| "
        f"{parity.max_abs_diff:.3g}, agreement {parity.agreement:.2%}, top-1 "
        f"{parity.artifact_top1:.2%} (host {parity.reference_top1:.2%})"
    )
    if not parity.passed:
        refuse(bundle, parity.shortfall())
    return write_fields(parity)
