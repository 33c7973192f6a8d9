"""`undertow alerts ack` records who handles an alert, in the Redis the workers use."""

from __future__ import annotations

import pytest

from agents.acks import AckLog
from agents.cli import main


@pytest.mark.integration
def test_ack_is_recorded_and_replaced(redis_url, redis_client, monkeypatch, capsys):
    monkeypatch.setenv("UNDERTOW_REDIS_URL", redis_url)
    monkeypatch.setenv("UNDERTOW_TOPIC_PREFIX", "acktest.")
    assert main(["alerts", "ack", "abc123", "--by", "dana", "--note", "rolling back"]) == 0
    assert "acknowledged abc123 by dana" in capsys.readouterr().out
    log = AckLog(redis_client, "acktest")
    first = log.get("abc123")
    assert first is not None and first["by"] == "dana" and first["note"] == "rolling back"
    assert main(["alerts", "ack", "abc123", "--by", "lee"]) == 0
    assert log.get("abc123")["by"] == "lee"
    assert log.acknowledged() == {"abc123"}


def test_ack_needs_a_name(capsys):
    assert main(["alerts", "ack", "abc123", "--by", "  "]) == 2
    assert "--by needs a name" in capsys.readouterr().err
