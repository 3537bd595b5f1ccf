"""One settings object, read once: ``aiops.yaml`` (optional) overlaid by ``AIOPS_*`` variables.

Unknown keys are errors, so a typo stops startup instead of silently running on defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from aiops.act.config import ExecutorConfig
from aiops.detect.policy import DetectionPolicy
from aiops.errors import ConfigError
from aiops.forecast.engine import ForecastConfig
from aiops.forecast.slo import SloPolicy
from aiops.ingest.records import Signal, WireFormat
from aiops.learn.config import LearnConfig
from aiops.notify.config import NotifyConfig

Role = Literal["viewer", "expert", "approver"]


def _csv(v: Any) -> Any:
    return [t.strip() for t in v.split(",") if t.strip()] if isinstance(v, str) else v


Topics = Annotated[list[str], NoDecode]  # "a,b" in the environment


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AIOPS_", env_nested_delimiter="__", extra="forbid")

    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_group: str = "aiops"
    kafka_topics_metrics: Topics = Field(default_factory=lambda: ["otlp_metrics"])
    kafka_topics_logs: Topics = Field(default_factory=lambda: ["otlp_logs"])
    kafka_topics_spans: Topics = Field(default_factory=lambda: ["otlp_spans"])
    kafka_format: WireFormat = "otlp_proto"  # the Collector kafka exporter's default encoding
    kafka_topic_formats: dict[str, WireFormat] = Field(default_factory=dict)  # per-topic override
    kafka_deadletter_topic: str = "aiops.deadletter"
    kafka_topic_anomalies: str = "aiops.anomalies"  # detect processes' findings, for the incident stage
    kafka_topic_topology: str = "aiops.topology"  # detect processes' call-graph updates
    kafka_topic_leader: str = "aiops.leader"  # one partition: its owner is the active incident stage
    kafka_internal_partitions: int = Field(default=6, ge=1)  # for the two topics above, when aiops creates them
    role: Literal["all", "detect", "incidents"] = "all"  # which part of the engine this process runs
    kafka_session_timeout_ms: int = 10_000
    kafka_max_poll_records: int = 2000
    checkpoint_interval_s: float = 5.0  # state + offsets are stored, then committed, this often
    model_save_interval_s: float = 3600.0  # a new detector version under DATA_DIR/models this often
    data_dir: Path = Path("data")
    port: int = 8080
    slack_webhook_url: str | None = None  # shorthand for notify.webhook_url
    slack_signing_secret: str | None = None  # verifies POST /slack/actions
    slack_users: dict[str, Role] = Field(default_factory=dict)  # Slack user id -> role, for buttons in Slack
    api_tokens: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)  # token -> "role" or "role:name"
    api_host: str = "127.0.0.1"
    api_read_role: Role | None = None  # None: reads are open (DESIGN.md); else reads need this role
    learn: LearnConfig = Field(default_factory=LearnConfig)
    notify: NotifyConfig = Field(default_factory=NotifyConfig)
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    detection: DetectionPolicy = Field(default_factory=DetectionPolicy)  # per-series rules (YAML)
    topology_file: Path | None = None  # static edges added to (and pinned in) the learned call graph
    slos: SloPolicy = Field(default_factory=SloPolicy)  # lines that must not be crossed (YAML rules)
    forecast: ForecastConfig = Field(default_factory=ForecastConfig)  # time-to-breach forecasting

    @field_validator("kafka_topics_metrics", "kafka_topics_logs", "kafka_topics_spans", mode="before")
    @classmethod
    def _split_topics(cls, v: Any) -> Any:
        return _csv(v)

    @field_validator("api_tokens", mode="before")
    @classmethod
    def _split_tokens(cls, v: Any) -> Any:
        if isinstance(v, str):
            return dict(pair.split(":", 1) for pair in _csv(v) if ":" in pair)
        return v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (env_settings, init_settings)  # the environment beats the config file

    def topic_signals(self) -> dict[str, Signal]:
        signals: dict[str, Signal] = {}
        for signal, topics in (("metrics", self.kafka_topics_metrics), ("logs", self.kafka_topics_logs),
                               ("spans", self.kafka_topics_spans)):  # fmt: skip
            for t in topics:
                signals[t] = signal  # type: ignore[assignment]
        return signals

    def topic_format(self, topic: str) -> WireFormat:
        return self.kafka_topic_formats.get(topic, self.kafka_format)

    def notify_config(self) -> NotifyConfig:
        """``notify`` with ``slack_webhook_url`` (the DESIGN.md name) as its webhook when it sets none."""
        if self.notify.webhook_url or not self.slack_webhook_url:
            return self.notify
        return self.notify.model_copy(update={"webhook_url": self.slack_webhook_url})

    def pipeline_options(self) -> dict[str, Any]:
        """The :class:`~aiops.pipeline.Pipeline` keyword arguments this configuration sets."""
        return {"detection": self.detection, "topology": self.topology_file, "slos": self.slos,
                "forecast": self.forecast, "record_points": self.learn.record_points}  # fmt: skip


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Defaults < config file < ``AIOPS_*`` environment < explicit overrides (CLI flags)."""
    values: Any = {}
    if config_file is not None:
        try:
            values = yaml.safe_load(Path(config_file).read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"cannot read config file {config_file}: {e}") from e
        if not isinstance(values, dict):
            raise ConfigError(f"config file {config_file} must hold a mapping")
    try:
        settings = Settings(**values)
    except ValidationError as e:
        raise ConfigError(str(e)) from e
    return settings.model_copy(update={k: v for k, v in overrides.items() if v is not None})
