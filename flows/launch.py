"""How the command line starts flows: the one place outside `flows/` that reaches Prefect comes through here.

`sam2flow.cli` imports this module only inside the commands that run a flow, so the library itself never imports
Prefect.
"""

from __future__ import annotations

from dataclasses import dataclass

from sam2flow.archive import VideoReport
from sam2flow.config import PipelineConfig


def run_video(video: str, out: str, config: PipelineConfig) -> str:
    """Run `process_video` on one video (Prefect's ephemeral mode unless ``PREFECT_API_URL`` is set); returns the
    output folder."""
    from sam2flow.flows.process_video import process_video

    return str(process_video(video=video, out=out, config=config))


@dataclass(frozen=True)
class ArchiveOutcome:
    """What a `process_archive` run reported: one report per video (None when the run itself failed)."""

    reports: list[VideoReport] | None
    message: str


def run_archive(source: str, out: str, pattern: str, config: PipelineConfig, max_in_flight: int) -> ArchiveOutcome:
    """Run `process_archive` over every matching video of ``source``."""
    from sam2flow.flows.process_archive import process_archive

    state = process_archive(
        source=source, out=out, pattern=pattern, config=config, max_in_flight=max_in_flight, return_state=True
    )
    reports = state.result(raise_on_failure=False)
    if not isinstance(reports, list):
        return ArchiveOutcome(None, f"the archive run failed: {state.message or reports}")
    return ArchiveOutcome(reports, state.message or "")


def serve(config: PipelineConfig, source: str | None, out: str | None, pattern: str, cron: str | None) -> None:
    """Serve the process_video and process_archive deployments from this machine until interrupted."""
    from prefect import serve as prefect_serve
    from sam2flow.flows.deployments import build_deployments

    deployments = build_deployments(config, source=source, out=out, pattern=pattern, cron=cron)
    print("serving: " + ", ".join(d.name for d in deployments) + " (Ctrl-C to stop)", flush=True)
    prefect_serve(*deployments)
