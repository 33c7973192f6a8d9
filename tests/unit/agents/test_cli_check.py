"""The batch check as a user runs it: `undertow baseline create` then `undertow check`."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from agents.cli import main


def write_csv(path: Path, n: int, seed: int, shift: float = 0.0, new_category: bool = False):
    rng = np.random.default_rng(seed)
    cats = ["grocery", "travel", "fuel"] + (["crypto"] if new_category else [])
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["prediction_id", "amount", "age", "merchant", "prediction", "label"])
        for i in range(n):
            amount = rng.lognormal(3 + shift, 1)
            score = 1 / (1 + np.exp(-(amount - 30) / 20))
            age = "" if rng.uniform() < 0.01 else int(rng.integers(18, 90))
            w.writerow([f"p{i}", amount, age, rng.choice(cats), score, int(rng.uniform() < score)])


@pytest.fixture
def files(tmp_path):
    ref, cur, same = tmp_path / "ref.csv", tmp_path / "cur.csv", tmp_path / "same.csv"
    write_csv(ref, 3000, seed=1)
    write_csv(cur, 3000, seed=2, shift=0.8, new_category=True)
    write_csv(same, 3000, seed=3)
    baseline = tmp_path / "baseline.json"
    code = main(
        [
            "baseline",
            "create",
            "--data",
            str(ref),
            "--model",
            "fraud",
            "--version",
            "v1",
            "--out",
            str(baseline),
        ]
    )
    assert code == 0
    return {"ref": ref, "cur": cur, "same": same, "baseline": baseline, "dir": tmp_path}


def run_json(capsys, baseline, data, *extra):
    code = main(
        ["check", "--baseline", str(baseline), "--data", str(data), "--format", "json", *extra]
    )
    out = capsys.readouterr().out
    return code, json.loads(out)


def test_json_report_shape_and_verdicts(files, capsys):
    code, report = run_json(capsys, files["baseline"], files["cur"])
    assert code == 0
    assert report["rows"] == 3000 and report["alert_level"] == "critical"
    assert set(report["features"]) == {"amount", "age", "merchant"}
    amount = report["features"]["amount"]
    assert amount["type"] == "numeric" and amount["status"] == "critical"
    for key in (
        "psi",
        "ks",
        "ks_pvalue",
        "js",
        "wasserstein",
        "missing_rate",
        "out_of_range_rate",
        "status",
    ):
        assert key in amount
    merchant = report["features"]["merchant"]
    assert merchant["type"] == "categorical"
    for key in ("psi", "js", "chi2", "chi2_pvalue", "missing_rate", "unseen_rate", "status"):
        assert key in merchant
    assert 0.15 < merchant["unseen_rate"] < 0.35
    assert report["prediction"]["positive_rate"] > 0
    assert report["prediction"]["status"] in ("warning", "critical")


def test_same_distribution_is_quiet(files, capsys):
    code, report = run_json(capsys, files["baseline"], files["same"], "--fail-on", "warning")
    assert code == 0
    assert report["alert_level"] == "none"
    assert all(f["status"] == "none" for f in report["features"].values())


def test_fail_on_sets_exit_status(files, capsys):
    code, _ = run_json(capsys, files["baseline"], files["cur"], "--fail-on", "critical")
    assert code == 1


def test_table_lists_drifted_first(files, capsys):
    assert main(["check", "--baseline", str(files["baseline"]), "--data", str(files["cur"])]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("column"))
    first = lines[header + 2].split()
    assert first[2] == "critical"
    assert "\033[" not in out  # not a terminal: no colour codes
    assert "alert level: critical" in out


def error_of(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("missing.csv", None, "no such file"),
        ("x.bin", b"\x00\x01", "binary file"),
        ("e.csv", b"", "file is empty"),
        ("h.csv", b"prediction_id,amount,age,merchant,prediction\n", "no data rows"),
    ],
)
def test_bad_data_file_is_one_line_and_status_2(files, capsys, name, content, expected):
    path = files["dir"] / name
    if content is not None:
        path.write_bytes(content)
    code, err = error_of(
        capsys, ["check", "--baseline", str(files["baseline"]), "--data", str(path)]
    )
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("undertow: error: ")
    assert expected in err and str(path) in err


def test_column_mismatch_both_ways(files, capsys):
    d = files["dir"]
    extra = d / "extra.csv"
    extra.write_text(
        files["same"]
        .read_text()
        .replace("label\n", "label,colour\n", 1)
        .replace("\n", ",red\n")
        .replace("label,colour,red", "label,colour")
    )
    code, err = error_of(
        capsys, ["check", "--baseline", str(files["baseline"]), "--data", str(extra)]
    )
    assert code == 2 and "'colour' are not in the baseline" in err and "--ignore" in err

    lacking = d / "lacking.csv"
    lacking.write_text("prediction_id,amount,merchant,prediction\np1,1.0,fuel,0.5\n")
    code, err = error_of(
        capsys, ["check", "--baseline", str(files["baseline"]), "--data", str(lacking)]
    )
    assert code == 2 and "'age'" in err and "not in this file" in err


def test_non_numeric_text_names_row_and_column(files, capsys):
    d = files["dir"]
    rows = files["same"].read_text().splitlines()
    parts = rows[5].split(",")
    parts[1] = "lots"
    rows[5] = ",".join(parts)
    bad = d / "bad.csv"
    bad.write_text("\n".join(rows[:60]) + "\n")  # 1 bad row in 59: over the 1 % allowed
    code, err = error_of(
        capsys, ["check", "--baseline", str(files["baseline"]), "--data", str(bad)]
    )
    assert code == 2
    assert "row 6, column 'amount': not a number ('lots')" in err

    code = main(
        [
            "check",
            "--baseline",
            str(files["baseline"]),
            "--data",
            str(bad),
            "--max-bad-share",
            "0.05",
            "--format",
            "json",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0 and json.loads(captured.out)["bad_rows"] == 1
    assert "1 malformed row(s) left out" in captured.err


def test_all_missing_feature_is_critical_with_a_warning(files, capsys):
    d = files["dir"]
    rows = files["same"].read_text().splitlines()
    out = [rows[0]]
    for line in rows[1:]:
        parts = line.split(",")
        parts[2] = ""
        out.append(",".join(parts))
    empty_age = d / "noage.csv"
    empty_age.write_text("\n".join(out) + "\n")
    code = main(
        [
            "check",
            "--baseline",
            str(files["baseline"]),
            "--data",
            str(empty_age),
            "--format",
            "json",
        ]
    )
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert code == 0
    assert report["features"]["age"]["missing_rate"] == 1.0
    assert report["features"]["age"]["status"] == "critical"
    assert "column 'age' is entirely missing" in captured.err


def test_baseline_of_another_format_version(files, capsys):
    raw = json.loads(files["baseline"].read_text())
    raw["format"] = "undertow.baseline/99"
    old = files["dir"] / "old.json"
    old.write_text(json.dumps(raw))
    code, err = error_of(capsys, ["check", "--baseline", str(old), "--data", str(files["cur"])])
    assert code == 2 and str(old) in err and "not supported" in err
    code, err = error_of(
        capsys,
        ["check", "--baseline", str(files["dir"] / "nope.json"), "--data", str(files["cur"])],
    )
    assert code == 2 and "no such baseline file" in err


def test_baseline_create_errors(files, capsys):
    d = files["dir"]
    (d / "allmissing.csv").write_text("a,b\n,x\n,y\n")
    code, err = error_of(
        capsys,
        [
            "baseline",
            "create",
            "--data",
            str(d / "allmissing.csv"),
            "--model",
            "m",
            "--version",
            "1",
            "--out",
            str(d / "o.json"),
        ],
    )
    assert code == 2 and "column 'a': has no values" in err
    code, err = error_of(
        capsys,
        [
            "baseline",
            "create",
            "--data",
            str(files["ref"]),
            "--model",
            "m",
            "--version",
            "1",
            "--out",
            str(d / "no" / "dir.json"),
        ],
    )
    assert code == 2 and "cannot write the baseline" in err


def test_jsonl_in_the_wire_format(files, capsys):
    d = files["dir"]
    lines = []
    for line in files["cur"].read_text().splitlines()[1:]:
        pid, amount, age, merchant, score, label = line.split(",")
        lines.append(
            json.dumps(
                {
                    "prediction_id": pid,
                    "model": "fraud",
                    "model_version": "v1",
                    "timestamp": 1764151200.0,
                    "features": {
                        "amount": float(amount),
                        "age": int(age) if age else None,
                        "merchant": merchant,
                    },
                    "prediction": float(score),
                    "label": int(label),
                }
            )
        )
    jsonl = d / "cur.jsonl"
    jsonl.write_text("\n".join(lines) + "\n")
    _, from_jsonl = run_json(capsys, files["baseline"], jsonl)
    _, from_csv = run_json(capsys, files["baseline"], files["cur"])
    for name in ("amount", "age", "merchant"):
        assert from_jsonl["features"][name]["psi"] == pytest.approx(
            from_csv["features"][name]["psi"]
        )


def write_protected_csv(path: Path, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["prediction_id", "amount", "gender", "age_band", "prediction", "label"])
        for i in range(n):
            score = rng.uniform()
            w.writerow(
                [
                    f"p{i}",
                    rng.lognormal(3, 1),
                    rng.choice(["f", "m"]),
                    rng.choice(["18-30", "31-50", "51+"]),
                    score,
                    int(rng.uniform() < score),
                ]
            )


def create_args(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "baseline",
        "create",
        "--data",
        str(data),
        "--model",
        "credit",
        "--version",
        "v1",
        "--out",
        str(out),
        *extra,
    ]


def test_baseline_create_with_protected_attributes_and_label_settings(tmp_path, capsys):
    ref, cur, out = tmp_path / "ref.csv", tmp_path / "cur.csv", tmp_path / "b.json"
    write_protected_csv(ref, 1000, seed=1)
    write_protected_csv(cur, 500, seed=2)
    argv = create_args(
        ref,
        out,
        "--protected",
        "gender,age_band",
        "--label-ttl",
        "30d",
        "--expected-label-delay",
        "2d",
        "--min-labelled",
        "50",
        "--min-group-size",
        "20",
        "--fairness-bounds",
        "0.75,1.3",
    )
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "protected gender (2 groups), age_band (3 groups)" in err
    raw = json.loads(out.read_text())
    assert list(raw["features"]) == ["amount"]
    assert raw["protected"] == ["gender", "age_band"]
    assert set(raw["fairness_reference"]["gender"]) == {"f", "m"}
    assert raw["label_ttl_s"] == 30 * 86400 and raw["expected_label_delay_s"] == 2 * 86400
    assert (raw["min_labelled"], raw["min_group_size"]) == (50, 20)
    assert raw["fairness_bounds"] == [0.75, 1.3]
    # The batch check leaves protected columns out instead of calling them unknown.
    code, report = run_json(capsys, out, cur)
    assert code == 0 and list(report["features"]) == ["amount"]


def test_baseline_create_protected_errors(tmp_path, capsys):
    ref, out = tmp_path / "ref.csv", tmp_path / "b.json"
    write_protected_csv(ref, 50, seed=1)
    code, err = error_of(capsys, create_args(ref, out, "--protected", "gender,race"))
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith("undertow: error: ") and "--protected column(s) 'race' not in" in err
    assert not out.exists()
    for flag, value, message in (
        ("--label-ttl", "30 days", "invalid duration '30 days'"),
        ("--fairness-bounds", "1.2,0.8", "expected 0 < LO <= HI"),
        ("--min-labelled", "-1", "at least 0"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(create_args(ref, out, flag, value))
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err


def test_baseline_create_help_lists_the_label_flags(capsys):
    with pytest.raises(SystemExit):
        main(["baseline", "create", "--help"])
    out = capsys.readouterr().out
    for flag in ("--protected", "--label-ttl", "--expected-label-delay", "--min-labelled"):
        assert flag in out
