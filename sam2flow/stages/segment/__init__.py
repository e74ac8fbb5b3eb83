"""The segment stage: one subsequence on a free worker (a GPU, or the CPU), its part file written.

The worker pool (`sam2flow.control.runtime`) builds each model once per worker; the subsequence itself is driven by
`sam2flow.stages.segment.driver` (detector at keyframes, SAM2 prompts, propagation) through the model adapters of
`sam2flow.models`.
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import time
from dataclasses import replace
from pathlib import Path

from sam2flow.config import PipelineConfig
from sam2flow.control import stopping
from sam2flow.control.runtime import WorkerSlot, detector_on, pool_for, release_free_memory, segmenter_on
from sam2flow.io import storage
from sam2flow.io.frames import to_jpeg_folder
from sam2flow.job import VideoJob
from sam2flow.models.detector import StoredFrameDetector
from sam2flow.models.precision import resolve as resolve_precision
from sam2flow.results import SegmentResult, SegmentStats
from sam2flow.stages.extract import extract
from sam2flow.stages.segment.driver import SegmentSettings, segment_subsequence

log = logging.getLogger(__name__)


def _segment_on_worker(slot: WorkerSlot, job: VideoJob, index: int, cfg: PipelineConfig) -> SegmentStats:
    """The part of `segment` that runs on the worker's own thread: models (built once), then the subsequence."""
    stopping.check()
    sub = job.plan[index]
    segmenter = segmenter_on(slot, job.sam2, cfg.segmenter)
    detector = StoredFrameDetector(detector_on(slot, job.yolo, cfg.detector)) if job.yolo is not None else None
    step = max(1, sub.length // 4)

    def progress(done: int, total: int) -> None:
        if done % step == 0 or done == total:
            log.info("subsequence %d/%d: frame %d/%d", index + 1, len(job.plan), done, total)

    stats = segment_subsequence(
        segmenter,
        detector,
        job.frames_dir(index),
        sub,
        SegmentSettings.from_config(cfg, job.extra_prompts),
        job.part_uri(index),
        class_names=detector.names if detector else None,
        progress=progress,
        carry_from=job.part_uri(index - 1) if cfg.chunking.mode == "carry" and index > 0 else None,
    )
    release_free_memory()
    return stats


def segment(job: VideoJob, index: int, cfg: PipelineConfig) -> SegmentResult:
    """Segment one subsequence on a free worker; reuses a complete part file from an earlier run."""
    if job.part_done(index):
        log.info("subsequence %d/%d: reusing %s", index + 1, len(job.plan), job.part_uri(index))
        return SegmentResult(index, reused=True)
    with pool_for(cfg.runtime).acquire() as slot:
        started = time.time()
        stats = slot.run(_segment_on_worker, slot, job, index, cfg)
        held = (round(started, 3), round(time.time(), 3))
    if cfg.output.keep_frames:
        to_jpeg_folder(job.frames_dir(index), cfg.video.jpeg_quality)  # files a user can open
    else:
        shutil.rmtree(job.frames_dir(index), ignore_errors=True)
    rss = _rss_mib()
    log.info(
        "subsequence %d/%d done: %d object(s), masks on %d/%d frames, %.1fs (%.2f s/frame), RSS %.0f MiB",
        index + 1, len(job.plan), stats.objects, stats.frames_with_masks, stats.frames, stats.seconds,
        stats.seconds / max(stats.frames, 1), rss,
    )  # fmt: skip
    precision = resolve_precision(cfg.segmenter.precision, slot.device)
    return SegmentResult.from_stats(stats, slot.device, rss, slot.name, held, precision)


def extract_and_segment(job: VideoJob, index: int, cfg: PipelineConfig) -> SegmentResult:
    """Extract and segment one subsequence in one go, on whatever machine runs it (the Ray fan-out).

    The input is read from the job's local copy when this machine has it, else fetched from its URI; the frames
    stay on this machine and the part file goes to the (shared) output folder.
    """
    host, pid = platform.node(), os.getpid()
    if job.part_done(index):
        return SegmentResult(index, reused=True, host=host, pid=pid)
    if not Path(job.local_video).is_file():
        job = replace(job, local_video=str(storage.localize(job.video, storage.cache_root() / "inputs")))
    extract(job, index, cfg, stream=False)  # subsequences arrive here in any order, from any machine
    return replace(segment(job, index, cfg), host=host, pid=pid)


def _rss_mib() -> float:
    import psutil

    return float(psutil.Process().memory_info().rss) / 2**20
