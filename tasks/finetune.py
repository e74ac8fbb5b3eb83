"""The fine-tune subflow's tasks: track the prompted objects through the first frames, then train YOLO on them."""

from prefect import task
from prefect.cache_policies import NO_CACHE

from sam2flow.config import PipelineConfig
from sam2flow.job import VideoJob
from sam2flow.results import FinetuneRecord, LabelResult
from sam2flow.stages import finetune
from sam2flow.tasks.retries import retry_unless_permanent


@task(
    name="finetune-label",
    cache_policy=NO_CACHE,
    retries=1,
    retry_delay_seconds=5,
    retry_condition_fn=retry_unless_permanent,
)
def finetune_label_task(job: VideoJob, config: PipelineConfig) -> LabelResult:
    """Extract the first frames and track the manual prompts through them (labels.parquet)."""
    return finetune.label(job, config)


@task(
    name="finetune-train",
    cache_policy=NO_CACHE,
    retries=1,
    retry_delay_seconds=10,
    retry_condition_fn=retry_unless_permanent,
)
def finetune_train_task(job: VideoJob, config: PipelineConfig, labelled: LabelResult) -> FinetuneRecord:
    """Build the time-block-split dataset and train the detector; returns the fine-tune record."""
    return finetune.train(job, config, labelled)
