"""Where Slack messages go and how fast: ``notify:`` in ``aiops.yaml``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class NotifyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    webhook_url: str | None = Field(default=None, description="Slack incoming webhook (AIOPS_SLACK_WEBHOOK_URL)")
    bot_token: str | None = Field(default=None, description="optional: chat.postMessage/chat.update, one message per incident edited in place")
    channel: str | None = Field(default=None, description="channel for the bot token")
    api_url: str = Field(default="https://slack.com/api/", description="Slack Web API base (tests point it at a loopback server)")
    public_url: str = Field(default="http://127.0.0.1:8080", description="the dashboard/API as Slack users reach it, for links")
    max_per_minute: int = Field(default=20, ge=1, description="new messages per minute before a storm is summarised")
    retry_base_s: float = Field(default=1.0, gt=0, description="first retry delay; doubles per attempt, with jitter")
    retry_max_s: float = Field(default=30.0, gt=0, description="longest pause between attempts: Slack's return is noticed this soon after an outage; one probe per pause, however many wait")
    give_up_after_s: float | None = Field(default=86400.0, gt=0, description="undelivered this long after queueing: 'dead', audited (null: retry forever)")
    update_interval_s: float = Field(default=10.0, ge=0, description="at most one edit/follow-up per incident this often, changes in between coalesced; action decisions are not held back")
    timeout_s: float = Field(default=10.0, gt=0, description="per HTTP request to Slack")
