"""Remediation: playbooks, proposals, approvals and their exactly-once execution."""
