"""Deployments of the two flows: served from one machine by `sam2flow serve` (no work pool), or through a work pool
(``work_pool``; infra/prefect.yaml declares the same two for `prefect deploy`).

Both flows take the pipeline config as a typed parameter, so the Prefect UI renders it as a validated form (field
descriptions, choices, bounds from `sam2flow.config`).
"""

from __future__ import annotations

from typing import Any

from prefect.events import DeploymentEventTrigger

from sam2flow.config import PipelineConfig
from sam2flow.flows.process_archive import process_archive
from sam2flow.flows.process_video import process_video
from sam2flow.flows.remote import DEPLOYMENT

NEW_VIDEO_EVENT = "sam2flow.video.created"
"""Emit this event (``resource.id`` = the video's URI) to process a new file, e.g. from an S3 notification forwarded
by a webhook, or `emit_new_video`. Only videos under the served ``source`` start a run; results go to the served
``out`` (an event cannot choose where to write)."""


def new_video_trigger(source: str) -> DeploymentEventTrigger:
    """Start process_video for each `NEW_VIDEO_EVENT` whose video lies under ``source``."""
    return DeploymentEventTrigger(
        name="new video",
        expect={NEW_VIDEO_EVENT},
        match={"prefect.resource.id": f"{source.rstrip('/')}/*"},
        parameters={"video": "{{ event.resource.id }}"},
    )


def emit_new_video(uri: str) -> None:
    """Announce a new video (what a bucket notification or an upload script would do) and wait until it is sent."""
    from prefect.events import emit_event
    from prefect.events.worker import EventsWorker

    emit_event(event=NEW_VIDEO_EVENT, resource={"prefect.resource.id": uri})
    EventsWorker.drain_all(timeout=30)


def build_deployments(
    config: PipelineConfig,
    source: str | None = None,
    out: str | None = None,
    pattern: str = "*.mp4",
    cron: str | None = None,
    work_pool: str | None = None,
    limit: int = 1,
) -> list[Any]:
    """The process_video deployment (UI runs and new-video events) and the process_archive deployment.

    Args:
        config: Default config of both deployments (each run can change it in the UI form; checkpoints named by
            path are still only read from folders the serving process allows).
        source, out, pattern: Default archive parameters (a scheduled run needs them); ``out`` is also where
            process_video writes by default, and new-video events are only taken for videos under ``source``.
        cron: Cron schedule of process_archive (e.g. ``0 2 * * *``); none when empty.
        work_pool: Run through this work pool (scaled-out setup) instead of the serving process.
        limit: process_video runs at once (each loads the models on every GPU it uses; more wait, queued by the
            server); process_archive runs one at a time (its videos already share one set of workers).
    """
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy

    def queued(n: int) -> ConcurrencyLimitConfig:
        return ConcurrencyLimitConfig(limit=n, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE)

    cfg = config.model_dump(mode="json")
    video = process_video.to_deployment(
        name=DEPLOYMENT.split("/", 1)[1],
        parameters={"config": cfg, **({"out": out} if out else {})},
        triggers=[new_video_trigger(source)] if source else [],
        concurrency_limit=queued(limit),
        description="Segment and track every object of one video.",
        tags=["sam2flow"],
        work_pool_name=work_pool,
    )
    archive_params: dict[str, Any] = {"config": cfg, "pattern": pattern}
    if source:
        archive_params["source"] = source
    if out:
        archive_params["out"] = out
    archive = process_archive.to_deployment(
        name="sam2flow-archive",
        parameters=archive_params,
        cron=cron,
        concurrency_limit=queued(1),
        description="Process every new video of an archive; finished ones are skipped.",
        tags=["sam2flow"],
        work_pool_name=work_pool,
    )
    return [video, archive]
