"""Names the command line needs before any heavy import (the device side has no torch)."""

DEFAULT_BACKBONE = "efficientnet_lite0"
INPUT_NAME = "images"  # the ONNX graph's input and output, shared by export and quantization
OUTPUT_NAME = "logits"
