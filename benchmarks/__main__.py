"""``python -m benchmarks [NAME ...]``: run the named benchmarks (default: all) and print a report."""

from __future__ import annotations

import argparse
import logging
import sys

from benchmarks import embedding, export, peer, quantize, serving, training, warmup

# training last: it is the long one (the default train, ~15-20 min on 2 CPU cores)
BENCHMARKS = {
    "embedding": embedding.run,
    "export": export.run,
    "quantize": quantize.run,
    "serving": serving.run,
    # /inference beside infinity-emb in its own venv (installed on first use, ~1 GB, about a minute)
    "peer": peer.run,
    "training": training.run,
    # an A/B experiment more than a benchmark (~40 min): only when named
    "warmup": warmup.run,
}
DEFAULT = ("embedding", "export", "quantize", "serving", "peer", "training")


def main() -> int:
    parser = argparse.ArgumentParser(prog="make bench")
    parser.add_argument("names", nargs="*", help=f"any of {list(BENCHMARKS)} (default: {', '.join(DEFAULT)})")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N texts (quick look)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    unknown = set(args.names) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s) {sorted(unknown)}")
    for name in args.names or DEFAULT:
        print(f"\n=== {name} ===", flush=True)
        BENCHMARKS[name](limit=args.limit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
