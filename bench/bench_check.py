"""Side-by-side benchmark: `undertow baseline create` + `undertow check` vs Evidently.

The issue's acceptance criterion: on 1,000,000 rows x 20 numeric features (reference and
current), undertow's batch check is at least 10x faster than Evidently's DataDriftPreset on
the same data, measured side by side in one run. Both sides run as subprocesses started from
here and are timed from process start to exit, so interpreter start-up, imports and CSV
parsing count on both sides, exactly as a user would experience them.

Run it with `make bench` (a separate venv, .venv-bench, with the `bench` extra installed).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_DATA_DIR = BENCH_DIR / "data"

# Bump when the data recipe below changes, so that stale cached CSVs are not reused.
DATA_RECIPE = 1
CHUNK_ROWS = 100_000

# The drift injected into the current file, by feature index:
#   i % 5 == 0  mean shifted by +1 sd   (PSI ~0.93 on deciles: critical)
#   i % 5 == 1  spread scaled by 1.5    (PSI ~0.19 on deciles: warning)
#   otherwise   unchanged               (PSI ~0: no drift)
SHIFT_SD = 1.0
SCALE = 1.5

SETUP_HINT = "run `make bench`, which installs the bench extra into .venv-bench"

# Evidently side, run with `python -c`: the same work a user does to get the preset's result
# from two CSV files. It reports its own phase timings so the table can say where time goes.
EVIDENTLY_WORKER = r"""
import json, sys, time
t0 = time.perf_counter()
import pandas as pd
import evidently
from evidently import Report
from evidently.presets import DataDriftPreset
t1 = time.perf_counter()
ref = pd.read_csv(sys.argv[1])
cur = pd.read_csv(sys.argv[2])
t2 = time.perf_counter()
snapshot = Report([DataDriftPreset()]).run(reference_data=ref, current_data=cur)
result = snapshot.dict()
t3 = time.perf_counter()
drifted = None
columns = 0
for metric in result.get("metrics", []):
    name = metric.get("metric_name", "")
    if name.startswith("DriftedColumnsCount"):
        drifted = int(metric["value"]["count"])
    elif name.startswith("ValueDrift"):
        columns += 1
print(json.dumps({
    "evidently_version": evidently.__version__,
    "pandas_version": pd.__version__,
    "import_s": t1 - t0, "read_s": t2 - t1, "report_s": t3 - t2,
    "drifted_columns": drifted, "columns": columns,
}))
"""


class BenchError(Exception):
    """A setup or sanity problem that makes the measurement meaningless."""


# ---------------------------------------------------------------------------------------------
# data


@dataclass(frozen=True)
class Dataset:
    reference: Path
    current: Path
    shifted: list[str]
    scaled: list[str]
    unchanged: list[str]


def feature_names(n: int) -> list[str]:
    return [f"f{i:02d}" for i in range(n)]


def _transform(z: np.ndarray, features: int) -> np.ndarray:
    """Give columns different shapes and scales; monotone, so PSI on quantile bins is the
    same as on the standard normal draws and the drift magnitudes above hold."""
    out = np.empty_like(z)
    for i in range(features):
        loc, scale = 10.0 * i, 1.0 + i % 4
        if i % 3 == 1:
            out[:, i] = np.exp(0.5 * z[:, i] + 3.0)  # lognormal, like amounts
        elif i % 3 == 2:
            out[:, i] = loc + scale * np.tanh(0.6 * z[:, i])  # bounded, skew-free
        else:
            out[:, i] = loc + scale * z[:, i]
    return out


def _draw(rng: np.random.Generator, rows: int, features: int, drifted: bool) -> np.ndarray:
    z = rng.standard_normal((rows, features))
    if drifted:
        idx = np.arange(features)
        z[:, idx % 5 == 0] += SHIFT_SD
        z[:, idx % 5 == 1] *= SCALE
    return _transform(z, features)


def _write_csv(path: Path, rows: int, features: int, seed: int, drifted: bool) -> None:
    # Write to a temporary name and rename, so an interrupted run never leaves a truncated
    # file that the cache would then trust.
    rng = np.random.default_rng(seed)
    tmp = path.with_suffix(".csv.partial")
    with tmp.open("w", encoding="ascii") as fh:
        fh.write(",".join(feature_names(features)) + "\n")
        for start in range(0, rows, CHUNK_ROWS):
            n = min(CHUNK_ROWS, rows - start)
            np.savetxt(fh, _draw(rng, n, features, drifted), fmt="%.6g", delimiter=",")
    tmp.replace(path)


def ensure_data(data_dir: Path, rows: int, features: int, seed: int) -> Dataset:
    data_dir.mkdir(parents=True, exist_ok=True)
    key = f"{rows}x{features}_s{seed}_r{DATA_RECIPE}"
    ref, cur = data_dir / f"reference_{key}.csv", data_dir / f"current_{key}.csv"
    # Different seeds for the two files: the current sample must be independent of the
    # reference, otherwise unchanged features would match it row for row.
    for path, file_seed, drifted in ((ref, seed, False), (cur, seed + 1, True)):
        if not path.exists():
            t = time.perf_counter()
            log(f"generating {path.name} ...")
            _write_csv(path, rows, features, file_seed, drifted)
            log(f"  {path.stat().st_size / 1e6:.0f} MB in {time.perf_counter() - t:.1f} s")
    names = feature_names(features)
    return Dataset(
        reference=ref,
        current=cur,
        shifted=[n for i, n in enumerate(names) if i % 5 == 0],
        scaled=[n for i, n in enumerate(names) if i % 5 == 1],
        unchanged=[n for i, n in enumerate(names) if i % 5 > 1],
    )


def warm_page_cache(*paths: Path) -> None:
    # Whichever side runs first would otherwise pay for cold disk reads of cached files.
    for path in paths:
        with path.open("rb") as fh:
            while fh.read(1 << 24):
                pass


# ---------------------------------------------------------------------------------------------
# running and measuring


@dataclass
class Proc:
    returncode: int
    wall_s: float
    peak_rss_mb: float
    stdout: str
    stderr: str


def run_measured(cmd: list[str]) -> Proc:
    """Run cmd, returning wall time and the peak RSS of that one child.

    os.wait4 gives the rusage of exactly this child; RUSAGE_CHILDREN would be a running
    maximum over every child so far, which hides a smaller second side.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped above, tell Popen
        out.seek(0)
        err.seek(0)
        return Proc(
            returncode=proc.returncode,
            wall_s=wall,
            peak_rss_mb=usage.ru_maxrss / 1024,  # KiB on Linux
            stdout=out.read().decode("utf-8", "replace"),
            stderr=err.read().decode("utf-8", "replace"),
        )


