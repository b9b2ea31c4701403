"""DEVICE.md of a TensorRT bundle: installing edgetl's device side, building the engine, and
the same engine with trtexec."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgetl.backends.tensorrt.engine import route
from edgetl.backends.tensorrt.options import TensorRtOptions
from edgetl.backends.tensorrt.runtime import CALIBRATION_CACHE, ENGINE_FILE
from edgetl.core.errors import EdgetlError

if TYPE_CHECKING:
    from edgetl.core.targets import TargetProfile

TRTEXEC = "/usr/src/tensorrt/bin/trtexec"  # where JetPack installs it (not on PATH)


def trtexec_lines(options: TensorRtOptions, precision: str) -> list[str]:
    """trtexec commands per TensorRT major for this bundle (11: strongly typed, no --fp16 or
    --int8; 10 on DLA: INT8 from the FP32 graph and the calibration cache)."""
    workspace, dla = options.workspace_mb, options.dla_core
    lines = []
    for major in options.majors:
        try:
            chosen = route(major, precision, dla >= 0)
        except EdgetlError as exc:
            lines.append(f"# TensorRT {major}: {exc}")
            continue
        command = [TRTEXEC, f"--onnx={chosen.onnx}", f"--memPoolSize=workspace:{workspace}M"]
        if dla >= 0:
            command += [f"--useDLACore={dla}", "--allowGPUFallback"]
        command += ["--" + flag.lower() for flag in chosen.flags if flag in ("INT8", "FP16")]
        if chosen.calibration:
            command.append(f"--calib={CALIBRATION_CACHE}")
        command.append(f"--saveEngine={ENGINE_FILE}")
        lines.append(f"# TensorRT {major}.x\n{' '.join(command)}")
    return lines


def device_doc(profile: TargetProfile, options: TensorRtOptions, precision: str) -> str:
    """DEVICE.md: what to do with this bundle on the device."""
    dla = options.dla_core
    versions = ", ".join(options.tensorrt_versions)
    from edgetl.core.artifact.selfwheel import wheel_name

    trtexec = "\n".join(f"    {line}" for block in trtexec_lines(options, precision)
                        for line in block.splitlines())  # fmt: skip
    dla_option = f" --dla-core {dla}" if dla >= 0 else ""
    from edgetl.backends.tensorrt.requirements import NUMPY_BELOW_2, pip_requirements

    requirements = pip_requirements(options.tensorrt_versions)
    install = " ".join(f"'{r}'" if "<" in r else r for r in requirements)
    numpy_note = (
        f"\n   (`{NUMPY_BELOW_2}`: TensorRT before 10.16, JetPack 6's 10.3 among them, reads "
        "NumPy 2's\n   arrays wrongly, silently.)\n"
        if NUMPY_BELOW_2 in requirements
        else ""
    )
    return f"""# {profile.name} bundle ({precision})

{profile.description}. For TensorRT {versions}.

1. Install edgetl's device side from the wheel in this bundle (edgetl is not on the index a
   Jetson uses). JetPack brings TensorRT and CUDA as system packages, so the environment
   must see them (`--system-site-packages`); PyPI's TensorRT wheels refuse Tegra, and no
   torch is needed. Copy this bundle to the device, unpack it (`tar xzf BUNDLE.tar.gz`),
   then in its directory (a venv also keeps pip off the system Python on PEP 668 systems;
   JetPack 6's Python is 3.10, which the wheel's `tomli` requirement covers):

       python3 -m venv --system-site-packages ~/edgetl && . ~/edgetl/bin/activate
       pip install ./{wheel_name()} {install}
{numpy_note}
2. Build the engine here, on the device. `edgetl build` checks every file's sha256, builds
   `{ENGINE_FILE}` with a timing cache beside it, records the TensorRT version and the device
   (CUDA's name and compute capability, the module and L4T release), then runs the reference
   set through the engine and fails outside the profile's tolerance:

       edgetl build .{dla_option}

3. Measure it (accuracy on the reference set in this bundle, latency on this device):

       edgetl bench .

Without edgetl, the same engine with trtexec (JetPack installs it at {TRTEXEC}):

{trtexec}
"""
