"""`undertow publish` and `undertow alerts tail` without a broker: parsing, rendering, the end."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import orjson
import pytest

from agents.cli import alerts, build_parser, main, publish

PREDICTION = {
    "prediction_id": "9f1c",
    "model": "fraud",
    "model_version": "v2.1.0",
    "timestamp": 1764151200.25,
    "features": {"amount": 129.5, "merchant_category": "grocery", "age": None},
    "prediction": 0.83,
    "latency_ms": 41.7,
    "segments": {"device_type": "mobile", "gender": "f"},
}
LABEL = {"prediction_id": "9f1c", "model": "fraud", "actual": 1, "timestamp": 1766743200.0}
ALERT = {
    "alert_id": "a1",
    "type": "data_drift",
    "severity": "critical",
    "status": "firing",
    "model": "fraud",
    "model_version": "v2.1.0",
    "feature": "amount",
    "segment": None,
    "metric": "psi",
    "value": 0.41,
    "threshold": 0.25,
    "window_start": 1764151200.0,
    "window_end": 1764151500.0,
    "message": "amount drifted",
    "runbook_url": "docs/runbooks/data-drift.md",
    "emitted_at": 1764151502.1,
}


def line(obj: Any) -> bytes:
    return orjson.dumps(obj)


# ------------------------------------------------------------------------------ publish


def test_a_valid_prediction_is_kept_as_written() -> None:
    raw = b'{"prediction_id": "9f1c", "model": "fraud", "model_version": "v2.1.0", ' + (
        b'"timestamp": "2025-11-26T10:00:00Z", "features": {"new": true}, "prediction": 0.8}'
    )
    good, bad = publish.parse_line("predictions", raw, 1)
    assert bad == []
    assert good == [orjson.loads(raw)]  # as on the wire, not normalised


def test_the_wire_examples_of_the_design_are_accepted() -> None:
    assert publish.parse_line("predictions", line(PREDICTION), 1) == ([PREDICTION], [])
    assert publish.parse_line("labels", line(LABEL), 1) == ([LABEL], [])
    envelope = {"labels": [LABEL, LABEL]}
    assert publish.parse_line("labels", line(envelope), 1) == ([LABEL, LABEL], [])


@pytest.mark.parametrize(
    ("kind", "raw", "expected"),
    [
        ("predictions", b"not json", "line 7: not_json: not valid JSON"),
        ("predictions", b"[1, 2]", "line 7: not_object: expected a JSON object, got array"),
        ("predictions", line({**PREDICTION, "model_version": None}), "line 7: missing_field"),
        ("predictions", line({**PREDICTION, "prediction_id": 5}), "line 7: wrong_type"),
        ("predictions", line({**PREDICTION, "timestamp": "yesterday"}), "line 7: bad_timestamp"),
        ("labels", line({**LABEL, "actual": None}), "line 7: missing_field"),
        ("labels", line({"labels": []}), "line 7: empty_envelope"),
        ("labels", line({"labels": {"a": 1}}), "line 7: wrong_type"),
        ("labels", line(PREDICTION), "line 7: missing_field: field 'actual' is missing"),
    ],
)
def test_a_bad_line_is_reported_with_its_number(kind: str, raw: bytes, expected: str) -> None:
    good, bad = publish.parse_line(kind, raw, 7)
    assert good == []
    assert len(bad) == 1
    assert bad[0].describe().startswith(expected)


def test_an_envelope_keeps_its_good_events_and_names_the_bad_ones() -> None:
    envelope = {"predictions": [PREDICTION, 17, {**PREDICTION, "model": ""}, PREDICTION]}
    good, bad = publish.parse_line("predictions", line(envelope), 3)
    assert good == [PREDICTION, PREDICTION]
    assert [p.describe().split(":")[0] for p in bad] == ["line 3 [1]", "line 3 [2]"]
    assert bad[0].rejection.reason == "not_object"


class FakePublisher:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def send_raw(self, kind: str, event: dict[str, Any]) -> None:
        self.sent.append((kind, event))


def test_send_skips_blank_lines_and_counts_rejections(capsys: pytest.CaptureFixture) -> None:
    lines = [line(PREDICTION) + b"\n", b"\n", b"oops\n", line({"predictions": [PREDICTION, 1]})]
    fake = FakePublisher()
    assert publish._send(lines, fake, "predictions", None) == (2, 2)
    assert fake.sent == [("predictions", PREDICTION)] * 2
    err = capsys.readouterr().err.splitlines()
    assert [e.split(":")[1] for e in err] == [" rejected line 3", " rejected line 4 [1]"]


def test_reports_stop_after_a_few_but_the_count_goes_on(capsys: pytest.CaptureFixture) -> None:
    fake = FakePublisher()
    sent, rejected = publish._send([b"x\n"] * 30, fake, "labels", None)
    assert (sent, rejected) == (0, 30)
    assert len(capsys.readouterr().err.splitlines()) == publish.MAX_REPORTED


def test_a_missing_file_is_exit_2_before_any_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("UNDERTOW_KAFKA", "127.0.0.1:1")  # would fail to connect
    assert main(["publish", "predictions", str(tmp_path / "nope.jsonl")]) == 2
    assert capsys.readouterr().err == f"undertow: error: {tmp_path / 'nope.jsonl'}: no such file\n"
    assert main(["publish", "labels", str(tmp_path)]) == 2  # a directory


def test_no_broker_anywhere_is_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.delenv("UNDERTOW_KAFKA", raising=False)
    monkeypatch.chdir(tmp_path)  # no .undertow/stack.json here
    events = tmp_path / "p.jsonl"
    events.write_bytes(line(PREDICTION) + b"\n")
    assert main(["publish", "predictions", str(events)]) == 2
    assert "no broker" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["publish", "metrics", "f"],
        ["publish", "labels", "f", "--rate", "0"],
        ["publish", "labels", "f", "--rate", "fast"],
        ["publish", "labels", "f", "--batch-size", "0"],
        ["alerts", "tail", "-n", "-1"],
        ["alerts", "tail", "--format", "yaml"],
    ],
)
def test_bad_arguments_are_usage_errors(argv: list[str], capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2


def test_publish_and_tail_arguments() -> None:
    args = build_parser().parse_args(
        ["publish", "labels", "-", "--rate", "250", "--batch-size", "9"]
    )
    assert (args.kind, args.file, args.rate, args.batch_size) == ("labels", "-", 250.0, 9)
    args = build_parser().parse_args(["alerts", "tail"])
    assert (args.from_beginning, args.follow, args.lines, args.format) == (
        False,
        False,
        10,
        "table",
    )
    args = build_parser().parse_args(["alerts", "tail", "-f", "-n", "0", "--format", "json"])
    assert (args.follow, args.lines, args.format) == (True, 0, "json")


# ------------------------------------------------------------------------------- alerts


def test_an_alert_as_a_table_line() -> None:
    assert alerts.render_alert(ALERT) == (
        "2025-11-26 10:05:02Z  critical  firing    fraud v2.1.0  data_drift  amount  "
        "psi=0.41 vs 0.25  amount drifted"
    )


def test_severity_and_resolution_are_coloured_on_a_terminal() -> None:
    text = alerts.render_alert(ALERT, colour=True)
    assert "\033[1;31mcritical\033[0m" in text
    resolved = alerts.render_alert({**ALERT, "severity": "warning", "status": "resolved"}, True)
    assert "\033[33mwarning \033[0m" in resolved and "\033[32mresolved\033[0m" in resolved


def test_a_sparse_alert_still_renders() -> None:
    text = alerts.render_alert({"type": "volume", "segment": "device_type=mobile"})
    assert text == "?  ?         ?         ?  volume  device_type=mobile  -"
    text = alerts.render_alert({**ALERT, "feature": None, "value": 12, "threshold": None})
    assert "  -  psi=12  amount drifted" in text


def printed(fmt: str, values: list[bytes]) -> bytes:
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="utf-8")
    alerts.AlertPrinter(fmt, out).write(values)
    out.flush()
    return raw.getvalue()


def test_json_output_is_the_bytes_on_the_topic(capsys: pytest.CaptureFixture) -> None:
    spaced = b'{"alert_id": "a1",   "value": 0.41000}'
    pretty = orjson.dumps(ALERT, option=orjson.OPT_INDENT_2)
    out = printed("json", [spaced, b"not json", pretty, b"[1]", spaced + b"\n"])
    assert out.splitlines() == [spaced, orjson.dumps(ALERT), spaced]
    assert capsys.readouterr().err.count("not an alert") == 2


def test_table_output_is_one_line_per_alert() -> None:
    out = printed("table", [orjson.dumps(ALERT), orjson.dumps({**ALERT, "status": "resolved"})])
    assert len(out.decode().splitlines()) == 2


def test_the_end_is_the_fetch_high_watermark() -> None:
    # Tansu reports end_offsets() of 21 for 30 records: the high watermark decides.
    assert not alerts.caught_up({"p0": 21}, {"p0": 30}, {"p0": 21}, idle_s=10.0)
    assert alerts.caught_up({"p0": 30}, {"p0": 30}, {"p0": 21}, idle_s=0.0)
    # Every partition must be there.
    assert not alerts.caught_up({"p0": 30, "p1": 0}, {"p0": 30, "p1": 4}, {"p0": 30, "p1": 4}, 0)


def test_without_a_fetch_answer_idleness_past_the_reported_end_decides() -> None:
    assert not alerts.caught_up({"p0": 21}, {"p0": None}, {"p0": 21}, idle_s=0.5)
    assert alerts.caught_up({"p0": 21}, {"p0": None}, {"p0": 21}, idle_s=alerts.IDLE_S)
    assert not alerts.caught_up({"p0": 3}, {"p0": None}, {"p0": 21}, idle_s=60.0)


def test_an_empty_topic_is_at_its_end_at_once() -> None:
    assert alerts.caught_up({"p0": 0}, {"p0": 0}, {"p0": 0}, idle_s=0.0)
