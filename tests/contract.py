"""The incident record's keys as shared/DESIGN.md lists them, for the tests that check the contract."""

# DESIGN.md's keys plus "forecast" (null unless an SLO breach was forecast: issue 5)
CONTRACT_KEYS = {"id", "opened_at_unix_nano", "updated_at_unix_nano", "status", "kind", "severity", "services",
                 "root_causes", "anomalies", "changes", "suggested_playbook", "forecast"}  # fmt: skip
