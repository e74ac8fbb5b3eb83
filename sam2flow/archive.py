"""Archives: which videos a folder or bucket holds, and which of them are already done with a given config."""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import asdict, dataclass
from typing import Any, Literal

from sam2flow.config import PipelineConfig
from sam2flow.io import storage

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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    fs, root = storage.filesystem(source)
    if not fs.isdir(root):
        raise FileNotFoundError(f"archive source {source} is not a folder (give a local folder or a URI like s3://b/p)")
    found = sorted(p for p in fs.glob(f"{root.rstrip('/')}/{pattern.lstrip('/')}") if fs.isfile(p))
    if not storage.is_remote(source):
        return [str(p) for p in found]
    return [str(fs.unstrip_protocol(p)) for p in found]


def finished_run(video: str, out: str, cfg: PipelineConfig) -> str | None:
    """The output folder of an earlier complete run of this video (same content) with exactly this config."""
    from sam2flow.pipeline import SUCCESS, make_video_id

    run_dir = storage.join(out, make_video_id(video, storage.content_digest(video)))
    manifest_uri = storage.join(run_dir, "manifest.json")
    if not (storage.exists(storage.join(run_dir, SUCCESS)) and storage.exists(manifest_uri)):
        return None
    manifest = json.loads(storage.read_bytes(manifest_uri))
    if manifest.get("config") != cfg.model_dump(mode="json"):
        return None
    return run_dir


def process_one(video: str, out: str, cfg: PipelineConfig, run: Any) -> VideoReport:
    """Skip a video already done with this config, else process it with ``run(video, out, cfg)`` (which returns its
    output folder). Any error is reported, never raised: one bad file must not stop an archive."""
    t0 = time.perf_counter()
    try:
        done = finished_run(video, out, cfg)
        if done is not None:
            return VideoReport(video, "skipped", done, **_counts(done), reason="already done with this config")
        run_dir = run(video, out, cfg)
        return VideoReport(video, "done", run_dir, **_counts(run_dir), seconds=time.perf_counter() - t0)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}".strip()
        return VideoReport(video, "failed", reason=reason.splitlines()[0][:500], seconds=time.perf_counter() - t0)


def _counts(run_dir: str) -> dict[str, Any]:
    """Track count and frames of a finished run, from its manifest."""
    m = json.loads(storage.read_bytes(storage.join(run_dir, "manifest.json")))
    return {"tracks": m.get("stages", {}).get("stitch", {}).get("tracks"), "frames": m.get("frames_processed")}


def summary_markdown(report: VideoReport) -> str:
    """The per-video markdown artifact."""
    lines = [f"# {report.video}", "", f"**{report.status}**"]
    if report.out_dir:
        lines += [
            "",
            f"- tracks: {report.tracks}",
            f"- frames: {report.frames}",
            f"- outputs: `{report.out_dir}` (masks.parquet, tracks.parquet, annotated.mp4, manifest.json)",
        ]
    if report.reason:
        lines += ["", f"reason: {report.reason}"]
    return "\n".join(lines)
