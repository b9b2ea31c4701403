"""What edgetl measures and how it decides on it: top-1 and agreement (metrics.py), the drop's
evidence and the guard's rule (evidence.py), latency summaries (timing.py), regression
intervals (regression.py), parity between two models' logits (parity.py)."""
