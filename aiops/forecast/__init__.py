"""Early warning: SLOs, and forecasts of when a series under one will cross it."""

from aiops.forecast.engine import ForecastConfig, Forecaster, Prediction
from aiops.forecast.slo import DEFAULT_SLOS, SloPolicy, SloRule

__all__ = ["DEFAULT_SLOS", "ForecastConfig", "Forecaster", "Prediction", "SloPolicy", "SloRule"]
