"""JPEG extraction of one subsequence (CPU)."""

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from sam2flow import pipeline
from sam2flow.config import PipelineConfig


@task(name="extract", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=2, task_run_name="extract-{index}")
def extract_task(job: pipeline.VideoJob, index: int, config: PipelineConfig) -> dict[str, Any]:
    """Write one subsequence's JPEGs (skipped when its part file is already complete)."""
    return pipeline.extract(job, index, config)
