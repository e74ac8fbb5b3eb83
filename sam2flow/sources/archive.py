"""Archives: which videos a folder or bucket holds, and which of them are already done with a given config."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

from sam2flow.config import PipelineConfig
from sam2flow.io import access, storage
from sam2flow.job import REPORT_PAGE, SUCCESS, make_video_id
from sam2flow.manifest import ManifestError, read_manifest
from sam2flow.readers.review import ReviewReadError, read_review, summarize

Status = Literal["done", "skipped", "failed"]


@dataclass(frozen=True)
class VideoReport:
    """What happened to one video of an archive run."""

    video: str
    status: Status
    out_dir: str | None = None
    tracks: int | None = None
    frames: int | None = None
    seconds: float = 0.0
    reason: str = ""
    review_items: int | None = None
    """Items of the video's review list (None: it has none)."""
    review_open: int | None = None
    """Of those, how many are not marked reviewed."""
    review_top: float | None = None
    """The highest score of an item not marked reviewed: how likely the video's worst moment is an error."""
    review_top_kind: str = ""


def artifact_slug(name: str, limit: int = 40) -> str:
    """A Prefect artifact key part: lowercase letters, digits and dashes only, plus a short digest of ``name``."""
    stem = re.sub(r"[^a-z0-9]+", "-", name.rsplit("/", 1)[-1].lower()).strip("-")[:limit] or "video"
    return f"{stem}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def list_videos(source: str, pattern: str) -> list[str]:
    """The files under ``source`` (local folder or fsspec URI) matching a glob ``pattern``, sorted.

    ``**`` in the pattern matches sub-folders. Returned names are local paths for local sources, URIs otherwise.

    Raises:
        FileNotFoundError: When ``source`` is not a folder.
    """
    access.check(source, access.INPUT_ROOTS_ENV, "archive source")
    fs, root = storage.filesystem(source)
    if not fs.isdir(root):
        raise FileNotFoundError(f"archive source {source} is not a folder (give a local folder or a URI like s3://b/p)")
    found = sorted(p for p in fs.glob(f"{root.rstrip('/')}/{pattern.lstrip('/')}") if fs.isfile(p))
    if not storage.is_remote(source):
        return [str(p) for p in found]
    return [str(fs.unstrip_protocol(p)) for p in found]


def finished_run(video: str, out: str, cfg: PipelineConfig) -> str | None:
    """The output folder of an earlier complete run of this video (same content) with exactly this config."""
    run_dir = storage.join(out, make_video_id(video, storage.content_digest(video)))
    if not storage.exists(storage.join(run_dir, SUCCESS)):
        return None
    try:
        done_with = read_manifest(run_dir).config
    except ManifestError:  # none, or one this version cannot read: run it again
        return None
    return run_dir if done_with.model_dump(mode="json") == cfg.model_dump(mode="json") else None


def process_one(
    video: str, out: str, cfg: PipelineConfig, run: Callable[[str, str, PipelineConfig], str]
) -> VideoReport:
    """Skip a video already done with this config, else process it with ``run(video, out, cfg)`` (which returns its
    output folder). Any error is reported, never raised: one bad file must not stop an archive."""
    t0 = time.perf_counter()
    try:
        done = finished_run(video, out, cfg)
        if done is not None:
            return _report(video, "skipped", done, reason="already done with this config")
        run_dir = run(video, out, cfg)
        return _report(video, "done", run_dir, seconds=time.perf_counter() - t0)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}".strip()
        return VideoReport(video, "failed", reason=reason.splitlines()[0][:500], seconds=time.perf_counter() - t0)


def _report(video: str, status: Status, run_dir: str, seconds: float = 0.0, reason: str = "") -> VideoReport:
    """The report of a finished run, with its track and frame counts from its manifest."""
    m = read_manifest(run_dir)
    tracks = m.stages.stitch.tracks if m.stages.stitch else None
    report = VideoReport(video, status, run_dir, tracks, m.frames_processed, seconds, reason)
    try:
        s = summarize(read_review(run_dir))
    except ReviewReadError:
        return report
    return replace(report, review_items=s.items, review_open=s.unreviewed, review_top=round(s.top_score, 3),
                   review_top_kind=s.top_kind)  # fmt: skip


def review_first(reports: list[VideoReport]) -> list[dict[str, object]]:
    """The finished videos, worst first (highest open review score, then most open items): what to review first."""
    ranked = sorted(
        (r for r in reports if r.out_dir and r.review_items is not None),
        key=lambda r: (-(r.review_top or 0.0), -(r.review_open or 0), r.video),
    )
    return [
        {"video": r.video, "top_score": r.review_top, "top_kind": r.review_top_kind, "open_items": r.review_open,
         "items": r.review_items, "review": f"sam2flow review {r.out_dir}"}
        for r in ranked
    ]  # fmt: skip


def summary_markdown(report: VideoReport) -> str:
    """The per-video markdown artifact."""
    lines = [f"# {report.video}", "", f"**{report.status}**"]
    if report.out_dir:
        lines += [
            "",
            f"- tracks: {report.tracks}",
            f"- frames: {report.frames}",
            f"- outputs: `{report.out_dir}` (masks.parquet, tracks.parquet, annotated.mp4, manifest.json)",
            f"- report: `{report.out_dir}/{REPORT_PAGE}`",
        ]
    if report.review_items is not None:
        lines.append(
            f"- review list: {report.review_open} open item(s) of {report.review_items}, top score "
            f"{report.review_top} ({report.review_top_kind or 'none'}): `sam2flow review {report.out_dir}`"
        )
    if report.reason:
        lines += ["", f"reason: {report.reason}"]
    return "\n".join(lines)
