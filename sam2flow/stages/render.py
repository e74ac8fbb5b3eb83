"""The render stage: the annotated video, drawn in pieces (one per subsequence, as soon as the subsequences up to it
are segmented) and joined without re-encoding once the tracks are final."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

from sam2flow.config import PipelineConfig
from sam2flow.control import stopping
from sam2flow.core.planning import owned_ranges
from sam2flow.io import storage
from sam2flow.io.parquet import track_rows_from_table
from sam2flow.io.render import Overlay, masks_rows, render_range, rows_digest
from sam2flow.io.video import concat_videos
from sam2flow.job import VideoJob
from sam2flow.results import RenderPieceResult, RenderResult
from sam2flow.stages.stitch import part_set, times_of
from sam2flow.stages.stitch.parts import LinkStore, part_rows

log = logging.getLogger(__name__)


def _overlay(job: VideoJob, cfg: PipelineConfig) -> Overlay:
    zones = tuple((z.name, tuple(z.polygon)) for z in cfg.zones.regions) if cfg.zones.draw else ()
    banner = "RANDOM WEIGHTS - masks are meaningless" if job.random_weights else None
    return Overlay(cfg.render, banner, zones)


def _piece(job: VideoJob, index: int) -> tuple[Path, Path]:
    """A rendered piece of the annotated video (the frames subsequence ``index`` owns, MPEG-TS) and its digest."""
    return job.render_dir / f"{index:05d}.ts", job.render_dir / f"{index:05d}.json"


def render_piece(job: VideoJob, index: int, cfg: PipelineConfig) -> RenderPieceResult:
    """Render the frames subsequence ``index`` owns while later subsequences are still being segmented.

    Needs the part files of subsequences ``0..index`` (track ids depend only on earlier subsequences). A track's
    class may still change when later parts come in; `render` then redraws the pieces whose content changed.
    """
    stopping.check()
    t0 = time.perf_counter()
    parts = part_set(job, cfg)
    links = LinkStore(job.render_dir / "links", parts, cfg.stitching.rule()).state(index)
    rows = track_rows_from_table(part_rows(parts, index, links.track_of, links.classes()))
    overlay = _overlay(job, cfg)
    mp4, meta = _piece(job, index)
    mp4.parent.mkdir(parents=True, exist_ok=True)
    frames = parts.owned[index]
    render_range(job.local_video, job.info, frames, rows, mp4, overlay, times_of(job))
    meta.write_text(json.dumps({"digest": rows_digest(rows, overlay), "frames": len(frames)}))
    return RenderPieceResult(index, len(frames), time.perf_counter() - t0)


def render(job: VideoJob, cfg: PipelineConfig) -> RenderResult:
    """Write annotated.mp4 from masks.parquet: pieces already rendered during segmentation are kept when they show
    exactly the final rows; the others are rendered now; the pieces are joined without re-encoding and uploaded."""
    t0 = time.perf_counter()
    if not cfg.render.enabled:
        storage.remove(job.output("annotated.mp4"))
        return RenderResult(enabled=False)
    overlay = _overlay(job, cfg)
    times = times_of(job)
    pieces: list[Path] = []
    kept = 0
    owned = owned_ranges(list(job.plan))
    for index, frames in enumerate(owned):
        rows = masks_rows(job.output("masks.parquet"), frames)
        digest = rows_digest(rows, overlay)
        mp4, meta = _piece(job, index)
        if mp4.is_file() and meta.is_file() and json.loads(meta.read_text()).get("digest") == digest:
            kept += 1
        else:
            mp4.parent.mkdir(parents=True, exist_ok=True)
            render_range(job.local_video, job.info, frames, rows, mp4, overlay, times)
            meta.write_text(json.dumps({"digest": digest, "frames": len(frames)}))
            log.info("render: piece %d/%d (frames %d-%d)", index + 1, len(owned), frames.start, frames.stop - 1)
        pieces.append(mp4)
    local = Path(job.work_dir) / "annotated.mp4"
    concat_videos(pieces, local)
    storage.upload(local, job.output("annotated.mp4"))
    local.unlink()
    shutil.rmtree(job.render_dir, ignore_errors=True)
    log.info("render: %d piece(s), %d drawn during segmentation and kept", len(pieces), kept)
    frames_total = sum(len(r) for r in owned)
    return RenderResult(True, frames_total, len(pieces), kept, time.perf_counter() - t0)
