"""The `process_archive` flow: every matching video of a folder or bucket, a bounded number at a time."""

from __future__ import annotations

from dataclasses import asdict
from queue import SimpleQueue
from typing import Annotated

from prefect import State, flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture
from prefect.states import Completed, Failed
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import Field

from sam2flow.config import PipelineConfig
from sam2flow.control import stopping
from sam2flow.control.runtime import pool_for
from sam2flow.control.scheduling import Backlog, Ticket, admitted
from sam2flow.flows.process_video import process_video
from sam2flow.sources.archive import (
    VideoReport,
    artifact_slug,
    list_videos,
    process_one,
    review_first,
    summary_markdown,
)

SUMMARY_COLUMNS = ("video", "status", "tracks", "frames", "review_open", "review_top", "seconds", "out_dir", "reason")
MAX_IN_FLIGHT = 16
"""Videos of one archive run at once at most (each is a subflow holding a thread of the flow's task runner)."""


def run_video_subflow(video: str, out: str, config: PipelineConfig) -> str:
    """`process_video` as a subflow that waits for another run of the same video into the same folder (two copies of
    one video in an archive share an output folder: the second waits for the first, then reuses it)."""
    return str(process_video(video=video, out=out, config=config, wait=True))


@task(name="archive-video", cache_policy=NO_CACHE, task_run_name="video-{video}")
def archive_video_task(video: str, out: str, config: PipelineConfig, ticket: Ticket) -> VideoReport:
    """Process one video of an archive as a `process_video` subflow (or skip it); returns its report.

    It is a task so that several videos run at once; failures are reported, not raised. While it runs, the video
    tells the archive's `Backlog` (through ``ticket``) how much segmentation it still has.
    """
    with admitted(ticket):
        report = process_one(video, out, config, run_video_subflow)
    create_markdown_artifact(
        markdown=summary_markdown(report), key=f"video-{artifact_slug(video)}", description=f"sam2flow: {report.status}"
    )
    return report


@flow(
    name="process_archive",
    task_runner=ThreadPoolTaskRunner(max_workers=MAX_IN_FLIGHT),  # type: ignore[arg-type]  # Prefect 3.8 stub generics
    log_prints=True,
    validate_parameters=True,
)
def process_archive(
    source: str,
    out: str,
    pattern: str = "*.mp4",
    config: PipelineConfig = PipelineConfig(),
    max_in_flight: Annotated[
        int | None,
        Field(
            ge=1,
            le=MAX_IN_FLIGHT,
            description="Videos processed at the same time at most. Empty: as many as keep every worker busy "
            f"(up to {MAX_IN_FLIGHT}).",
        ),
    ] = None,
) -> State[list[VideoReport]]:
    """Process every video under ``source`` matching ``pattern`` with `process_video`, as subflows.

    Videos share this process's workers (each loads its models once). A new video starts whenever the ones running
    cannot keep every worker busy with a subsequence waiting for each, so many short videos run side by side and a
    long one runs mostly alone. Videos already done with the same content and the same config (their ``_SUCCESS``
    and manifest) are skipped. An unreadable or corrupt file fails alone; the others finish, and the flow ends
    Failed, naming how many failed.

    Args:
        source: Local folder or fsspec URI (``s3://bucket/prefix``) holding the videos.
        out: Output folder or URI; each video's results go to ``out/<video_id>/``.
        pattern: Glob pattern under ``source`` (``**/*.mp4`` includes sub-folders).
        config: The pipeline configuration, applied to every video.
        max_in_flight: How many videos run at once at most (empty: as many as keep the workers busy).

    Returns:
        A state whose result is one `VideoReport` per video (done, skipped or failed, with its reason).
    """
    logger = get_run_logger()
    videos = list_videos(source, pattern)
    slots = 1 if config.runtime.executor == "ray" else pool_for(config.runtime).size
    logger.info("%d video(s) under %s matching %r, %d worker(s)", len(videos), source, pattern, slots)
    reports = _run_all(videos, out, config, Backlog(slots), max_in_flight or MAX_IN_FLIGHT)
    reports.sort(key=lambda r: videos.index(r.video))
    create_table_artifact(
        table=[{k: asdict(r)[k] for k in SUMMARY_COLUMNS} for r in reports],
        key="archive-summary",
        description=f"process_archive {source} ({pattern})",
    )
    worst = review_first(reports)
    if worst:
        create_table_artifact(
            table=worst, key="archive-review", description=f"Videos of {source} to review first (worst first)"
        )
    counts = {s: sum(r.status == s for r in reports) for s in ("done", "skipped", "failed")}
    message = f"{counts['done']} done, {counts['skipped']} skipped, {counts['failed']} failed of {len(videos)}"
    logger.info(message)
    if counts["failed"]:
        return Failed(message=message, data=reports)
    return Completed(message=message, data=reports)


def _run_all(videos: list[str], out: str, config: PipelineConfig, backlog: Backlog, cap: int) -> list[VideoReport]:
    """Start videos while the backlog wants more (at most ``cap`` at once); collect every report."""
    logger = get_run_logger()
    queue = iter(videos)
    running = 0
    finished: SimpleQueue[PrefectFuture[VideoReport]] = SimpleQueue()
    reports: list[VideoReport] = []
    seen = 0

    def on_done(fut: PrefectFuture[VideoReport]) -> None:
        finished.put(fut)
        backlog.wake()

    while len(reports) < len(videos):
        stopping.check()  # a stopped archive starts no more videos; the running ones stop by themselves
        while running < min(cap, len(videos) - len(reports)) and backlog.wants_more():
            archive_video_task.submit(next(queue), out, config, backlog.admit()).add_done_callback(on_done)
            running += 1
        seen = backlog.wait(seen, timeout=5.0)
        while not finished.empty():
            report = finished.get().result()
            running -= 1
            reports.append(report)
            reason = f" ({report.reason})" if report.reason else ""
            logger.info("%d/%d: %s %s%s", len(reports), len(videos), report.status, report.video, reason)
    return reports
