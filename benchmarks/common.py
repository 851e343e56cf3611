"""Helpers shared by the benchmarks: the real data, a throwaway database, a table printer."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets"


def load_texts(
    task_dir: str = "tweet-sentiment", split: str = "validation", limit: int | None = None
) -> list[str]:
    path = (SHARED / task_dir / f"{split}.jsonl").resolve()
    texts = [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines() if line]
    return texts[:limit] if limit else texts


@contextmanager
def scratch_database() -> Iterator[str]:
    """A fresh embedded Postgres that is deleted afterwards, so benchmarks never touch real data."""
    import pgserver

    with tempfile.TemporaryDirectory(prefix="tp-bench-") as tmp:
        server = pgserver.get_server(Path(tmp) / "pg", cleanup_mode="delete")
        try:
            yield server.get_uri()
        finally:
            server.cleanup()


def table(rows: list[tuple], headers: tuple[str, ...]) -> str:
    cells = [tuple(map(str, headers)), *[tuple(map(str, r)) for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
