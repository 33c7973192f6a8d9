"""`undertow baseline create`: a model version's reference from a CSV or JSON Lines file."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from agents.cli.options import name_list, non_negative, positive_int, share
from agents.cli.progress import file_progress
from streams.baseline import TASKS
from streams.baseline_builder import DEFAULT_IGNORE, TARGET_NAMES, BuildOptions, build_baseline
from streams.binning import BINNINGS
from streams.cohorts import MAX_VALUES
from streams.durations import ACCEPTED_FORMS, parse_duration
from streams.errors import InputError
from streams.severity import Thresholds
from streams.tabular import TableFile


def register(sub: Any) -> None:
    baseline = sub.add_parser("baseline", help="create a model version's reference")
    actions = baseline.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser(
        "create",
        help="build a baseline from reference data",
        description=(
            "Build a baseline from reference data (CSV with a header row, or JSON Lines). "
            "Every column that is not the prediction, the target, protected or ignored is a "
            "feature; a column is numeric when at least 95%% of its first 10,000 values are "
            "numbers (the rest are then malformed rows). Protected columns are segment "
            "attributes, not features: live events carry them in `segments`, and the "
            "baseline keeps each group's positive rate, TPR and FPR on this data as the "
            "fairness reference. Durations: " + ACCEPTED_FORMS + "."
        ),
    )
    create.add_argument("--data", required=True, metavar="FILE", help="CSV or JSON Lines")
    create.add_argument("--model", required=True, help="model name, e.g. fraud")
    create.add_argument("--version", required=True, help="model version, e.g. v2.1.0")
    create.add_argument("--out", required=True, metavar="FILE", help="baseline JSON to write")
    create.add_argument(
        "--prediction", metavar="COL", help="the model's output column (default: 'prediction')"
    )
    create.add_argument(
        "--target",
        metavar="COL",
        help=f"ground-truth column (default: the first of {', '.join(TARGET_NAMES)} present)",
    )
    create.add_argument("--task", choices=TASKS, help="default: inferred from the columns")
    create.add_argument(
        "--bins", type=positive_int, default=10, help="PSI bins per numeric feature (10)"
    )
    create.add_argument("--binning", choices=BINNINGS, default="quantile")
    create.add_argument(
        "--threshold", type=share, default=0.5, help="decision threshold of a binary model"
    )
    create.add_argument(
        "--features", type=name_list, metavar="A,B", help="monitor only these columns"
    )
    create.add_argument(
        "--ignore",
        type=name_list,
        metavar="A,B",
        default=list(DEFAULT_IGNORE),
        help=f"columns that are not features (default: {','.join(DEFAULT_IGNORE)})",
    )
    create.add_argument(
        "--categorical",
        type=name_list,
        metavar="A,B",
        default=[],
        help="treat these columns as categorical even when they hold numbers (codes, ids)",
    )
    create.add_argument(
        "--sample-rows",
        type=positive_int,
        default=1_000_000,
        help="rows kept to place bin edges; larger files take a second, exact counting pass",
    )
    create.add_argument(
        "--max-bad-share",
        type=share,
        default=0.01,
        help="share of malformed rows tolerated before the file is rejected (0.01)",
    )
    create.add_argument("--psi-warning", type=non_negative, default=Thresholds.psi_warning)
    create.add_argument("--psi-critical", type=non_negative, default=Thresholds.psi_critical)
    labels = create.add_argument_group("ground truth and fairness")
    labels.add_argument(
        "--protected",
        type=name_list,
        metavar="A,B",
        default=[],
        help=(
            "segment attributes whose groups are compared for fairness, e.g. gender,age_band "
            f"(not drift features; the {MAX_VALUES} most frequent groups of each are kept)"
        ),
    )
    labels.add_argument(
        "--label-ttl",
        type=_duration,
        metavar="DURATION",
        help="how long a prediction waits for its label, e.g. 30d (default: the worker's)",
    )
    labels.add_argument(
        "--expected-label-delay",
        type=_duration,
        metavar="DURATION",
        help="how long ground truth usually takes to arrive, e.g. 2d",
    )
    labels.add_argument(
        "--min-labelled",
        type=_count,
        default=100,
        metavar="N",
        help="fewer labels in a window make its performance 'insufficient' (100)",
    )
    labels.add_argument(
        "--min-group-size",
        type=_count,
        default=30,
        metavar="N",
        help="a group's rate is compared only when it rests on at least N rows (30)",
    )
    labels.add_argument(
        "--fairness-bounds",
        type=_bounds,
        default=(0.8, 1.25),
        metavar="LO,HI",
        help="the demographic parity ratio must stay within these (0.8,1.25)",
    )
    create.set_defaults(run=run_create)

    reg = actions.add_parser(
        "register",
        help="store a baseline in Redis for the workers",
        description=(
            "Store a baseline in Redis (UNDERTOW_REDIS_URL, or the embedded stack's Redis "
            "when `undertow dev up` is running), where every worker finds it. Registering "
            "the same model and version again replaces it; workers pick it up within 10 s."
        ),
    )
    reg.add_argument("file", metavar="FILE", help="a baseline from `undertow baseline create`")
    reg.set_defaults(run=run_register)


def run_create(args: argparse.Namespace) -> int:
    try:
        thresholds = Thresholds(psi_warning=args.psi_warning, psi_critical=args.psi_critical)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    options = BuildOptions(
        model=args.model,
        version=args.version,
        prediction=args.prediction,
        target=args.target,
        task=args.task,
        bins=args.bins,
        binning=args.binning,
        threshold=args.threshold,
        features=args.features,
        ignore=args.ignore,
        categorical=args.categorical,
        sample_rows=args.sample_rows,
        max_bad_share=args.max_bad_share,
        thresholds=thresholds,
        protected=args.protected,
        label_ttl_s=args.label_ttl,
        expected_label_delay_s=args.expected_label_delay,
        min_labelled=args.min_labelled,
        min_group_size=args.min_group_size,
        fairness_bounds=args.fairness_bounds,
    )
    table = TableFile(args.data)
    with file_progress(table.path, table.size) as progress:
        baseline, report = build_baseline(table, options, progress)
    try:
        with open(args.out, "wb") as f:
            f.write(baseline.to_json())
    except OSError as exc:
        raise InputError(f"cannot write the baseline: {exc.strerror}", path=args.out) from None

    numeric = sum(r.kind == "numeric" for r in baseline.features.values())
    parts = [
        f"baseline {baseline.model} {baseline.version}: {len(baseline.features)} features "
        f"({numeric} numeric, {len(baseline.features) - numeric} categorical) "
        f"from {report.rows:,} rows"
    ]
    if baseline.prediction is not None:
        parts.append(f"task {baseline.task}, prediction {baseline.source['prediction_column']!r}")
    if baseline.target is not None:
        parts.append(f"target {baseline.source['target_column']!r}")
    if baseline.protected:
        groups = ", ".join(
            f"{c} ({len(baseline.fairness_reference.get(c, {}))} groups)"
            for c in baseline.protected
        )
        parts.append(f"protected {groups}")
    print("; ".join(parts) + f" -> {os.fspath(args.out)}", file=sys.stderr)
    if report.bad:
        print(
            f"undertow: warning: {report.bad} malformed row(s) left out; first: "
            f"{report.examples[0].describe()}",
            file=sys.stderr,
        )
    return 0


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number of at least 0, not {text!r}")
    return value


def _bounds(text: str) -> tuple[float, float]:
    parts = text.split(",")
    try:
        lo, hi = (float(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two numbers LO,HI, not {text!r}") from None
    if not 0 < lo <= hi < float("inf"):
        raise argparse.ArgumentTypeError(f"expected 0 < LO <= HI, not {text!r}")
    return lo, hi


def run_register(args: argparse.Namespace) -> int:
    import redis

    from agents.app import namespace
    from agents.cli.check import load_baseline
    from agents.cli.connect import redis_url
    from agents.registry import BaselineRegistry
    from agents.settings import Settings

    baseline = load_baseline(args.file)
    url = redis_url()
    client = redis.Redis.from_url(url, socket_connect_timeout=5)
    try:
        key = BaselineRegistry(client, namespace=namespace(Settings.from_env())).register(baseline)
    except redis.RedisError as exc:
        raise InputError(f"cannot reach Redis at {_redact(url)}: {exc}") from None
    print(f"registered {baseline.model} {baseline.version} as {key}", file=sys.stderr)
    return 0


def _redact(url: str) -> str:
    return url if "@" not in url else url.split("://", 1)[0] + "://***@" + url.split("@", 1)[1]
