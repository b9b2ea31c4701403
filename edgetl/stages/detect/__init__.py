"""Detection through the flow: finetune a detector head on the frozen pyramid (training.py),
export it with the INT8 guard judging mAP (export.py), measure an artifact (measure.py)."""
