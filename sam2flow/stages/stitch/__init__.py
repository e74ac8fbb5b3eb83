"""The stitch stage: the part files become masks.parquet and tracks.parquet (one track id per object across the
video), with the run's corrections applied and, with zones, events.parquet.

Its parts: `parts` (reading part files, matching neighbouring subsequences with the pure rule of
`sam2flow.core.stitching`, writing the tables), `corrections` (corrections.yaml), `events` (zone events),
`review` (review.parquet, the ranked list of moments most likely wrong) and `restitch` (`sam2flow stitch`: the
stage again on a finished run, with no model).
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from sam2flow.config import PipelineConfig
from sam2flow.control import stopping
from sam2flow.core.review.seams import Seam
from sam2flow.io import storage
from sam2flow.io.parquet import read_times, write_times
from sam2flow.io.video import VideoError, frame_times
from sam2flow.job import EVENTS, SUCCESS, VideoJob
from sam2flow.results import StitchResult
from sam2flow.stages.stitch import corrections
from sam2flow.stages.stitch.parts import PartSet, VideoTables, stitch_parts
from sam2flow.stages.stitch.review import FILE as REVIEW
from sam2flow.stages.stitch.review import ReviewInputs, write_review

log = logging.getLogger(__name__)


def part_set(job: VideoJob, cfg: PipelineConfig) -> PartSet:
    """The run's part files, as the stitcher reads them, with the ``obj_id`` of every prompt it segmented (the
    config's and the corrections')."""
    own = [p.obj_id for p in cfg.prompts if p.obj_id is not None]
    prompted = frozenset([*own, *(p.obj_id for p in job.extra_prompts if p.obj_id is not None)])
    return PartSet(job.plan, tuple(job.part_uris()), job.info.height, job.info.width, prompted, max(own, default=0) + 1)


def stitch(job: VideoJob, cfg: PipelineConfig) -> StitchResult:
    """Build masks.parquet and tracks.parquet (and, with zones, events.parquet) from the part files.

    This is where a run starts replacing the outputs of an earlier one, so the earlier ``_SUCCESS`` goes first.
    """
    stopping.check()
    t0 = time.perf_counter()
    storage.remove(job.output(SUCCESS))
    times = times_of(job)
    target = VideoTables(
        job.video_id,
        times,
        job.output("masks.parquet"),
        job.output("tracks.parquet"),
        metadata={"video_id": job.video_id, "random_weights": str(job.random_weights).lower()},
    )
    parts, rule, fixes = part_set(job, cfg), cfg.stitching.rule(), corrections.load(job.out_dir)
    seams: list[Seam] = []
    result = stitch_parts(parts, rule, target, fixes, seams)
    log.info(
        "%s: %d track(s), %d mask rows, %d boundary match(es)", job.video_id, result.tracks, result.rows, result.matches
    )
    events = None
    if cfg.zones.regions:
        from sam2flow.stages.stitch.events import write_events

        events = write_events(
            job.output("masks.parquet"), job.output(EVENTS), cfg.zones, job.video_id, times, job.num_frames
        )
        log.info("%s: %d zone event(s) (%d enter, %d exit)", job.video_id, events.events, events.enters, events.exits)
    else:
        storage.remove(job.output(EVENTS))
    marks = frozenset(fixes.reviewed if fixes is not None else ())
    inputs = ReviewInputs(job.video_id, parts, target.masks_uri, job.output(REVIEW), times, seams, rule, marks)
    return replace(result, seconds=time.perf_counter() - t0, events=events, review=write_review(inputs))


def write_missing_times(job: VideoJob) -> str | None:
    """Write timestamps.parquet for a run made before it existed (before variable frame rates were supported): from
    the video's timestamps when it is readable here, else ``frame / fps`` (what such a run used). Returns where the
    times came from, or None when the run has them already."""
    if storage.exists(job.times_uri):
        return None
    times, source = None, "frame / fps (its video is not readable here)"
    if Path(job.local_video).is_file():
        with contextlib.suppress(VideoError):
            times, source = frame_times(job.local_video, job.info), "the video's timestamps"
    if times is None:
        times = np.arange(job.info.num_frames, dtype=np.float64) / job.info.fps_float
    write_times(job.times_uri, times)
    log.info("%s: the run had no timestamps.parquet; wrote it from %s", job.video_id, source)
    return source


def times_of(job: VideoJob) -> np.ndarray:
    """When each frame is shown (from timestamps.parquet; ``frame / fps`` for runs made before it existed)."""
    if storage.exists(job.times_uri):
        return read_times(job.times_uri)
    return np.arange(job.info.num_frames, dtype=np.float64) / job.info.fps_float
