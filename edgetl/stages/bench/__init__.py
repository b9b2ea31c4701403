"""The benchmark harness: accuracy and latency of compiled artifacts on their runtime."""
