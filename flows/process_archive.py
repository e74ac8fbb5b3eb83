"""The `process_archive` flow: every matching video of a folder or bucket, a bounded number at a time."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from prefect import State, flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture, as_completed
from prefect.states import Completed, Failed
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import Field

from sam2flow.archive import VideoReport, artifact_slug, list_videos, process_one, summary_markdown
from sam2flow.config import PipelineConfig
from sam2flow.flows.process_video import process_video

SUMMARY_COLUMNS = ("video", "status", "tracks", "frames", "seconds", "out_dir", "reason")


def _run_video(video: str, out: str, config: PipelineConfig) -> str:
    # Two copies of one video in an archive share an output folder: the second waits for the first, then reuses it.
    return str(process_video(video=video, out=out, config=config, wait=True))


@task(name="archive-video", cache_policy=NO_CACHE, task_run_name="video-{video}")
def archive_video_task(video: str, out: str, config: PipelineConfig) -> VideoReport:
    """Process one video of an archive as a `process_video` subflow (or skip it); returns its report.

    It is a task so that several videos run at once; failures are reported, not raised.
    """
    report = process_one(video, out, config, _run_video)
    create_markdown_artifact(
        markdown=summary_markdown(report), key=f"video-{artifact_slug(video)}", description=f"sam2flow: {report.status}"
    )
    return report


@flow(
    name="process_archive",
    task_runner=ThreadPoolTaskRunner(max_workers=16),  # type: ignore[arg-type]  # Prefect 3.8 stub generics
    log_prints=True,
    validate_parameters=True,
)
def process_archive(
    source: str,
    out: str,
    pattern: str = "*.mp4",
    config: PipelineConfig = PipelineConfig(),
    max_in_flight: Annotated[int, Field(ge=1, le=16, description="Videos processed at the same time.")] = 2,
) -> State[list[VideoReport]]:
    """Process every video under ``source`` matching ``pattern`` with `process_video`, as subflows.

    Videos already done with the same content and the same config (their ``_SUCCESS`` and manifest) are skipped.
    An unreadable or corrupt file fails alone; the others finish, and the flow ends Failed, naming how many failed.

    Args:
        source: Local folder or fsspec URI (``s3://bucket/prefix``) holding the videos.
        out: Output folder or URI; each video's results go to ``out/<video_id>/``.
        pattern: Glob pattern under ``source`` (``**/*.mp4`` includes sub-folders).
        config: The pipeline configuration, applied to every video.
        max_in_flight: How many videos run at once.

    Returns:
        A state whose result is one `VideoReport` per video (done, skipped or failed, with its reason).
    """
    logger = get_run_logger()
    videos = list_videos(source, pattern)
    logger.info("%d video(s) under %s matching %r", len(videos), source, pattern)
    queue = iter(videos)
    running: set[PrefectFuture[VideoReport]] = set()
    reports: list[VideoReport] = []

    def submit_next() -> None:
        video = next(queue, None)
        if video is not None:
            running.add(archive_video_task.submit(video, out, config))

    for _ in range(max_in_flight):
        submit_next()
    while running:
        fut: PrefectFuture[VideoReport] = next(iter(as_completed(list(running))))
        running.discard(fut)
        report = fut.result()
        reports.append(report)
        reason = f" ({report.reason})" if report.reason else ""
        logger.info("%d/%d: %s %s%s", len(reports), len(videos), report.status, report.video, reason)
        submit_next()
    reports.sort(key=lambda r: videos.index(r.video))
    create_table_artifact(
        table=[{k: asdict(r)[k] for k in SUMMARY_COLUMNS} for r in reports],
        key="archive-summary",
        description=f"process_archive {source} ({pattern})",
    )
    counts = {s: sum(r.status == s for r in reports) for s in ("done", "skipped", "failed")}
    message = f"{counts['done']} done, {counts['skipped']} skipped, {counts['failed']} failed of {len(videos)}"
    logger.info(message)
    if counts["failed"]:
        return Failed(message=message, data=reports)
    return Completed(message=message, data=reports)