def _fail_output(what: str, proc: Proc) -> BenchError:
    tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-20:]) or "(no output)"
    return BenchError(f"{what} exited with {proc.returncode}:\n{tail}")


@dataclass
class SideResult:
    runs: list[dict[str, float]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def median(self, key: str = "wall_s") -> float:
        return statistics.median(run[key] for run in self.runs)

    def peak_rss_mb(self) -> float:
        return max(run["peak_rss_mb"] for run in self.runs)


def find_undertow(override: str | None) -> Path:
    exe = Path(override) if override else Path(sys.executable).parent / "undertow"
    if not exe.exists():
        raise BenchError(f"undertow CLI not found at {exe}; {SETUP_HINT} (or pass --undertow)")
    return exe


def run_undertow_once(exe: Path, data: Dataset, workdir: Path) -> tuple[dict[str, float], Any]:
    baseline = workdir / "baseline.json"
    baseline.unlink(missing_ok=True)
    inputs = ["--data", str(data.reference), "--model", "bench", "--version", "v1"]
    create = run_measured([str(exe), "baseline", "create", *inputs, "--out", str(baseline)])
    if create.returncode != 0 or not baseline.exists():
        raise _fail_output("undertow baseline create", create)
    inputs = ["--baseline", str(baseline), "--data", str(data.current)]
    check = run_measured([str(exe), "check", *inputs, "--format", "json"])
    # A monitoring job may well signal the alert level through its exit code, so judge the
    # run by whether it printed a report, not by a zero status.
    try:
        report = json.loads(check.stdout)
    except json.JSONDecodeError:
        raise _fail_output("undertow check (no JSON report on stdout)", check) from None
    run = {
        "wall_s": create.wall_s + check.wall_s,
        "baseline_s": create.wall_s,
        "check_s": check.wall_s,
        "peak_rss_mb": max(create.peak_rss_mb, check.peak_rss_mb),
        "check_exit": check.returncode,
    }
    return run, report


def bench_undertow(exe: Path, data: Dataset, repeat: int) -> SideResult:
    side = SideResult()
    with tempfile.TemporaryDirectory(prefix="undertow-bench-") as tmp:
        for i in range(repeat):
            run, report = run_undertow_once(exe, data, Path(tmp))
            log(
                f"  undertow run {i + 1}/{repeat}: {run['wall_s']:.2f} s "
                f"(baseline {run['baseline_s']:.2f} s, check {run['check_s']:.2f} s)"
            )
            side.runs.append(run)
    side.info["sanity"] = sanity_check_undertow(report, data)
    try:
        side.info["version"] = importlib.metadata.version("undertow")
    except importlib.metadata.PackageNotFoundError:
        side.info["version"] = None
    return side


def ensure_evidently() -> None:
    missing = [m for m in ("evidently", "pandas") if importlib.util.find_spec(m) is None]
    if missing:
        names = " and ".join(missing)
        raise BenchError(f"{names} not importable from {sys.executable}; {SETUP_HINT}")


def bench_evidently(data: Dataset, repeat: int) -> SideResult:
    side = SideResult()
    cmd = [sys.executable, "-c", EVIDENTLY_WORKER, str(data.reference), str(data.current)]
    for i in range(repeat):
        proc = run_measured(cmd)
        if proc.returncode != 0:
            raise _fail_output("Evidently", proc)
        detail = json.loads(proc.stdout.strip().splitlines()[-1])
        run = {"wall_s": proc.wall_s, "peak_rss_mb": proc.peak_rss_mb}
        run.update({k: detail[k] for k in ("import_s", "read_s", "report_s")})
        log(
            f"  evidently run {i + 1}/{repeat}: {run['wall_s']:.2f} s (import "
            f"{run['import_s']:.1f} s, read_csv {run['read_s']:.1f} s, report "
            f"{run['report_s']:.1f} s)"
        )
        side.runs.append(run)
        keys = ("evidently_version", "pandas_version", "drifted_columns", "columns")
        side.info = {k: detail[k] for k in keys}
    return side


# ---------------------------------------------------------------------------------------------
# checking undertow's answer: a fast wrong answer must not pass


def _find_features(doc: Any) -> dict[str, dict[str, Any]] | None:
    """Locate the per-feature section of `undertow check --format json`, tolerating nesting
    (e.g. under "drift") and either a name-keyed object or a list of records."""
    queue = [doc]
    while queue:
        node = queue.pop(0)
        if isinstance(node, dict):
            features = node.get("features")
            if isinstance(features, dict) and all(isinstance(v, dict) for v in features.values()):
                return features
            if isinstance(features, list) and all(isinstance(v, dict) for v in features):
                named = {str(v.get("name", v.get("feature"))): v for v in features}
                if "None" not in named:
                    return named
            queue.extend(node.values())
        elif isinstance(node, list):
            queue.extend(node)
    return None


def _level(entry: dict[str, Any]) -> str:
    # Judge by PSI when it is there: the design fixes its bands, while `status` may also fold
    # in p-values, which flag noise on a million rows.
    psi = entry.get("psi")
    if isinstance(psi, int | float):
        return "critical" if psi > 0.25 else "warning" if psi >= 0.1 else "none"
    status = str(entry.get("status", entry.get("severity", ""))).lower()
    return status if status in ("warning", "critical") else "none"


def sanity_check_undertow(report: Any, data: Dataset) -> dict[str, Any]:
    features = _find_features(report)
    if features is None:
        raise BenchError("undertow check JSON has no per-feature section ('features')")
    expected = data.shifted + data.scaled + data.unchanged
    missing = [n for n in expected if n not in features]
    if missing:
        raise BenchError(f"undertow check JSON lacks features: {', '.join(missing)}")
    lv = {n: _level(features[n]) for n in expected}
    problems = [f"{n} (mean shift) is {lv[n]}" for n in data.shifted if lv[n] != "critical"]
    problems += [f"{n} (x{SCALE} spread) is {lv[n]}" for n in data.scaled if lv[n] == "none"]
    problems += [f"{n} (unchanged) is {lv[n]}" for n in data.unchanged if lv[n] != "none"]
    if problems:
        raise BenchError("undertow check reported the wrong drift: " + "; ".join(problems))
    return {
        "features": len(expected),
        "critical": [n for n in expected if lv[n] == "critical"],
        "warning": [n for n in expected if lv[n] == "warning"],
    }


# ---------------------------------------------------------------------------------------------
# reporting


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def summarise(
    args: argparse.Namespace, data: Dataset, sides: dict[str, SideResult]
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "rows": args.rows,
        "features": args.features,
        "seed": args.seed,
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "reference": str(data.reference),
        "current": str(data.current),
        "target_ratio": args.target,
    }
    for name, side in sides.items():
        result[name] = {
            "repeat": len(side.runs),
            "median_s": side.median(),
            "min_s": min(r["wall_s"] for r in side.runs),
            "max_s": max(r["wall_s"] for r in side.runs),
            "peak_rss_mb": side.peak_rss_mb(),
            "runs": side.runs,
            **side.info,
        }
    if {"undertow", "evidently"} <= sides.keys():
        ratio = sides["evidently"].median() / sides["undertow"].median()
        result["ratio"] = ratio
        result["pass"] = ratio >= args.target
    else:
        result["ratio"] = None
        result["pass"] = None
    return result


def print_table(result: dict[str, Any]) -> None:
    print(
        f"\nundertow vs Evidently DataDriftPreset: {result['rows']:,} rows x "
        f"{result['features']} numeric features, reference + current, "
        f"{result['cpus']} CPUs"
    )
    cols = ("median s", "min s", "max s", "peak RSS MB")
    header = f"{'side':<10} {'runs':>4} " + " ".join(f"{c:>11}" for c in cols)
    print(header)
    print("-" * len(header))
    for name in ("undertow", "evidently"):
        side = result.get(name)
        if side is None:
            print(f"{name:<10} {'-':>4} {'skipped':>11}")
            continue
        times = " ".join(f"{side[k]:>11.2f}" for k in ("median_s", "min_s", "max_s"))
        print(f"{name:<10} {side['repeat']:>4} {times} {side['peak_rss_mb']:>11.0f}")
    if "undertow" in result:
        runs = result["undertow"]["runs"]
        create = statistics.median(r["baseline_s"] for r in runs)
        check = statistics.median(r["check_s"] for r in runs)
        print(f"  undertow: baseline create {create:.2f} s + check {check:.2f} s (medians)")
        sanity = result["undertow"]["sanity"]
        print(
            f"  undertow flagged {len(sanity['critical'])} critical "
            f"({', '.join(sanity['critical'])}) and {len(sanity['warning'])} warning "
            f"({', '.join(sanity['warning'])}) of {sanity['features']} features"
        )
    if "evidently" in result:
        runs = result["evidently"]["runs"]
        parts = ", ".join(
            f"{label} {statistics.median(r[key] for r in runs):.1f} s"
            for label, key in (
                ("imports", "import_s"),
                ("read_csv", "read_s"),
                ("report", "report_s"),
            )
        )
        ev = result["evidently"]
        print(
            f"  evidently {ev['evidently_version']}: {parts} (medians); "
            f"{ev['drifted_columns']} of {ev['columns']} columns drifted"
        )
    if result["ratio"] is not None:
        verdict = "PASS" if result["pass"] else "FAIL"
        print(
            f"\nspeed-up (evidently / undertow): {result['ratio']:.1f}x   "
            f"target >= {result['target_ratio']:g}x   {verdict}"
        )


# ---------------------------------------------------------------------------------------------
# command line


def positive_int(text: str) -> int:
    value = int(text.replace("_", ""))
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=positive_int, default=1_000_000, help="rows per file")
    p.add_argument("--features", type=positive_int, default=20, help="numeric features")
    p.add_argument("--seed", type=int, default=0, help="data seed (part of the cache key)")
    p.add_argument("--repeat", type=positive_int, default=3, help="undertow runs (median)")
    p.add_argument(
        "--evidently-repeat",
        type=positive_int,
        default=1,
        help="Evidently runs (median); default 1, it is slow",
    )
    p.add_argument("--target", type=float, default=10.0, help="required speed-up")
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="CSV cache")
    p.add_argument("--undertow", help="undertow executable (default: next to this python)")
    p.add_argument("--skip-undertow", action="store_true", help="time Evidently only")
    p.add_argument("--skip-evidently", action="store_true", help="time undertow only")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.add_argument("--no-fail", action="store_true", help="exit 0 even below the target")
    args = p.parse_args(argv)
    if args.skip_undertow and args.skip_evidently:
        p.error("nothing to do: both sides skipped")
    if args.features < 2:
        p.error("--features must be at least 2 (one shifted, one scaled)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        # Check both sides are runnable before spending minutes on data or on the other side.
        exe = None if args.skip_undertow else find_undertow(args.undertow)
        if not args.skip_evidently:
            ensure_evidently()
        data = ensure_data(args.data_dir, args.rows, args.features, args.seed)
        warm_page_cache(data.reference, data.current)
        sides: dict[str, SideResult] = {}
        if exe is not None:
            log(f"undertow ({exe}), {args.repeat} run(s):")
            sides["undertow"] = bench_undertow(exe, data, args.repeat)
        if not args.skip_evidently:
            log(f"evidently ({sys.executable}), {args.evidently_repeat} run(s):")
            sides["evidently"] = bench_evidently(data, args.evidently_repeat)
    except BenchError as exc:
        log(f"bench_check: error: {exc}")
        return 2
    result = summarise(args, data, sides)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    if result["pass"] is False and not args.no_fail:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
