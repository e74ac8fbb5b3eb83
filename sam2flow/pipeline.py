"""The stages of one video, as plain functions: the Prefect tasks in `tasks/` wrap them one to one.

Stages exchange a small `VideoJob` (paths, ids, the plan) and the typed records of `sam2flow.results`, never arrays
or models. Where each stage's work lives: probing and extraction in `io/video.py`, segmentation in `segment.py`,
stitching in `stitch.py`, zone events in `events.py`, drawing in `io/render.py`, the manifest in `manifest.py`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np

from sam2flow import corrections, manifest, preflight, stopping
from sam2flow.config import PipelineConfig
from sam2flow.core.planning import owned_ranges, plan_subsequences
from sam2flow.io import lock, storage
from sam2flow.io.checkpoints import ResolvedCheckpoint
from sam2flow.io.frames import FrameStream, extract_frames, frame_limit
from sam2flow.io.parquet import read_times, track_rows_from_table, write_times
from sam2flow.io.render import Overlay, masks_rows, render_range, rows_digest
from sam2flow.io.scratch import own_folder
from sam2flow.io.video import VideoError, concat_videos, frame_times, probe
from sam2flow.job import EVENTS, SUCCESS, VideoJob, make_video_id, span_keys
from sam2flow.models.detector import StoredFrameDetector
from sam2flow.report import build_report
from sam2flow.results import (
    ExtractResult,
    RenderPieceResult,
    RenderResult,
    RunStages,
    SegmentResult,
    SegmentStats,
    StitchResult,
    to_json,
)
from sam2flow.runtime import WorkerSlot, detector_on, pool_for, release_free_memory, segmenter_on
from sam2flow.segment import SegmentSettings, segment_subsequence
from sam2flow.stitch import LinkStore, PartSet, VideoTables, part_rows, stitch_parts

log = logging.getLogger(__name__)

FRAMES_VERSION = "yuv420-model-size"
"""How frames reach the models (part of the part-file digest: a change there makes earlier part files stale)."""


def part_digest(
    cfg: PipelineConfig, sam2: ResolvedCheckpoint, yolo: ResolvedCheckpoint | None, references: str | None = None
) -> str:
    """The folder of a run's part files: the segmentation settings but the manual prompts, and the content of the
    models that run and of the reference library (each file's name adds the prompts inside its subsequence,
    `span_keys`)."""
    models = f"{sam2.sha256}:{yolo.sha256 if yolo else '-'}"
    refs = f":{references}" if references else ""  # absent when unset: earlier digests stay as they were
    return hashlib.sha256(f"{cfg.digest(prompts=False)}:{models}:{FRAMES_VERSION}{refs}".encode()).hexdigest()[:16]


def prepare(video: str, out: str, cfg: PipelineConfig) -> VideoJob:
    """Probe the input, plan subsequences and resolve checkpoints.

    Fails fast (before any heavy work) on a missing or unreadable input or a missing checkpoint. A finished earlier
    run in the same folder keeps its outputs and its ``_SUCCESS`` until this run is about to replace them (`stitch`),
    so a run that fails before then leaves it as it was.
    """
    video = storage.absolute(video)  # recorded in the manifest: it must mean the same from any folder
    info = preflight.check_run(video, out, cfg)
    local = storage.localize(video, storage.cache_root() / "inputs")
    if info is None:  # a remote video: probed once fetched
        info = probe(str(local))
        preflight.check_frame_size(video, info, cfg)
    num_frames = min(info.num_frames, cfg.video.max_frames or info.num_frames)
    plan = tuple(plan_subsequences(num_frames, cfg.chunking.length, cfg.chunking.overlap))
    models = preflight.check_models(cfg)  # no detector model with fine-tuning: the trained one comes later
    sam2, yolo = models.sam2, models.yolo
    video_id = make_video_id(video, storage.content_digest(str(local)))
    out_dir = storage.join(out, video_id)
    refs = preflight.check_references(cfg)
    digest = part_digest(cfg, sam2, yolo, refs.digest if refs else None)
    storage.makedirs(out_dir)
    times_uri = storage.join(out_dir, "timestamps.parquet")
    if not storage.exists(times_uri):  # the same for every run of this video id: written once
        write_times(times_uri, frame_times(str(local), info))
    work = own_folder(preflight.work_dir_root(cfg) / video_id)
    fixes = corrections.load(out_dir)
    extra = tuple(fixes.prompts) if fixes else ()
    if fixes is not None:
        log.info("%s: applying %s (%d prompt(s))", video_id, corrections.FILE, len(extra))
    keys = span_keys(plan, [*cfg.prompts, *extra], carry=cfg.chunking.mode == "carry")
    job = VideoJob(video, str(local), video_id, out_dir, str(work), info, num_frames, plan, digest, sam2, yolo,
                   span_keys=keys, extra_prompts=extra)  # fmt: skip
    if job.random_weights:
        log.warning("RANDOM WEIGHTS: %s uses randomly initialised models; masks are meaningless", video_id)
    log.info(
        "%s: %d frames %dx%d @ %s fps → %d subsequence(s) of %d (overlap %d)",
        video_id, num_frames, info.width, info.height, info.fps, len(plan), cfg.chunking.length, cfg.chunking.overlap,
    )  # fmt: skip
    return job


@contextlib.contextmanager
def claim(job: VideoJob, wait: bool = False) -> Iterator[None]:
    """Hold the run's output folder for the block (see `sam2flow.io.lock`), first clearing what a killed run left.

    Raises:
        FolderBusyError: When another run holds the folder and ``wait`` is False.
    """
    with lock.hold(job.out_dir, wait=wait, what=job.video):
        # Half-written files of a killed run (never reused: only complete files have their final name). Holding the
        # folder, no other run can be writing them.
        fs, folder = storage.filesystem(job.out_dir)
        for stale in fs.glob(f"{folder}/parts/*/*.tmp-*") + fs.glob(f"{folder}/*.tmp-*"):
            fs.rm(stale)
        yield


def discard_work(job: VideoJob) -> None:
    """Remove a run's work folder (extracted frames, render pieces): after it fails or is stopped."""
    close_streams(job)
    shutil.rmtree(job.work_dir, ignore_errors=True)


