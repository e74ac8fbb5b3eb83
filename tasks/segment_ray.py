"""Extraction plus segmentation of one subsequence as a single task, for the Ray fan-out (runs on any node)."""

from prefect import task
from prefect.cache_policies import NO_CACHE

from sam2flow.config import PipelineConfig
from sam2flow.job import VideoJob
from sam2flow.results import SegmentResult
from sam2flow.stages import segment as stage
from sam2flow.tasks.retries import retry_unless_permanent


@task(
    name="segment-ray",
    cache_policy=NO_CACHE,
    retries=1,
    retry_delay_seconds=5,
    retry_condition_fn=retry_unless_permanent,
    task_run_name="segment-{index}",
)
def segment_ray_task(job: VideoJob, index: int, config: PipelineConfig) -> SegmentResult:
    """Extract and segment one subsequence on the Ray worker that picked it up; returns a small summary."""
    return stage.extract_and_segment(job, index, config)
