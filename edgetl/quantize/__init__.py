"""INT8 quantization: calibration sets, recipes, engines (NNCF, ONNX Runtime), QDQ graph
edits, and the accuracy guard (guard/)."""
