"""Self-monitoring: the engine's own throughput, input quality and drift, models, lag and process."""

from aiops.monitor.engine import EngineMonitor, MonitorConfig

__all__ = ["EngineMonitor", "MonitorConfig"]
