"""The extract stage: one subsequence's frames, stored scaled to what the models need (`sam2flow.io.frames`).

With one extraction worker, consecutive subsequences are cut in order from one decoder per run (`FrameStream`):
this stage opens it on the first subsequence and closes it after the last one (or when the run stops,
`close_decoder`), so frames two subsequences share are decoded once.
"""

from __future__ import annotations

import threading
import time

from sam2flow.config import PipelineConfig
from sam2flow.control import stopping
from sam2flow.io.frames import FrameStore, FrameStream, extract_frames, frame_limit
from sam2flow.job import VideoJob
from sam2flow.results import ExtractResult

_DECODERS: dict[str, FrameStream] = {}
"""The open decoder of each run in this process, by its work folder."""
_DECODERS_LOCK = threading.Lock()


def extract(job: VideoJob, index: int, cfg: PipelineConfig, stream: bool = True) -> ExtractResult:
    """Store one subsequence's frames (scaled to what the models need), unless its part file is already complete.

    With one extraction worker (and ``stream``), subsequences are cut in order from the run's decoder, which is closed
    once the last subsequence is done; otherwise each is decoded on its own, seeking to its start.
    """
    stopping.check()
    t0 = time.perf_counter()
    try:
        if job.part_done(index):
            return ExtractResult(index, skipped=True, seconds=0.0)
        sub, folder, limit = job.plan[index], job.frames_dir(index), frame_limit(cfg)
        if stream and cfg.runtime.extract_workers == 1:
            _decoder(job, cfg, limit).extract(sub, folder)
        else:
            extract_frames(job.local_video, job.info, sub, folder, limit, FrameStore.of(cfg))
        return ExtractResult(index, skipped=False, seconds=time.perf_counter() - t0)
    finally:
        if index == len(job.plan) - 1:
            close_decoder(job)


def _decoder(job: VideoJob, cfg: PipelineConfig, limit: int) -> FrameStream:
    with _DECODERS_LOCK:
        if job.work_dir not in _DECODERS:
            _DECODERS[job.work_dir] = FrameStream(
                job.local_video, job.info, limit, cfg.chunking.overlap, FrameStore.of(cfg)
            )
        return _DECODERS[job.work_dir]


def close_decoder(job: VideoJob) -> None:
    """End the run's decoder, if it has one open (after its last subsequence, or when the run fails or stops)."""
    with _DECODERS_LOCK:
        decoder = _DECODERS.pop(job.work_dir, None)
    if decoder is not None:
        decoder.close()
