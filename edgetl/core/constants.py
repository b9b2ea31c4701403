"""Names the command line needs before any heavy import (the device side has no torch)."""

DEFAULT_BACKBONE = "efficientnet_lite0"
INPUT_NAME = "images"  # the ONNX graph's input and output, shared by export and quantization
OUTPUT_NAME = "logits"

# INT8 must run in at most this fraction of FP32's batch-1 p50 to be worth its accuracy risk
# and its calibration: a model 5% faster is inside this 2-core machine's round-to-round noise
# (two identical graphs: 1.005 +- 0.018) and not what anyone quantizes for.
INT8_PAYS_OFF_RATIO = 0.9
