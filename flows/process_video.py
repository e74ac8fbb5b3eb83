"""The `process_video` flow: one video → masks.parquet, tracks.parquet, annotated.mp4, manifest.json, _SUCCESS."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Annotated, Any, cast
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.exceptions import UnfinishedRun
from prefect.futures import PrefectFuture, as_completed
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import Field
from sam2flow.flows.finetune import finetune_detector
from sam2flow.tasks.extract import extract_task
from sam2flow.tasks.finalize import finalize_task
from sam2flow.tasks.prepare import prepare_task
from sam2flow.tasks.render import render_piece_task, render_task
from sam2flow.tasks.segment import segment_task
from sam2flow.tasks.stitch import stitch_task

from sam2flow import pipeline
from sam2flow.archive import artifact_slug
from sam2flow.config import PipelineConfig
from sam2flow.finetune import finetuned_job
from sam2flow.job import VideoJob
from sam2flow.results import (
    ExtractResult,
    ExtractSummary,
    PrepareSummary,
    RenderPieceResult,
    RunStages,
    SegmentResult,
    SegmentSummary,
)
from sam2flow.runtime import pool_for


@dataclass
class _Fanout:
    """The futures of one video's extraction, segmentation and early render tasks."""

    extracts: list[PrefectFuture[ExtractResult]] = field(default_factory=list)
    segments: list[PrefectFuture[SegmentResult]] = field(default_factory=list)
    pieces: list[PrefectFuture[RenderPieceResult]] = field(default_factory=list)


def _result_or_cause(fut: PrefectFuture[SegmentResult], upstream: list[PrefectFuture[ExtractResult]]) -> SegmentResult:
    """A segment task's result; when it never ran because an extraction failed, that extraction's own error."""
    try:
        return fut.result()
    except UnfinishedRun:
        for u in upstream:
            if u.state.is_failed():
                u.result()  # raises the extraction's error (e.g. a truncated file), which names the input
        raise


def _submit(job: VideoJob, config: PipelineConfig) -> _Fanout:
    """Extraction a few steps ahead of segmentation, on this machine's workers."""
    rt = config.runtime
    ahead = pool_for(rt).size + rt.extract_workers  # extracted-but-not-segmented subsequences at most
    fan = _Fanout()
    for i in range(len(job.plan)):
        wait: list[PrefectFuture[Any]] = []
        if i >= rt.extract_workers:
            wait.append(fan.extracts[i - rt.extract_workers])
        if i >= ahead:
            wait.append(fan.segments[i - ahead])
        fan.extracts.append(extract_task.submit(job, i, config, wait_for=wait))  # type: ignore[call-overload]
        # Carry mode: each subsequence starts from the previous one's masks, so they run one after another.
        after = (
            [fan.extracts[i], fan.segments[i - 1]] if config.chunking.mode == "carry" and i > 0 else [fan.extracts[i]]
        )
        fan.segments.append(segment_task.submit(job, i, config, wait_for=after))  # type: ignore[call-overload]
    return fan


def _segment_locally(job: VideoJob, config: PipelineConfig, progress_id: UUID) -> tuple[list[SegmentResult], _Fanout]:
    """Segment every subsequence here, drawing each render piece as soon as the subsequences up to it are done."""
    logger = get_run_logger()
    n = len(job.plan)
    logger.info("%s: %d subsequence(s) on %d worker(s)", job.video_id, n, pool_for(config.runtime).size)
    fan = _submit(job, config)
    results: list[SegmentResult] = []
    done: set[int] = set()
    for k, fut in enumerate(as_completed(fan.segments), start=1):
        result = _result_or_cause(fut, fan.extracts)
        results.append(result)
        done.add(result.index)
        logger.info("%s: segmented %d/%d subsequence(s) (%.0f%%)", job.video_id, k, n, 100.0 * k / n)
        update_progress_artifact(progress_id, 100.0 * k / n)
        # A piece can be drawn once every subsequence up to its own is segmented (ids depend only on earlier ones).
        while config.render.enabled and len(fan.pieces) < n and len(fan.pieces) in done:
            fan.pieces.append(render_piece_task.submit(job, len(fan.pieces), config))
    return results, fan


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
        with pipeline.claim(job, wait=wait):  # one run at a time per output folder
            return _process(job, config, PrepareSummary(round(time.perf_counter() - t0, 3)), t0)
    except BaseException:
        pipeline.discard_work(job)  # no frames or render pieces of a failed or stopped run are left behind
        raise


def _process(job: VideoJob, config: PipelineConfig, prepare: PrepareSummary, t0: float) -> str:
    """Everything after `prepare`: fine-tuning, segmentation with early render pieces, stitching, render, finalize."""
    logger = get_run_logger()
    tuned = finetune_detector(job, config) if config.finetune.enabled else None
    if tuned is not None:
        job = finetuned_job(job, tuned)
    progress_id = cast(  # a sync flow gets the id itself (the function also has an async form)
        UUID,
        create_progress_artifact(
            progress=0.0, key=f"progress-{artifact_slug(job.video_id)}", description=f"sam2flow: {job.video}"
        ),
    )
    t1 = time.perf_counter()
    if config.runtime.executor == "ray":
        from sam2flow.flows.segment_ray import ray_task_runner, segment_on_ray

        seg_results, fan = segment_on_ray.with_options(task_runner=ray_task_runner(config))(job, config), _Fanout()
        update_progress_artifact(progress_id, 100.0)
    else:
        seg_results, fan = _segment_locally(job, config, progress_id)
    extracted = [f.result() for f in fan.extracts]  # none with Ray: its tasks extract for themselves
    segment = SegmentSummary.of(seg_results, time.perf_counter() - t1)
    stitched = stitch_task(job, config)
    for piece in fan.pieces:  # a piece that failed is simply drawn again by the final render
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
    logger.info(
        "%s done in %.1fs: %d track(s), %d mask rows → %s",
        job.video_id, time.perf_counter() - t0, stitched.tracks, stitched.rows, out_dir,
    )  # fmt: skip
    return out_dir
