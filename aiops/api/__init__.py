"""The REST API (FastAPI): incidents, anomalies, feedback, approvals, Slack actions, metrics, health."""
