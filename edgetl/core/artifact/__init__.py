"""An artifact as files: checksums and the manifest digest (integrity.py, onnx_wire.py for
ONNX external data without onnx), signatures (signing.py), archives (archives.py), the
reference set (reference.py) and edgetl's own wheel (selfwheel.py)."""
