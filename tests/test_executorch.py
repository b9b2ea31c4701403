"""ExecuTorch with XNNPACK as a target (arm-cpu): the .pte lowered from torch.export and run
by ExecuTorch's own runtime on this x86 host (XNNPACK runs here too), INT8 by PT2E's
XNNPACK quantizer held to the guard's rule, the delegation report, and `inspect`'s op
placement for ONNX Runtime, OpenVINO and ExecuTorch artifacts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from edgetl.cli import main
from tests.conftest import TINY_BUDGET, export_cli, load_manifest

pytest.importorskip("executorch.runtime", reason="pip install 'edgetl[executorch]'")


@pytest.fixture(scope="module")
def pte(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("pte")
    made = {}
    for precision in ("fp32", "int8"):
        extra = TINY_BUDGET if precision == "int8" else ()
        result = export_cli(tiny_run, out / precision, "--target", "arm-cpu", "--precision",
                            precision, *extra)  # fmt: skip
        assert result.exit_code == 0, result.output
        made[precision] = out / precision
    return made


def test_a_pte_fp32_matches_pytorch_and_lists_every_op_it_delegates(pte: dict[str, Path]) -> None:
    manifest = load_manifest(pte["fp32"])
    assert manifest["backend"] == "executorch" and manifest["model_files"][0] == "model.pte"
    parity = manifest["parity"]
    assert parity["passed"] and parity["max_abs_diff"] <= 1e-3 and parity["agreement"] == 1.0
    delegation = json.loads((pte["fp32"] / "delegation.json").read_text())
    ops = delegation["ops"]
    assert sum(n["xnnpack"] for n in ops.values()) == delegation["delegated_nodes"]
    assert sum(n["portable"] for n in ops.values()) == delegation["portable_nodes"]
    assert ops["aten_convolution_default"]["xnnpack"] > 0  # the convolutions run on XNNPACK


def test_a_pte_int8_is_held_to_the_guards_rule_on_val(
    tiny_run: Path, pte: dict[str, Path], tmp_path: Path
) -> None:
    quantization = load_manifest(pte["int8"])["quantization"]
    assert quantization["recipe"]["engine"] == "pt2e" and quantization["rule"] == "paired-bound"
    (attempt,) = quantization["attempts"]
    assert attempt["verdict"].startswith("accepted")
    assert attempt["drop_upper_pts"] <= quantization["budget_pts"]
    ops = json.loads((pte["int8"] / "delegation.json").read_text())["ops"]
    assert any("quantize" in op for op in ops)  # the program carries INT8 tensors
    # Calibrated on black images only, the ranges clip every real image: INT8 collapses on
    # every rung (plain, then the first convolutions float) and is refused (exit 1), nothing
    # written.
    black = tmp_path / "black"
    black.mkdir()
    for index in range(32):
        Image.new("RGB", (64, 64)).save(black / f"{index}.png")
    refused = export_cli(tiny_run, tmp_path / "no", "--target", "arm-cpu", "--precision",
                         "int8", "--calib-data", black, "--max-accuracy-drop", "30")  # fmt: skip
    assert refused.exit_code == 1, refused.output
    assert "not shown to lose at most" in refused.output and not (tmp_path / "no").exists()
    assert "first 1 conv(s) float" in refused.output  # the ladder climbed before refusing


def test_a_recipe_for_the_onnx_graph_is_refused_for_executorch(
    tiny_run: Path, tmp_path: Path
) -> None:
    result = export_cli(tiny_run, tmp_path / "x", "--target", "arm-cpu", "--precision", "int8",
                        "--recipe", "nncf-mixed", *TINY_BUDGET)  # fmt: skip
    assert result.exit_code == 2 and "pt2e" in result.output


def test_bench_runs_the_pte_with_executorch_and_gives_its_reference_answers(
    pte: dict[str, Path], tmp_path: Path
) -> None:
    report = tmp_path / "bench.json"
    result = CliRunner().invoke(
        main, ["bench", str(pte["fp32"]), "--iterations", "5", "--json", str(report)]
    )
    assert result.exit_code == 0, result.output
    (entry,) = json.loads(report.read_text())["results"]
    assert entry["backend"] == "executorch"
    assert any(note.startswith("ExecuTorch: ") and "XNNPACK" in note for note in entry["notes"])
    reference = np.load(pte["fp32"] / "reference.npz")
    expected = reference["artifact_logits"].argmax(1).tolist()
    assert entry["accuracy"]["predictions"] == expected


@pytest.mark.parametrize("target", ["cpu", "openvino-cpu", "arm-cpu"])
def test_inspect_shows_which_ops_run_where_for_every_runtime(
    tiny_run: Path, pte: dict[str, Path], tmp_path: Path, target: str
) -> None:
    if target == "arm-cpu":
        artifact = pte["int8"]
    else:
        artifact = tmp_path / target
        made = export_cli(tiny_run, artifact, "--target", target, "--precision", "int8",
                          *TINY_BUDGET)  # fmt: skip
        assert made.exit_code == 0, made.output
    result = CliRunner().invoke(main, ["inspect", str(artifact), "--json"])
    assert result.exit_code == 0, result.output
    placement = json.loads(result.output)["placement"]
    assert placement["error"] is None and placement["rows"]
    kinds = {(row["where"], row["precision"]) for row in placement["rows"]}
    expected = {"cpu": ("CPUExecutionProvider", "int8"), "openvino-cpu": ("CPU", "u8"),
                "arm-cpu": ("XNNPACK", "int8")}[target]  # fmt: skip
    assert expected in kinds or (target == "openvino-cpu" and ("CPU", "i8") in kinds), kinds
    table = CliRunner().invoke(main, ["inspect", str(artifact)])
    assert "op placement" in table.output and expected[0] in table.output
