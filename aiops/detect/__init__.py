"""Detect: vectorized per-series online detectors and anomaly episodes."""
