"""`undertow check`: the batch monitoring job, a data file against a baseline."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

from agents.cli.options import name_list, share
from agents.cli.progress import file_progress
from agents.cli.render import render_table, use_colour
from streams.baseline import Baseline
from streams.baseline_builder import DEFAULT_IGNORE
from streams.check import check
from streams.errors import BaselineFormatError, InputError
from streams.severity import Severity
from streams.tabular import TableFile

EXIT_ALERT = 1


def register(sub: Any) -> None:
    cmd = sub.add_parser(
        "check",
        help="compare a data file with a baseline (no broker, no Redis)",
        description=(
            "Per-feature drift (PSI, KS, JS, Wasserstein or chi-square), data quality and "
            "prediction drift of a CSV or JSON Lines file against a baseline. Exit status: "
            "0 when the check ran, 1 when --fail-on is reached, 2 on bad input."
        ),
    )
    cmd.add_argument("--baseline", required=True, metavar="FILE", help="from baseline create")
    cmd.add_argument("--data", required=True, metavar="FILE", help="CSV or JSON Lines")
    cmd.add_argument("--format", choices=("table", "json"), default="table")
    cmd.add_argument(
        "--ignore",
        type=name_list,
        metavar="A,B",
        default=list(DEFAULT_IGNORE),
        help=f"columns to leave out (default: {','.join(DEFAULT_IGNORE)})",
    )
    cmd.add_argument(
        "--max-bad-share",
        type=share,
        default=0.01,
        help="share of malformed rows tolerated before the file is rejected (0.01)",
    )
    cmd.add_argument(
        "--fail-on",
        choices=("warning", "critical"),
        help="exit with status 1 when the overall alert level reaches this",
    )
    cmd.set_defaults(run=run_check)


def load_baseline(path: str) -> Baseline:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise InputError("no such baseline file", path=path) from None
    except OSError as exc:
        raise InputError(f"cannot read the baseline: {exc.strerror}", path=path) from None
    try:
        return Baseline.from_json(raw)
    except BaselineFormatError as exc:
        raise BaselineFormatError(exc.message, path=path) from None


def run_check(args: argparse.Namespace) -> int:
    baseline = load_baseline(args.baseline)
    table = TableFile(args.data)
    with file_progress(table.path, table.size) as progress:
        result = check(
            baseline,
            table,
            ignore=args.ignore,
            max_bad_share=args.max_bad_share,
            progress=progress,
        )
    for warning in result.warnings:
        print(f"undertow: warning: {warning}", file=sys.stderr)
    if result.read.bad:
        print(
            f"undertow: warning: {result.read.bad} malformed row(s) left out; first: "
            f"{result.read.examples[0].describe()}",
            file=sys.stderr,
        )
    if args.format == "json":
        sys.stdout.buffer.write(orjson.dumps(result.to_dict(), option=_JSON_OPTIONS) + b"\n")
    else:
        sys.stdout.write(render_table(result, baseline, colour=use_colour(sys.stdout)))
    sys.stdout.flush()
    if args.fail_on and result.alert_level >= Severity.parse(args.fail_on):
        return EXIT_ALERT
    return 0


# NaN (a statistic that does not apply, e.g. KS on an empty column) becomes null.
_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
