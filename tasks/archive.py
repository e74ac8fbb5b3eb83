"""One video of an archive: skip it when done, else run the process_video flow on it as a subflow."""

from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from sam2flow.archive import artifact_slug, process_one, summary_markdown
from sam2flow.config import PipelineConfig


@task(name="archive-video", cache_policy=NO_CACHE, task_run_name="video-{video}")
def archive_video_task(video: str, out: str, config: PipelineConfig) -> dict[str, Any]:
    """Process one video of an archive (or skip it); returns its report. Failures are reported, not raised."""
    from flows.process_video import process_video

    def run(v: str, o: str, c: PipelineConfig) -> str:
        return str(process_video(video=v, out=o, config=c))

    report = process_one(video, out, config, run)
    create_markdown_artifact(
        markdown=summary_markdown(report), key=f"video-{artifact_slug(video)}", description=f"sam2flow: {report.status}"
    )
    return report.to_dict()
