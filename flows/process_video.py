"""The `process_video` flow: one video → masks.parquet, tracks.parquet, annotated.mp4, manifest.json, _SUCCESS."""

from __future__ import annotations

import time
from typing import Any, cast
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.exceptions import UnfinishedRun
from prefect.futures import PrefectFuture, as_completed
from prefect.task_runners import ThreadPoolTaskRunner

from flows.finetune import finetune_detector
from sam2flow.archive import artifact_slug
from sam2flow.config import PipelineConfig
from sam2flow.finetune import finetuned_job
from sam2flow.pipeline import VideoJob
from sam2flow.runtime import worker_pool
from tasks.extract import extract_task
from tasks.finalize import finalize_task
from tasks.prepare import prepare_task
from tasks.render import render_piece_task, render_task
from tasks.segment import segment_task
from tasks.stitch import stitch_task


def _sum(results: list[dict[str, Any]], key: str = "seconds") -> float:
    return round(sum(float(r.get(key, 0.0)) for r in results), 3)


def _result_or_cause(fut: PrefectFuture[dict[str, Any]], upstream: list[PrefectFuture[dict[str, Any]]]) -> Any:
    """A segment task's result; when it never ran because an extraction failed, that extraction's own error."""
    try:
        return fut.result()
    except UnfinishedRun:
        for u in upstream:
            if u.state.is_failed():
                u.result()  # raises the extraction's error (e.g. a truncated file), which names the input
        raise


def _segment_locally(
    job: VideoJob,
    config: PipelineConfig,
    progress_id: UUID,
    extracts: list[PrefectFuture[dict[str, Any]]],
    pieces: list[PrefectFuture[dict[str, Any]]],
) -> list[dict[str, Any]]:
    """Extraction a few steps ahead, segmentation on this machine's workers, render pieces as soon as possible."""
    logger = get_run_logger()
    n = len(job.plan)
    rt = config.runtime
    workers = worker_pool(rt.device, rt.workers_per_device, rt.torch_threads).size
    ahead = workers + rt.extract_workers  # extracted-but-not-segmented subsequences at most
    segments: list[PrefectFuture[dict[str, Any]]] = []
    for i in range(n):
        wait = []
        if i >= rt.extract_workers:
            wait.append(extracts[i - rt.extract_workers])
        if i >= ahead:
            wait.append(segments[i - ahead])
        extracts.append(extract_task.submit(job, i, config, wait_for=wait))  # type: ignore[call-overload]
        # Carry mode: each subsequence starts from the previous one's masks, so they run one after another.
        after = [extracts[i], segments[i - 1]] if config.chunking.mode == "carry" and i > 0 else [extracts[i]]
        segments.append(segment_task.submit(job, i, config, wait_for=after))  # type: ignore[call-overload]
    seg_results: list[dict[str, Any]] = []
    done: set[int] = set()
    for k, fut in enumerate(as_completed(segments), start=1):
        result = _result_or_cause(fut, extracts)
        seg_results.append(result)
        done.add(int(result["index"]))
        logger.info("%s: segmented %d/%d subsequence(s) (%.0f%%)", job.video_id, k, n, 100.0 * k / n)
        update_progress_artifact(progress_id, 100.0 * k / n)
        # A piece can be drawn once every subsequence up to its own is segmented (ids depend only on earlier ones).
        while config.render.enabled and len(pieces) < n and len(pieces) in done:
            pieces.append(render_piece_task.submit(job, len(pieces), config))
    return seg_results


@flow(
    name="process_video",
    task_runner=ThreadPoolTaskRunner(max_workers=16),  # type: ignore[arg-type]  # Prefect 3.8 stub generics
    log_prints=True,
    validate_parameters=True,
)
def process_video(video: str, out: str, config: PipelineConfig = PipelineConfig()) -> str:
    """Segment and track every object of one video.

    With ``finetune.enabled``, the `finetune_detector` subflow first trains the detector on the first frames.
    Subsequences are extracted to JPEGs on the CPU a few steps ahead of segmentation and segmented in parallel on
    the available workers (each GPU, or the CPU); the annotated video is drawn piece by piece as soon as the
    subsequences before each piece are done; then the tracks are stitched and the pieces joined.

    Args:
        video: Local path or fsspec URI of the input video.
        out: Local folder or fsspec URI; outputs go to ``out/<video_id>/``.
        config: The pipeline configuration.

    Returns:
        The output folder ``out/<video_id>``.
    """
    logger = get_run_logger()
    t0 = time.perf_counter()
    job = prepare_task(video, out, config)
    t_prepare = time.perf_counter() - t0
    tuned: dict[str, Any] | None = None
    if config.finetune.enabled:
        tuned = finetune_detector(job, config)
        job = finetuned_job(job, tuned)
    n = len(job.plan)
    rt = config.runtime
    if rt.executor == "local":
        workers = worker_pool(rt.device, rt.workers_per_device, rt.torch_threads).size
        logger.info("%s: %d subsequence(s) on %d worker(s)", job.video_id, n, workers)
    progress_id = cast(  # a sync flow gets the id itself (the function also has an async form)
        UUID,
        create_progress_artifact(
            progress=0.0, key=f"progress-{artifact_slug(job.video_id)}", description=f"sam2flow: {job.video}"
        ),
    )

    t1 = time.perf_counter()
    extracts: list[PrefectFuture[dict[str, Any]]] = []
    pieces: list[PrefectFuture[dict[str, Any]]] = []  # annotated video pieces drawn while segmentation goes on
    if rt.executor == "ray":
        from flows.segment_ray import ray_task_runner, segment_on_ray

        seg_results = segment_on_ray.with_options(task_runner=ray_task_runner(config))(job, config)
        update_progress_artifact(progress_id, 100.0)
    else:
        seg_results = _segment_locally(job, config, progress_id, extracts, pieces)
    ext_results = [f.result() for f in extracts]  # none with Ray: its tasks extract for themselves
    t_segment = time.perf_counter() - t1

    stitched = stitch_task(job, config)
    for piece in pieces:  # a piece that failed is simply drawn again by the final render
        piece.wait()
    rendered = render_task(job, config)
    seg_results.sort(key=lambda r: r["index"])
    stages: dict[str, Any] = {
        "prepare": {"wall_seconds": round(t_prepare, 3)},
        "finetune": tuned,
        "extract": {"task_seconds": _sum(ext_results), "skipped": sum(bool(r["skipped"]) for r in ext_results)},
        "segment": {
            "wall_seconds": round(t_segment, 3),
            "task_seconds": _sum(seg_results),
            "sam2_seconds": _sum(seg_results, "sam2_seconds"),
            "reused": sum(bool(r["reused"]) for r in seg_results),
            "subsequences": seg_results,
        },
        "stitch": stitched,
        "render": rendered,
    }
    out_dir = finalize_task(job, config, stages)
    logger.info(
        "%s done in %.1fs: %d track(s), %d mask rows → %s",
        job.video_id, time.perf_counter() - t0, stitched["tracks"], stitched["rows"], out_dir,
    )  # fmt: skip
    return out_dir
