"""The `process_stream` flow: a live source (stream URL or folder) processed segment by segment as it records."""

from __future__ import annotations

import contextvars
import queue
import threading
from dataclasses import asdict
from typing import Annotated

from prefect import State, flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture
from prefect.states import Completed, Failed
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import Field

from sam2flow.config import PipelineConfig
from sam2flow.control import stopping
from sam2flow.control.preflight import check_references
from sam2flow.flows.process_archive import SUMMARY_COLUMNS, run_video_subflow
from sam2flow.io import storage
from sam2flow.sources.archive import VideoReport, artifact_slug, process_one
from sam2flow.sources.stream import StreamTracks
from sam2flow.sources.watch import Segment, SourceEnd, is_stream, record_stream, stream_id, watch_folder

MAX_IN_FLIGHT = 8


@task(name="stream-segment", cache_policy=NO_CACHE, task_run_name="segment-{index}")
def stream_segment_task(index: int, video: str, out: str, config: PipelineConfig) -> VideoReport:
    """Process one closed segment as a `process_video` subflow; failures are reported, not raised."""
    return process_one(video, out, config, run_video_subflow)


def _source_thread(
    source: str, folder: str, segment_seconds: float, pattern: str, idle_exit: float | None, settle: float,
    retries: int, segments: queue.SimpleQueue[Segment | SourceEnd], stop: threading.Event,
) -> threading.Thread:  # fmt: skip
    """Record (or watch) the source on a thread of its own, putting each closed segment, then how it ended."""
    from pathlib import Path

    def run() -> None:
        end = SourceEnd(False, 0, 0, "the recorder failed")
        try:
            if is_stream(source):
                end = record_stream(source, Path(folder, "segments"), segment_seconds, segments.put, stop, retries)
            else:
                end = watch_folder(Path(source), pattern, segments.put, stop, idle_exit, settle)
        finally:
            segments.put(end)

    context = contextvars.copy_context()  # its log lines belong to the flow run
    thread = threading.Thread(target=context.run, args=(run,), name="sam2flow-recorder", daemon=True)
    thread.start()
    return thread


@flow(
    name="process_stream",
    task_runner=ThreadPoolTaskRunner(max_workers=MAX_IN_FLIGHT),  # type: ignore[arg-type]  # Prefect 3.8 stub generics
    log_prints=True,
    validate_parameters=True,
)
def process_stream(
    source: str,
    out: str,
    config: PipelineConfig = PipelineConfig(),
    segment_seconds: Annotated[float, Field(gt=0.5, le=3600, description="Length of each recorded segment.")] = 60.0,
    max_in_flight: Annotated[int, Field(ge=1, le=MAX_IN_FLIGHT, description="Segments processed at once.")] = 1,
    pattern: Annotated[str, Field(description="A watched folder's files to take.")] = "*.mp4",
    idle_exit: Annotated[
        float | None, Field(gt=0, description="Folder: end after this many seconds without a new file.")
    ] = None,
    retries: Annotated[int, Field(ge=0, le=100, description="Reconnections in a row before giving up.")] = 5,
    settle: Annotated[
        float, Field(ge=0, le=3600, description="Folder: a file is taken once unchanged for this many seconds.")
    ] = 5.0,
) -> State[list[VideoReport]]:
    """Process a live source as it records: each closed segment becomes a `process_video` run (at most
    ``max_in_flight`` at once, started in order) under ``out/<stream_id>/runs/``, and ``out/<stream_id>/tracks.parquet``
    links the tracks of consecutive segments into stream tracks as each finishes.

    Args:
        source: A stream URL (rtsp, rtmp, http(s)/HLS, tcp or udp MPEG-TS, srt) recorded with ffmpeg's segment muxer
            (no re-encoding) into ``out/<stream_id>/segments/``, or a local folder whose new files are processed.
        out: Output folder.
        config: The pipeline configuration of every segment.
        segment_seconds: Length of each recorded segment (cut at the stream's keyframes).
        max_in_flight: Segments processed at once.
        pattern: Files to take from a watched folder.
        idle_exit: A watched folder ends after this long without a new file (never when empty).
        retries: A stream that fails or drops this many times in a row is given up.
        settle: A watched folder's file is taken once its size and time are unchanged for this long.

    Returns:
        One report per segment; Failed when a segment failed or the stream was given up.
    """
    logger = get_run_logger()
    folder = storage.join(out, stream_id(source))
    runs = storage.join(folder, "runs")
    refs = check_references(config)
    tracks = StreamTracks(folder, config.stitching.rule(), {i.track_id for i in refs.identities} if refs else set())
    segments: queue.SimpleQueue[Segment | SourceEnd] = queue.SimpleQueue()
    stop = threading.Event()
    recorder = _source_thread(source, folder, segment_seconds, pattern, idle_exit, settle, retries, segments, stop)
    logger.info("watching %s → %s (segments of %gs, %d at once)", source, folder, segment_seconds, max_in_flight)
    reports: list[VideoReport] = []
    try:
        end = _process_segments(segments, runs, config, max_in_flight, tracks, reports)
    finally:
        stop.set()
        recorder.join(timeout=30)
    create_table_artifact(
        table=[{k: asdict(r)[k] for k in SUMMARY_COLUMNS} for r in reports],
        key=f"stream-{artifact_slug(source)}",
        description=f"process_stream {source}",
    )
    failed = sum(r.status == "failed" for r in reports)
    how = "ended" if end.ended else f"was given up ({end.reason})"
    message = f"{len(reports)} segment(s), {failed} failed, {end.reconnects} reconnection(s); the source {how}"
    logger.info(message)
    if failed or not end.ended:
        return Failed(message=message, data=reports)
    return Completed(message=message, data=reports)


def _process_segments(
    segments: queue.SimpleQueue[Segment | SourceEnd],
    runs: str,
    config: PipelineConfig,
    max_in_flight: int,
    tracks: StreamTracks,
    reports: list[VideoReport],
) -> SourceEnd:
    """Submit each segment as it closes (at most ``max_in_flight`` running) and add each finished one, in order, to
    the stream's tracks; returns how the source ended once every segment is done."""
    logger = get_run_logger()
    running: list[tuple[Segment, PrefectFuture[VideoReport], threading.Event]] = []
    end: SourceEnd | None = None
    while end is None or running:
        stopping.check()
        while running and (running[0][2].is_set() or len(running) >= max_in_flight or end is not None):
            seg, fut, _ = running.pop(0)
            report = fut.result()
            reports.append(report)
            tracks.add(seg.index, seg.start, report.out_dir if report.status != "failed" else None)
            reason = f" ({report.reason})" if report.reason else ""
            logger.info("segment %d: %s%s", seg.index, report.status, reason)
        if end is not None:
            continue
        try:
            item = segments.get(timeout=0.5)
        except queue.Empty:
            continue
        if isinstance(item, SourceEnd):
            end = item
        else:
            logger.info("segment %d closed: %s", item.index, item.path)
            finished = threading.Event()
            fut = stream_segment_task.submit(item.index, item.path, runs, config)
            fut.add_done_callback(lambda _, flag=finished: flag.set())  # type: ignore[misc]
            running.append((item, fut, finished))
    return end
