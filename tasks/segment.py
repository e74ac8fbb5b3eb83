"""SAM2 segmentation of one subsequence on a free worker (GPU or CPU)."""

from prefect import task
from prefect.cache_policies import NO_CACHE

from sam2flow.config import PipelineConfig
from sam2flow.job import VideoJob
from sam2flow.results import SegmentResult
from sam2flow.stages import segment as stage
from sam2flow.tasks.retries import retry_unless_permanent


@task(
    name="segment",
    cache_policy=NO_CACHE,
    retries=1,
    retry_delay_seconds=5,
    retry_condition_fn=retry_unless_permanent,
    task_run_name="segment-{index}",
)
def segment_task(job: VideoJob, index: int, config: PipelineConfig) -> SegmentResult:
    """Segment one subsequence and write its part file; returns a small summary."""
    return stage.segment(job, index, config)
