"""The `process_video` flow: one video → masks.parquet, tracks.parquet, annotated.mp4, manifest.json, _SUCCESS."""

from __future__ import annotations

import time
from typing import Annotated, Any, cast
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact
from prefect.exceptions import UnfinishedRun
from prefect.futures import PrefectFuture, as_completed
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import Field

from sam2flow.config import PipelineConfig
from sam2flow.control.runtime import pool_for
from sam2flow.control.scheduling import report_demand
from sam2flow.control.workspace import claim, discard_work
from sam2flow.flows.finetune import finetune_detector
from sam2flow.job import VideoJob
from sam2flow.report import report_markdown
from sam2flow.results import (
    ExtractResult,
    ExtractSummary,
    FinetuneRecord,
    PrepareSummary,
    RenderPieceResult,
    RunStages,
    SegmentResult,
    SegmentSummary,
)
from sam2flow.sources.archive import artifact_slug
from sam2flow.stages.finetune import finetuned_job
from sam2flow.tasks.extract import extract_task
from sam2flow.tasks.finalize import finalize_task
from sam2flow.tasks.prepare import prepare_task
from sam2flow.tasks.render import render_piece_task, render_task
from sam2flow.tasks.segment import segment_task
from sam2flow.tasks.stitch import stitch_task


class _Schedule:
    """Extraction, segmentation and render-piece tasks of one video, submitted a few at a time.

    Only the subsequences the workers can take next are submitted (each submitted task holds a thread of the task
    runner while it waits), so render pieces start as soon as their subsequences are done instead of queueing behind
    the whole video, and what is kept per subsequence after it is done is a small result record.
    """

    def __init__(self, job: VideoJob, config: PipelineConfig) -> None:
        self.job, self.config = job, config
        rt = config.runtime
        self.ahead = pool_for(rt).size + rt.extract_workers  # extracted-but-not-segmented subsequences at most
        self.extracts: dict[int, PrefectFuture[ExtractResult]] = {}
        self.segments: dict[int, PrefectFuture[SegmentResult]] = {}
        self.pieces: list[PrefectFuture[RenderPieceResult]] = []
        self.extracted: list[ExtractResult] = []
        self.segmented: list[SegmentResult] = []
        self.done: set[int] = set()
        self.next_index = self.next_piece = 0

    def fill(self) -> None:
        """Submit the next subsequences, up to the lookahead."""
        rt = self.config.runtime
        while self.next_index < len(self.job.plan) and len(self.segments) < self.ahead:
            i = self.next_index
            before = self.extracts.get(i - rt.extract_workers)  # at most extract_workers extractions at once
            ext = extract_task.submit(self.job, i, self.config, wait_for=[before] if before else [])  # type: ignore[call-overload]
            after: list[PrefectFuture[Any]] = [ext]
            if self.config.chunking.mode == "carry" and i - 1 in self.segments:
                after.append(self.segments[i - 1])  # carry: each starts from the previous one's masks
            self.extracts[i] = ext
            self.segments[i] = segment_task.submit(self.job, i, self.config, wait_for=after)  # type: ignore[call-overload]
            self.next_index += 1

    def settle(self) -> None:
        """Wait until every submitted task has ended (after a failure or a stop request they end within a frame),
        so that nothing writes into the work folder once it is discarded."""
        futures: list[PrefectFuture[Any]] = [*self.extracts.values(), *self.segments.values(), *self.pieces]
        for fut in futures:
            fut.wait()

    def demand(self) -> int:
        """Subsequences still to segment that could run now (carry mode: the next one, and the one after it)."""
        left = len(self.job.plan) - len(self.done)
        return min(left, 2) if self.config.chunking.mode == "carry" else left

    def next_result(self) -> SegmentResult:
        """Wait for the next segmentation to finish; on failure raise the cause (an extraction's own error first)."""
        fut = next(iter(as_completed(list(self.segments.values()))))
        index = next(i for i, f in self.segments.items() if f is fut)
        try:
            result = fut.result()
        except UnfinishedRun:
            self.extracts[index].result()  # raises the extraction's error (e.g. a truncated file), naming the input
            raise
        del self.segments[index]
        self.extracted.append(self.extracts.pop(index).result())
        self.segmented.append(result)
        self.done.add(index)
        return result

    def draw_ready_pieces(self) -> None:
        """Submit the render pieces whose subsequences and every earlier one are segmented (ids depend only on
        earlier subsequences), and forget the pieces already drawn."""
        self.pieces = [p for p in self.pieces if not p.state.is_final()]
        while self.config.render.enabled and self.next_piece in self.done:
            self.pieces.append(render_piece_task.submit(self.job, self.next_piece, self.config))
            self.next_piece += 1


