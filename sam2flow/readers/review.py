"""Read a run's review list (``OUT/<video_id>/review.parquet``): the moments most likely wrong, best first.

from sam2flow.readers.review import read_review
for item in read_review("out/bedroom-0123456789")[:10]:
    print(item.rank, item.kind, item.frame_start, item.frame_stop, item.track_ids, item.score, item.evidence)
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from sam2flow.errors import InputError
from sam2flow.io import storage
from sam2flow.io.parquet import REVIEW_SCHEMA, read_table

FILE = "review.parquet"


class ReviewReadError(InputError):
    """The run has no readable review list; the message names the file and what to do."""


@dataclass(frozen=True)
class ReviewRow:
    """One row of review.parquet (see its columns in the README)."""

    rank: int
    kind: str
    frame_start: int
    frame_stop: int
    time_start: float
    track_ids: tuple[int, ...]
    score: float
    evidence: str
    key: str
    reviewed: bool


def review_uri(run_dir: str) -> str:
    """Where a run keeps its review list."""
    return storage.join(run_dir.rstrip("/"), FILE)


def read_review_table(run_dir: str) -> pa.Table:
    """review.parquet as an Arrow table, sorted by rank.

    Raises:
        ReviewReadError: When the run has none, or the file is not a review list.
    """
    uri = review_uri(run_dir)
    redo = f"run `sam2flow stitch {run_dir.rstrip('/')}` to write it"
    if not storage.exists(uri):
        if not storage.exists(storage.join(run_dir.rstrip("/"), "manifest.json")):
            raise ReviewReadError(
                f"{run_dir} is not a sam2flow run's output folder (no manifest.json): give OUT/<video_id>"
            )
        raise ReviewReadError(f"{uri} does not exist (the run was made before review lists, or did not finish): {redo}")
    try:
        table = read_table(uri)
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise ReviewReadError(f"{uri} is not a readable Parquet file ({exc}): {redo} again") from exc
    missing = [n for n in REVIEW_SCHEMA.names if n not in table.column_names]
    kind = (table.schema.metadata or {}).get(b"sam2flow")
    if missing or kind != b"review":
        raise ReviewReadError(
            f"{uri} is not a review list (missing {missing or 'its sam2flow=review label'}): {redo} again"
        )
    try:
        return table.select(REVIEW_SCHEMA.names).cast(REVIEW_SCHEMA.remove_metadata()).sort_by("rank")
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ReviewReadError(f"{uri} has columns of the wrong type ({exc}): {redo} again") from exc


def read_review(run_dir: str) -> list[ReviewRow]:
    """The run's review list as typed rows, best first (see `read_review_table` for errors)."""
    c = read_review_table(run_dir).to_pydict()
    return [
        ReviewRow(
            rank=int(c["rank"][i]),
            kind=str(c["kind"][i]),
            frame_start=int(c["frame_start"][i]),
            frame_stop=int(c["frame_stop"][i]),
            time_start=float(c["time_start"][i]),
            track_ids=tuple(int(x) for x in c["track_ids"][i]),
            score=float(c["score"][i]),
            evidence=str(c["evidence"][i]),
            key=str(c["key"][i]),
            reviewed=bool(c["reviewed"][i]),
        )
        for i in range(len(c["rank"]))
    ]


@dataclass(frozen=True)
class ReviewSummary:
    """One video's review list in a line: how many items, how many still to look at, the highest score."""

    items: int
    unreviewed: int
    top_score: float
    top_kind: str


def summarize(rows: list[ReviewRow]) -> ReviewSummary:
    """A summary of a review list (pure)."""
    open_rows = [r for r in rows if not r.reviewed]
    top = max(open_rows, key=lambda r: r.score, default=None)
    return ReviewSummary(len(rows), len(open_rows), top.score if top else 0.0, top.kind if top else "")
