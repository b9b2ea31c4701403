"""A pytest plugin for users' own suites (loaded through the `pytest11` entry point):

    from edgetl.pytest_plugin import assert_no_regression

    def test_int8_latency(edgetl_bench):
        assert_no_regression(edgetl_bench("export/cpu-int8"), "baselines/cpu-int8.json")

`edgetl_bench(ARTIFACT, **options)` benches one artifact (the options of `edgetl bench`:
data, split, iterations, rounds, min_duration, threads, ...) and returns its typed
BenchResult. A baseline is a report written by `edgetl bench ARTIFACT --json FILE` on the
same device.

On the lab's devices (devices.toml, see `edgetl devices`), a test that takes `edgetl_device`
runs once per device, over ssh:

    def test_int8_on_each_device(edgetl_device):
        result = edgetl_device.bench("export/cpu-int8")
        assert_no_regression(result, f"baselines/{edgetl_device.name}.json")

With `robustness=True` (and `attack=FILE` from `edgetl attack`) the result carries accuracy
under camera conditions and under the teacher-transfer attack, and `assert_no_regression`
gates them too (`max_robustness_drop` points).

After `edgetl search ... --out search`, `assert_within_budget(edgetl_bench("search/chosen"),
"search")` fails when the chosen model no longer meets the budget it was chosen under.

`pytest --edgetl-lab FILE --edgetl-on NAME[,NAME...]` (default: $EDGETL_LAB or
./devices.toml, every device); with no lab file such tests are skipped, saying so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from edgetl.core.records import BenchResult
    from edgetl.core.records.detector import DetectBenchEntry

    Benched = BenchResult | DetectBenchEntry  # a classifier's entry, or a detector's


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("edgetl", "edgetl device lab")
    group.addoption("--edgetl-lab", default=None, help="The lab file (devices.toml).")
    group.addoption("--edgetl-on", default="all", help="Devices: NAME[,NAME...] or all.")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """`edgetl_device`: one parameter per lab device (ids: the device names)."""
    if "edgetl_device" not in metafunc.fixturenames:
        return
    from edgetl.core.errors import EdgetlError
    from edgetl.stages.lab.labfile import find_lab, read_lab

    option = metafunc.config.getoption("--edgetl-lab")
    try:
        lab = read_lab(find_lab(Path(option) if option else None))
    except EdgetlError as exc:
        if option:  # asked for by name: a mistake in it is the user's to see
            raise pytest.UsageError(str(exc)) from exc
        skip = pytest.mark.skip(reason=f"no device lab: {exc}")
        metafunc.parametrize("edgetl_device", [pytest.param(None, marks=skip)], ids=["no-lab"])
        return
    names = list(lab.select(metafunc.config.getoption("--edgetl-on")))
    params = [LabDevice(lab.path, name, lab.devices[name].target) for name in names]
    metafunc.parametrize("edgetl_device", params, ids=names)


@dataclass(frozen=True)
class LabDevice:
    """One lab device as a test sees it: its name, its target and a bench there."""

    lab: Path
    name: str
    target: str

    def bench(self, artifact: str | Path, **options: Any) -> Benched:
        """`edgetl bench ARTIFACT --on NAME` with `edgetl bench`'s options; the typed result,
        or an AssertionError saying why the device could not run it."""
        from edgetl.core.records.detector import is_detector
        from edgetl.stages.bench.options import BenchOptions
        from edgetl.stages.lab.bench import bench_on

        options.setdefault("iterations", 100)
        options.setdefault("cold", False)
        opts = BenchOptions([Path(artifact)], **options)
        if is_detector(Path(artifact)):
            from edgetl.stages.lab.detect import bench_detectors_on

            (found,) = bench_detectors_on(opts, self.name, self.lab).report.devices
            if found.detections is None:
                raise AssertionError(f"{self.name}: {found.reason}")
            return found.detections.results[0]
        outcome = bench_on(opts, self.name, self.lab)
        (run,) = outcome.report.devices
        if run.report is None:
            raise AssertionError(f"{self.name}: {run.reason}")
        return run.report.results[0]


@pytest.fixture
def edgetl_device(request: pytest.FixtureRequest) -> LabDevice:
    """The lab device this run of the test is for (see pytest_generate_tests)."""
    return request.param


@pytest.fixture
def edgetl_bench() -> Callable[..., Benched]:
    """Bench one artifact with its runtime; returns the typed result (edgetl.bench/1 entry)."""
    from edgetl.stages.bench.harness import bench
    from edgetl.stages.bench.options import BenchOptions

    def run(artifact: str | Path, **options: Any) -> Benched:
        from edgetl.core.records.detector import is_detector

        options.setdefault("iterations", 100)
        options.setdefault("cold", False)
        opts = BenchOptions([Path(artifact)], **options)
        if is_detector(Path(artifact)):  # a DetectBenchEntry: mAP and latency with NMS
            from edgetl.stages.detect.measure import bench_detectors

            return bench_detectors(opts).results[0]
        return bench(opts).report.results[0]

    return run


def assert_no_regression(
    result: Benched,
    baseline: str | Path,
    max_regression: float = 5.0,
    max_accuracy_drop: float = 1.0,
    max_robustness_drop: float = 1.0,
) -> None:
    """Fail when `result` is slower than the stored baseline beyond noise and
    `max_regression` percent of p50, or its top-1 is more than `max_accuracy_drop` points
    lower on the same number of images; with robustness measured in both, when its mean
    corrupted top-1 or its top-1 under an attack is more than `max_robustness_drop` lower."""
    from edgetl.core.records import BenchReport, BenchResult
    from edgetl.stages.bench.gate import against_baseline, robustness_against

    path = Path(baseline)
    if not path.is_file():
        where = getattr(result, "artifact", None) or getattr(result, "path", "ARTIFACT")
        raise AssertionError(
            f"no baseline at {path}: create it on this device with "
            f"`edgetl bench {where} --json {path}`"
        )
    if not isinstance(result, BenchResult):  # a detector's entry: mAP50-95 and p50
        from edgetl.stages.detect.measure import entry_regressions, read_report

        found = read_report(path, "baseline").results
        same = [entry for entry in found if entry.name == result.name] or found[:1]
        regressed = entry_regressions(result, same[0], max_regression, max_accuracy_drop)
        if regressed:
            raise AssertionError("; ".join(regressed))
        return
    stored = BenchReport.read(path).results
    matches = [entry for entry in stored if entry.name == result.name] or stored[:1]
    failures = against_baseline(result, matches[0], max_regression, max_accuracy_drop)
    failures += robustness_against(result, matches[0], max_robustness_drop)
    if failures:
        raise AssertionError("; ".join(failures))


def assert_within_budget(result: Benched, search_dir: str | Path) -> None:
    """Fail when `result` (a bench of SEARCH/chosen, here or on a lab device) no longer meets
    the latency and size budget `edgetl search` chose it under (SEARCH/search.json)."""
    import json

    path = Path(search_dir) / "search.json"
    if not path.is_file():
        raise AssertionError(f"no search at {path}: run `edgetl search ... --out {search_dir}`")
    state = json.loads(path.read_text())
    settings = state["settings"]
    which = settings["latency"]
    from edgetl.core.records import BenchResult

    if isinstance(result, BenchResult):
        measured = result.latency_ms[which]
    else:  # a detector's entry: its Latency record
        measured = getattr(result.latency, which)
    # A budget relative to --reference was resolved in ms when the search timed it.
    budget = state.get("budget_ms") or settings["max_latency_ms"]
    if measured > budget:
        raise AssertionError(
            f"{result.name}: {which} {measured:.2f} ms is over the search's budget of {budget:g} ms"
        )
    limit = settings.get("max_size_mb")  # a detector search takes no size budget
    if limit is not None and isinstance(result, BenchResult) and result.size_mb > limit:
        raise AssertionError(f"{result.name}: {result.size_mb:.2f} MB is over {limit:g} MB")
