"""The report's "Look here first" section: the review list's top items, each with a strip of annotated frames
around it, so a reader judges each in seconds without opening the video."""

from __future__ import annotations

from html import escape
from pathlib import Path

import numpy as np

from sam2flow.config import PipelineConfig
from sam2flow.io.render import masks_rows, track_colour
from sam2flow.readers.review import ReviewReadError, ReviewRow, read_review
from sam2flow.readers.run import Run
from sam2flow.report import charts, page

STRIP_FRAMES = 4


def strip_frames(row: ReviewRow, num_frames: int, count: int = STRIP_FRAMES) -> list[int]:
    """Frames spread over the item, with one before and one after it when the video has them (pure)."""
    first, last = max(row.frame_start - 1, 0), min(row.frame_stop, num_frames - 1)
    return sorted({round(x) for x in np.linspace(first, last, count)})


def top_items(run: Run, count: int) -> tuple[list[ReviewRow] | None, int]:
    """The first ``count`` items not marked reviewed (None when the run has no readable review list), and how many
    items the list has."""
    try:
        rows = read_review(run.path)
    except ReviewReadError:
        return None, 0
    return [r for r in rows if not r.reviewed][:count], len(rows)


def draw_strips(run: Run, rows: list[ReviewRow], cfg: PipelineConfig, folder: Path) -> dict[int, Path]:
    """One image per item (by rank): its frames with the masks of its tracks (every track for a missed object)."""
    from sam2flow.report import frames_at

    video = run.local_video()
    if video is None or not rows:
        return {}
    wanted = {r.rank: strip_frames(r, run.num_frames) for r in rows}
    images = dict(frames_at(video, run, sorted({f for fs in wanted.values() for f in fs})))
    out: dict[int, Path] = {}
    for r in rows:
        tiles = []
        for f in wanted[r.rank]:
            if f not in images:
                continue
            drawn = [m for m in masks_rows(run.file("masks.parquet"), range(f, f + 1))
                     if not r.track_ids or int(m.track_id) in r.track_ids]  # fmt: skip
            tiles.append((f, float(run.times[f]), images[f], drawn))
        if tiles:
            path = folder / f"review_{r.rank}.jpg"
            out[r.rank] = charts.contact_sheet(tiles, cfg.render, [], path, columns=len(tiles), tile_width=240)
    return out


def section(rows: list[ReviewRow] | None, strips: dict[int, Path], total: int) -> str:
    """The section's HTML: one block per item (rank, score, kind, frames, tracks, evidence, strip)."""
    if rows is None:
        return "<p class=muted>This run has no review list (review.parquet); `sam2flow stitch` writes it.</p>"
    if not rows:
        return "<p class=muted>Nothing to look at: the review list is empty or every item is marked reviewed.</p>"
    blocks = [
        f"<p>The {len(rows)} moments most likely wrong, of {total} in <a href='../review.parquet'>review.parquet</a> "
        "(<code>sam2flow review</code> lists them all; the studio's review page steps through them).</p>"
    ]
    for r in rows:
        swatches = "".join(
            f'<span class=swatch style="background:rgb{track_colour(t)}"></span>{t} ' for t in r.track_ids
        )
        head = (f"<p id=review-{r.rank} class=item><b>#{r.rank}</b> · score {r.score:.2f} · <b>{escape(r.kind)}</b> · "
                f"frames {r.frame_start}–{r.frame_stop - 1} ({r.time_start:.2f} s) · tracks {swatches or '—'}<br>"
                f"{escape(r.evidence)}</p>")  # fmt: skip
        blocks.append(head + (page.figure(strips[r.rank], f"Frames of item {r.rank}") if r.rank in strips else ""))
    return "\n".join(blocks)


def markdown(run: Run, count: int) -> list[str]:
    """Markdown lines of the top open items (for the run's Prefect artifact); none without a review list."""
    rows, total = top_items(run, count)
    if not rows:
        return []
    head = f"**Look here first** ({len(rows)} of {total}; `sam2flow review {run.path}` lists them all):"
    lines = [
        head,
        "",
        "| rank | score | kind | frames | tracks | evidence |",
        "| ---: | ---: | --- | --- | --- | --- |",
    ]
    for r in rows:
        tracks = ", ".join(map(str, r.track_ids)) or "-"
        frames = f"{r.frame_start}–{r.frame_stop - 1}"
        evidence = r.evidence.replace("|", "/")
        lines.append(f"| {r.rank} | {r.score:.2f} | {r.kind} | {frames} | {tracks} | {evidence} |")
    return [*lines, ""]
