"""The ``aiops`` command end to end, as a user runs it (subprocesses, real files)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from contract import CONTRACT_KEYS

from aiops.correlate.contract import Incident
from aiops.ingest.deadletter import read_dead_letters
from aiops.sim import Simulator, default_scenario, write_replay



SHOP_S = 2700  # the calm lead-in, then the first fault (postgres latency) and the second's start


def _aiops(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aiops", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shop")
    write_replay(default_scenario(seed=3), out, SHOP_S)
    return out


def test_replay_writes_contract_incidents_and_a_summary(shop: Path, tmp_path: Path) -> None:
    out, bad = tmp_path / "incidents.jsonl", tmp_path / "bad.jsonl"
    r = _aiops("replay", str(shop), "--out", str(out), "--dead-letter", str(bad))
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines, "the simulated faults produced no incident"
    for rec in lines:
        assert set(rec) == CONTRACT_KEYS
        Incident.model_validate(rec)
        assert rec["root_causes"] and rec["anomalies"]
        assert rec["opened_at_unix_nano"] <= rec["updated_at_unix_nano"]
    truth = json.loads((shop / "truth.json").read_text())
    opened = sorted({r["opened_at_unix_nano"] for r in lines})
    caught = [t for t in truth if any(0 <= o - t["onset_unix_nano"] <= 180 * 10**9 for o in opened)]
    assert len(caught) >= len(truth) - 1, f"faults without an incident within 3 min: {truth} vs {opened}"
    summary = dict(line.split(": ", 1) for line in r.stderr.splitlines() if ": " in line and not line.startswith(" "))
    assert int(summary["messages"]) > 0 and int(summary["bad_records"]) == 0
    assert int(summary["incidents"]) == len({rec["id"] for rec in lines})
    assert bad.exists() and read_dead_letters(bad) == []


def test_replay_dead_letters_garbage_and_still_exits_zero(shop: Path, tmp_path: Path) -> None:
    feed = tmp_path / "feed"
    feed.mkdir()
    lines = (shop / "metrics.jsonl").read_bytes().splitlines()[:200]
    garbage = [b"not json", b'{"resourceMetrics": [{"resource": {}, "scopeMetrics": []}]}', b"\xff\xfe"]
    (feed / "metrics.jsonl").write_bytes(b"\n".join(lines[:100] + garbage + lines[100:]) + b"\n")
    bad = tmp_path / "bad.jsonl"
    r = _aiops("replay", str(feed), "--out", str(tmp_path / "inc.jsonl"), "--dead-letter", str(bad))
    assert r.returncode == 0, r.stderr
    letters = read_dead_letters(bad)
    assert [d["offset_or_line"] for d in letters] == [101, 102, 103]
    assert letters[1]["reason"] == "resource has no service.name"
    assert letters[2]["raw_encoding"] == "hex" and letters[2]["raw"] == "fffe"
    assert "bad_records: 3" in r.stderr


def test_replay_missing_path_is_a_clear_error(tmp_path: Path) -> None:
    r = _aiops("replay", str(tmp_path / "nope"))
    assert r.returncode != 0 and "no such file or directory" in r.stderr


def test_demo_shows_incidents_slack_messages_and_a_proposed_playbook() -> None:
    r = _aiops("demo", "--duration", "20", "--speed", "400", "--services", "8", "--port", "0", timeout=120)
    assert r.returncode == 0, r.stderr
    assert "scheduled fault:" in r.stdout and "dashboard and API: http://127.0.0.1:" in r.stdout
    assert " OPEN " in r.stdout and "root cause #1" in r.stdout
    assert "slack> [" in r.stdout, "without a webhook the Slack messages are printed"
    assert "playbook rollback awaiting approval  [Approve/Reject: action act-" in r.stdout
    assert "incidents:" in r.stdout


def test_run_refuses_unknown_settings(tmp_path: Path) -> None:
    cfg = tmp_path / "aiops.yaml"
    cfg.write_text("kafka_bootstrapp: 127.0.0.1:1\n")
    r = _aiops("run", "--config", str(cfg))
    assert r.returncode == 2 and "kafka_bootstrapp" in r.stderr


def test_simulated_truth_is_what_the_replay_folder_says(shop: Path) -> None:
    sim: Simulator = default_scenario(seed=3)
    assert json.loads((shop / "truth.json").read_text()) == [t for t in sim.truth if t["onset_unix_nano"] < sim.start_unix_nano + SHOP_S * 10**9]


def test_replay_saves_versioned_detectors_and_warm_starts_from_them(shop: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    first = _aiops("replay", str(shop / "metrics.jsonl"), "--out", str(tmp_path / "a.jsonl"), "--models", str(models))
    assert first.returncode == 0, first.stderr
    assert "warm-started" not in first.stderr and (models / "metrics" / "v1.npz").exists()
    meta = json.loads((models / "metrics" / "v1.json").read_text())
    assert meta["series_count"] == len(meta["series_keys"]) > 0 and meta["data_window_unix_nano"][0] > 0
    second = _aiops("replay", str(shop / "metrics.jsonl"), "--out", str(tmp_path / "b.jsonl"), "--models", str(models))
    assert second.returncode == 0, second.stderr
    assert "warm-started from" in second.stderr and (models / "metrics" / "v2.npz").exists()


def test_replay_applies_detection_rules_from_the_config_file(shop: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "aiops.yaml"
    cfg.write_text('detection:\n  rules:\n    - match: "cart/process.cpu.utilization"\n      slo_above: -1\n')
    out = tmp_path / "inc.jsonl"
    r = _aiops("replay", str(shop / "metrics.jsonl"), "--out", str(out), "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    series = {a["series"] for line in out.read_text().splitlines() for a in json.loads(line)["anomalies"]}
    assert "cart/process.cpu.utilization" in series  # every point breaches the SLO bound
    cfg.write_text("detection:\n  rules:\n    - match: x\n      bogus: 1\n")
    bad = _aiops("replay", str(shop / "metrics.jsonl"), "--config", str(cfg))
    assert bad.returncode == 2 and "bogus" in bad.stderr
