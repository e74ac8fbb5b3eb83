"""JPEG extraction of one subsequence (CPU)."""

from prefect import task
from prefect.cache_policies import NO_CACHE

from sam2flow.config import PipelineConfig
from sam2flow.job import VideoJob
from sam2flow.results import ExtractResult
from sam2flow.stages import extract as stage
from sam2flow.tasks.retries import retry_unless_permanent


@task(
    name="extract",
    cache_policy=NO_CACHE,
    retries=1,
    retry_delay_seconds=2,
    retry_condition_fn=retry_unless_permanent,
    task_run_name="extract-{index}",
)
def extract_task(job: VideoJob, index: int, config: PipelineConfig) -> ExtractResult:
    """Write one subsequence's JPEGs (skipped when its part file is already complete)."""
    return stage.extract(job, index, config)
