"""Extraction plus segmentation of one subsequence as a single task, for the Ray fan-out (runs on any node)."""

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from sam2flow import pipeline
from sam2flow.config import PipelineConfig


@task(name="segment-ray", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5, task_run_name="segment-{index}")
def segment_ray_task(job: pipeline.VideoJob, index: int, config: PipelineConfig) -> dict[str, Any]:
    """Extract and segment one subsequence on the Ray worker that picked it up; returns a small summary."""
    return pipeline.extract_and_segment(job, index, config)
