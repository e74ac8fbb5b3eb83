"""SAM2 segmentation of one subsequence on a free worker (GPU or CPU)."""

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from sam2flow import pipeline
from sam2flow.config import PipelineConfig


@task(name="segment", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5, task_run_name="segment-{index}")
def segment_task(job: pipeline.VideoJob, index: int, config: PipelineConfig) -> dict[str, Any]:
    """Segment one subsequence and write its part file; returns a small summary."""
    return pipeline.segment(job, index, config)
