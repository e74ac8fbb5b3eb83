"""Rendering of the annotated video (CPU)."""

from prefect import task
from prefect.cache_policies import NO_CACHE

from sam2flow.config import PipelineConfig
from sam2flow.job import VideoJob
from sam2flow.results import RenderPieceResult, RenderResult
from sam2flow.stages import render as stage
from sam2flow.tasks.retries import retry_unless_permanent


@task(name="render", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=2, retry_condition_fn=retry_unless_permanent)
def render_task(job: VideoJob, config: PipelineConfig) -> RenderResult:
    """Write annotated.mp4."""
    return stage.render(job, config)


@task(name="render-piece", cache_policy=NO_CACHE, task_run_name="render-piece-{index}")
def render_piece_task(job: VideoJob, index: int, config: PipelineConfig) -> RenderPieceResult:
    """Render the frames one subsequence owns while later ones are still being segmented."""
    return stage.render_piece(job, index, config)
