"""The `undertow` command line.

A user mistake (a missing file, a bad column, a malformed baseline) ends in one line on
stderr and exit status 2; a bug keeps its traceback so it can be reported.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from agents.cli import alerts as alerts_cmd
from agents.cli import baseline as baseline_cmd
from agents.cli import check as check_cmd
from agents.cli import demo as demo_cmd
from agents.cli import dev as dev_cmd
from agents.cli import publish as publish_cmd
from agents.cli import worker as worker_cmd
from streams import __version__
from streams.errors import InputError

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="undertow",
        description="Watch machine-learning models in production: drift, data quality, alerts.",
    )
    parser.add_argument("--version", action="version", version=f"undertow {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    baseline_cmd.register(sub)
    check_cmd.register(sub)
    demo_cmd.register(sub)
    worker_cmd.register(sub)
    dev_cmd.register(sub)
    publish_cmd.register(sub)
    alerts_cmd.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
    except InputError as exc:
        print(f"undertow: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("undertow: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `undertow check ... | head` closed the pipe: not an error worth a traceback.
        sys.stderr.close()
        return 0
    return code


if __name__ == "__main__":
    sys.exit(main())
