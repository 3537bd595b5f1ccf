"""Slack notifications through a durable outbox."""
