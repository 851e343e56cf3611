"""``python -m benchmarks [NAME ...]``: run the named benchmarks (default: all) and print a report."""

from __future__ import annotations

import argparse
import logging
import sys

from benchmarks import embedding

BENCHMARKS = {"embedding": embedding.run}


def main() -> int:
    parser = argparse.ArgumentParser(prog="make bench")
    parser.add_argument("names", nargs="*", choices=[*BENCHMARKS, []], default=list(BENCHMARKS))
    parser.add_argument("--limit", type=int, default=None, help="use only the first N texts (quick look)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    for name in args.names or BENCHMARKS:
        print(f"\n=== {name} ===", flush=True)
        BENCHMARKS[name](limit=args.limit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
