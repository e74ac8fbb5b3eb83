"""The Ray fan-out of segmentation (``runtime.executor: ray``): one prefect-ray task per subsequence."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.futures import PrefectFuture, as_completed

from sam2flow.config import PipelineConfig
from sam2flow.job import VideoJob
from sam2flow.results import SegmentResult
from sam2flow.tasks.segment_ray import segment_ray_task


def ray_task_runner(config: PipelineConfig) -> Any:
    """A prefect-ray task runner for the configured cluster (a new local Ray instance when no address is set)."""
    from prefect_ray import RayTaskRunner

    return RayTaskRunner(address=config.runtime.ray_address, init_kwargs={"include_dashboard": False})


@flow(name="segment_on_ray", validate_parameters=False)
def segment_on_ray(job: VideoJob, config: PipelineConfig) -> list[SegmentResult]:
    """Segment every subsequence as a Ray task (GPUs per task from ``runtime.ray_gpus_per_task``).

    Run it with `ray_task_runner` (``segment_on_ray.with_options(task_runner=ray_task_runner(config))``).
    In carry mode the tasks run one after another.
    """
    import ray
    from prefect_ray.context import remote_options

    logger = get_run_logger()
    gpus = config.runtime.ray_gpus_per_task
    if gpus is None:
        gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0  # type: ignore[no-untyped-call]
    n = len(job.plan)
    logger.info("%s: %d subsequence(s) on Ray (%s GPU(s) per task)", job.video_id, n, gpus)
    futures: list[PrefectFuture[SegmentResult]] = []
    with remote_options(num_gpus=gpus, num_cpus=1):
        for i in range(n):
            wait = [futures[i - 1]] if config.chunking.mode == "carry" and i > 0 else []
            futures.append(segment_ray_task.submit(job, i, config, wait_for=wait))  # type: ignore[call-overload]
    results = []
    for k, fut in enumerate(as_completed(futures), start=1):
        results.append(fut.result())
        logger.info("%s: segmented %d/%d subsequence(s) on Ray", job.video_id, k, n)
    return results
