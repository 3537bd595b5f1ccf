"""Correlate: anomaly episodes → incidents with ranked root causes."""
