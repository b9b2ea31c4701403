"""Typed record files, one dataclass each, all read and written by core/fields.py: the run
(edgetl.json), the artifact manifest, the bench report and the calibration recipe. A file
of another schema, a missing key or a wrong type is exit 2 naming the file, the key and the
edgetl that wrote it."""

from edgetl.core.records.accuracy import Accuracy
from edgetl.core.records.bench import (
    BENCH_SCHEMA,
    MIN_BASELINE_SAMPLES,
    AccuracyCheck,
    BaselineChecks,
    BenchAccuracy,
    BenchReport,
    BenchResult,
    LatencyCheck,
)
from edgetl.core.records.lab import LAB_SCHEMA, DeviceRun, LabReport
from edgetl.core.records.manifest import (
    MANIFEST_FILE,
    MANIFEST_SCHEMA,
    MANIFEST_SCHEMAS,
    AccuracyRecord,
    Attempt,
    Manifest,
    ParityCheck,
    ParityRecord,
    QuantizationRecord,
    QuantizedTest,
    ReferenceInfo,
    RunRef,
    RuntimeSpec,
    Sensitivity,
    SplitAccuracy,
)
from edgetl.core.records.recipe import GuardSettings, Recipe
from edgetl.core.records.run import (
    RUN_FILE,
    RUN_SCHEMA,
    BackboneInfo,
    DataInfo,
    HeadInfo,
    RunInfo,
    RunMetrics,
    TrainInfo,
)

__all__ = [
    "BENCH_SCHEMA",
    "LAB_SCHEMA",
    "DeviceRun",
    "LabReport",
    "MANIFEST_FILE",
    "MANIFEST_SCHEMA",
    "MANIFEST_SCHEMAS",
    "MIN_BASELINE_SAMPLES",
    "RUN_FILE",
    "RUN_SCHEMA",
    "AccuracyRecord",
    "Attempt",
    "BackboneInfo",
    "AccuracyCheck",
    "BaselineChecks",
    "BenchAccuracy",
    "LatencyCheck",
    "BenchReport",
    "BenchResult",
    "Accuracy",
    "DataInfo",
    "GuardSettings",
    "HeadInfo",
    "Manifest",
    "ParityCheck",
    "ParityRecord",
    "QuantizationRecord",
    "QuantizedTest",
    "Recipe",
    "ReferenceInfo",
    "RunInfo",
    "RunMetrics",
    "RunRef",
    "RuntimeSpec",
    "Sensitivity",
    "SplitAccuracy",
    "TrainInfo",
]
