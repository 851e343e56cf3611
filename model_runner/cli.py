"""``model-runner``: the command line of the ModelRunner."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from model_runner.settings import get_settings
from model_runner.tasks import TASK_NAMES, get_task


def _cmd_embed(args: argparse.Namespace) -> int:
    from model_runner.jobs.embed import embed_dataset
    from model_runner.wiring import Components

    settings = get_settings()
    report = embed_dataset(Components(settings), get_task(args.task, settings), args.data)
    print(
        f"embedded {report.texts} texts in {report.seconds:.1f}s: {report.computed} computed, "
        f"{report.cached} from the cache ({report.new_examples} new labelled examples)",
        file=sys.stderr,
    )
    print(json.dumps(report.to_dict()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="model-runner", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    embed = sub.add_parser("embed", help="embed a dataset into the pgvector cache")
    embed.add_argument("--data", help="file, folder or Hub dataset id (default: the task's data)")
    embed.add_argument("--task", default="sentiment", choices=TASK_NAMES)
    embed.set_defaults(func=_cmd_embed)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from model_runner.data import DataError

    try:
        return args.func(args)
    except (DataError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