def _segment_locally(schedule: _Schedule, progress_id: UUID) -> None:
    """Segment every subsequence here, drawing each render piece as soon as the subsequences up to it are done."""
    logger = get_run_logger()
    job, config = schedule.job, schedule.config
    n = len(job.plan)
    logger.info("%s: %d subsequence(s) on %d worker(s)", job.video_id, n, pool_for(config.runtime).size)
    schedule.fill()
    report_demand(schedule.demand())
    for k in range(1, n + 1):
        schedule.next_result()
        schedule.fill()
        report_demand(schedule.demand())
        logger.info("%s: segmented %d/%d subsequence(s) (%.0f%%)", job.video_id, k, n, 100.0 * k / n)
        update_progress_artifact(progress_id, 100.0 * k / n)
        schedule.draw_ready_pieces()


@flow(
    name="process_video",
    task_runner=ThreadPoolTaskRunner(max_workers=16),  # type: ignore[arg-type]  # Prefect 3.8 stub generics
    log_prints=True,
    validate_parameters=True,
)
def process_video(
    video: str,
    out: str,
    config: PipelineConfig = PipelineConfig(),
    wait: Annotated[
        bool,
        Field(
            description="When another run is working on this video in the same output folder, wait for it to "
            "finish instead of failing at once."
        ),
    ] = False,
) -> str:
    """Segment and track every object of one video.

    With ``finetune.enabled``, the `finetune_detector` subflow first trains the detector on the first frames.
    Subsequences are extracted to JPEGs on the CPU a few steps ahead of segmentation and segmented in parallel on
    the available workers (each GPU, or the CPU); the annotated video is drawn piece by piece as soon as the
    subsequences before each piece are done; then the tracks are stitched and the pieces joined.

    Args:
        video: Local path or fsspec URI of the input video.
        out: Local folder or fsspec URI; outputs go to ``out/<video_id>/``.
        config: The pipeline configuration.
        wait: Wait for another run of this video into the same folder instead of failing (archive runs wait).

    Returns:
        The output folder ``out/<video_id>``.
    """
    t0 = time.perf_counter()
    job = prepare_task(video, out, config)
    try:
        with claim(job, wait=wait):  # one run at a time per output folder
            return _process(job, config, PrepareSummary(round(time.perf_counter() - t0, 3)), t0)
    except BaseException:
        discard_work(job)  # no frames or render pieces of a failed or stopped run are left behind
        raise


def _process(job: VideoJob, config: PipelineConfig, prepare: PrepareSummary, t0: float) -> str:
    """Everything after `prepare`: fine-tuning, segmentation with early render pieces, stitching, render, finalize."""
    report_demand(1 if config.finetune.enabled else len(job.plan))  # fine-tuning holds one worker
    tuned = finetune_detector(job, config) if config.finetune.enabled else None
    if tuned is not None:
        job = finetuned_job(job, tuned)
    progress_id = cast(  # a sync flow gets the id itself (the function also has an async form)
        UUID,
        create_progress_artifact(
            progress=0.0, key=f"progress-{artifact_slug(job.video_id)}", description=f"sam2flow: {job.video}"
        ),
    )
    schedule = _Schedule(job, config)
    try:
        return _segment_and_finish(schedule, prepare, tuned, progress_id, t0)
    except BaseException:
        schedule.settle()
        raise


def _segment_and_finish(
    schedule: _Schedule, prepare: PrepareSummary, tuned: FinetuneRecord | None, progress_id: UUID, t0: float
) -> str:
    """Segmentation (here, or on Ray), stitching, the render and the manifest; returns the output folder."""
    logger = get_run_logger()
    job, config = schedule.job, schedule.config
    t1 = time.perf_counter()
    if config.runtime.executor == "ray":
        from sam2flow.flows.segment_ray import ray_task_runner, segment_on_ray

        # Ray tasks extract for themselves, and draw no early pieces
        schedule.segmented = segment_on_ray.with_options(task_runner=ray_task_runner(config))(job, config)
        update_progress_artifact(progress_id, 100.0)
        report_demand(0)
    else:
        _segment_locally(schedule, progress_id)
    extracted = schedule.extracted
    segment = SegmentSummary.of(schedule.segmented, time.perf_counter() - t1)
    stitched = stitch_task(job, config)
    for piece in schedule.pieces:  # a piece that failed is simply drawn again by the final render
        piece.wait()
    stages = RunStages(
        prepare=prepare,
        extract=ExtractSummary(round(sum(r.seconds for r in extracted), 3), sum(r.skipped for r in extracted)),
        segment=segment,
        stitch=stitched,
        render=render_task(job, config),
        finetune=tuned,
    )
    out_dir = finalize_task(job, config, stages)
    if config.report.enabled:
        create_markdown_artifact(
            markdown=report_markdown(out_dir), key=f"report-{artifact_slug(job.video_id)}",
            description=f"sam2flow report: {job.video}",
        )  # fmt: skip
    logger.info(
        "%s done in %.1fs: %d track(s), %d mask rows → %s",
        job.video_id, time.perf_counter() - t0, stitched.tracks, stitched.rows, out_dir,
    )  # fmt: skip
    return out_dir
