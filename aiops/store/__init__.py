"""Store: SQLite persistence for incidents, anomalies and pipeline checkpoints."""