_STREAMS: dict[str, FrameStream] = {}
_STREAMS_LOCK = threading.Lock()


def extract(job: VideoJob, index: int, cfg: PipelineConfig, stream: bool = True) -> ExtractResult:
    """Store one subsequence's frames (scaled to what the models need), unless its part file is already complete.

    With one extraction worker (and ``stream``), subsequences are cut in order from one decoder per run
    (`FrameStream`, closed by `close_streams`); otherwise each is decoded on its own, seeking to its start.
    """
    stopping.check()
    t0 = time.perf_counter()
    if job.part_done(index):
        return ExtractResult(index, skipped=True, seconds=0.0)
    sub, folder, limit = job.plan[index], job.frames_dir(index), frame_limit(cfg)
    if stream and cfg.runtime.extract_workers == 1:
        with _STREAMS_LOCK:
            if job.work_dir not in _STREAMS:
                _STREAMS[job.work_dir] = FrameStream(job.local_video, job.info, limit, cfg.chunking.overlap)
            decoder = _STREAMS[job.work_dir]
        decoder.extract(sub, folder)
    else:
        extract_frames(job.local_video, job.info, sub, folder, limit)
    return ExtractResult(index, skipped=False, seconds=time.perf_counter() - t0)


def close_streams(job: VideoJob) -> None:
    """End the run's frame decoder (`extract`), once every subsequence is extracted or the run stops."""
    with _STREAMS_LOCK:
        decoder = _STREAMS.pop(job.work_dir, None)
    if decoder is not None:
        decoder.close()


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
    if not cfg.output.keep_frames:
        shutil.rmtree(job.frames_dir(index), ignore_errors=True)
    rss = _rss_mib()
    log.info(
        "subsequence %d/%d done: %d object(s), masks on %d/%d frames, %.1fs (%.2f s/frame), RSS %.0f MiB",
        index + 1, len(job.plan), stats.objects, stats.frames_with_masks, stats.frames, stats.seconds,
        stats.seconds / max(stats.frames, 1), rss,
    )  # fmt: skip
    return SegmentResult.from_stats(stats, slot.device, rss, slot.name, held)


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


def _parts(job: VideoJob) -> PartSet:
    return PartSet(job.plan, tuple(job.part_uris()), job.info.height, job.info.width)


def stitch(job: VideoJob, cfg: PipelineConfig) -> StitchResult:
    """Build masks.parquet and tracks.parquet (and, with zones, events.parquet) from the part files.

    This is where a run starts replacing the outputs of an earlier one, so the earlier ``_SUCCESS`` goes first.
    """
    stopping.check()
    t0 = time.perf_counter()
    close_streams(job)  # every subsequence is extracted by now
    storage.remove(job.output(SUCCESS))
    times = _times(job)
    target = VideoTables(
        job.video_id,
        times,
        job.output("masks.parquet"),
        job.output("tracks.parquet"),
        metadata={"video_id": job.video_id, "random_weights": str(job.random_weights).lower()},
    )
    result = stitch_parts(_parts(job), cfg.stitching.rule(), target, corrections.load(job.out_dir))
    log.info(
        "%s: %d track(s), %d mask rows, %d boundary match(es)", job.video_id, result.tracks, result.rows, result.matches
    )
    events = None
    if cfg.zones.regions:
        from sam2flow.events import write_events

        events = write_events(
            job.output("masks.parquet"), job.output(EVENTS), cfg.zones, job.video_id, times, job.num_frames
        )
        log.info("%s: %d zone event(s) (%d enter, %d exit)", job.video_id, events.events, events.enters, events.exits)
    else:
        storage.remove(job.output(EVENTS))
    return replace(result, seconds=time.perf_counter() - t0, events=events)


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


def _times(job: VideoJob) -> np.ndarray:
    """When each frame is shown (from timestamps.parquet; ``frame / fps`` for runs made before it existed)."""
    if storage.exists(job.times_uri):
        return read_times(job.times_uri)
    return np.arange(job.info.num_frames, dtype=np.float64) / job.info.fps_float


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
    parts = _parts(job)
    links = LinkStore(job.render_dir / "links", parts, cfg.stitching.rule()).state(index)
    rows = track_rows_from_table(part_rows(parts, index, links.track_of, links.classes()))
    overlay = _overlay(job, cfg)
    mp4, meta = _piece(job, index)
    mp4.parent.mkdir(parents=True, exist_ok=True)
    frames = parts.owned[index]
    render_range(job.local_video, job.info, frames, rows, mp4, overlay, _times(job))
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
    times = _times(job)
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


def finalize(job: VideoJob, cfg: PipelineConfig, stages: RunStages) -> str:
    """Write manifest.json and the report, check the outputs exist, then write ``_SUCCESS`` last. Returns the output
    folder."""
    stopping.check()
    written = manifest.write_manifest(job, cfg, to_json(stages))
    if cfg.report.enabled:
        build_report(job.out_dir, complete=False)
    manifest.mark_complete(job, written["outputs"])
    if not cfg.output.keep_frames:
        shutil.rmtree(job.work_dir, ignore_errors=True)
    return job.out_dir


def _rss_mib() -> float:
    import psutil

    return float(psutil.Process().memory_info().rss) / 2**20
