"""How the command line starts flows: the one place outside `flows/` that reaches Prefect comes through here.

`sam2flow.cli` imports this module only inside the commands that run a flow, so the library itself never imports
Prefect.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from sam2flow.config import PipelineConfig
from sam2flow.errors import is_permanent
from sam2flow.sources.archive import VideoReport
from sam2flow.sources.sweep import GridAxis, Metric, SweepRow


class _NoTracebackForInputErrors(logging.Filter):
    """Prefect logs every failed task and flow with its traceback; for bad input (which the command reports in one
    line, and the Prefect UI shows as the run's message) the traceback only buries the message."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None and is_permanent(record.exc_info[1]):
            record.exc_info = None
            record.exc_text = None
        return True


def _quiet_input_errors() -> None:
    """Attach `_NoTracebackForInputErrors` to the handlers Prefect configured (once)."""
    loggers = [logging.getLogger(), *(logging.getLogger(n) for n in list(logging.root.manager.loggerDict))]
    for logger in loggers:
        for handler in getattr(logger, "handlers", []):
            if not any(isinstance(f, _NoTracebackForInputErrors) for f in handler.filters):
                handler.addFilter(_NoTracebackForInputErrors())


def _start_temporary_server() -> None:
    """Without ``PREFECT_API_URL``, start Prefect's temporary server now, one process at a time.

    Every temporary server upgrades the one SQLite database under ``PREFECT_HOME`` when it starts; two runs started
    together would race in that migration (and print the loser's traceback). A file lock makes them take turns.
    The server process shows only its own (``prefect.*``, ``uvicorn``) messages: a run stopped by a signal stops the
    server while its database pool may be resetting a connection, which SQLAlchemy would report with a traceback
    that is no concern of the user's.
    """
    import fcntl
    from pathlib import Path

    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME

    if PREFECT_API_URL.value():
        return
    home = Path(PREFECT_HOME.value())
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".sam2flow-server-start.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        quiet = "PREFECT_LOGGING_ROOT_LEVEL" not in os.environ  # the server process reads it when it starts
        if quiet:
            os.environ["PREFECT_LOGGING_ROOT_LEVEL"] = "CRITICAL"
        try:
            SubprocessASGIServer().start()
        finally:
            if quiet:
                os.environ.pop("PREFECT_LOGGING_ROOT_LEVEL", None)


def run_video(video: str, out: str, config: PipelineConfig) -> str:
    """Run `process_video` on one video (Prefect's temporary server unless ``PREFECT_API_URL`` is set); returns the
    output folder."""
    from sam2flow.flows.process_video import process_video

    _quiet_input_errors()
    _start_temporary_server()
    return str(process_video(video=video, out=out, config=config))


@dataclass(frozen=True)
class ArchiveOutcome:
    """What a `process_archive` run reported: one report per video (None when the run itself failed)."""

    reports: list[VideoReport] | None
    message: str

    @classmethod
    def of(cls, state: Any, what: str) -> ArchiveOutcome:
        """The outcome of a finished flow run's state (its result, or why the run itself failed)."""
        reports = state.result(raise_on_failure=False)
        if not isinstance(reports, list):
            return cls(None, f"the {what} run failed: {state.message or reports}")
        return cls(reports, state.message or "")


def run_archive(
    source: str, out: str, pattern: str, config: PipelineConfig, max_in_flight: int | None
) -> ArchiveOutcome:
    """Run `process_archive` over every matching video of ``source``."""
    from sam2flow.flows.process_archive import process_archive

    _quiet_input_errors()
    _start_temporary_server()
    state = process_archive(
        source=source, out=out, pattern=pattern, config=config, max_in_flight=max_in_flight, return_state=True
    )
    return ArchiveOutcome.of(state, "archive")


def run_stream(
    source: str,
    out: str,
    config: PipelineConfig,
    segment_seconds: float,
    max_in_flight: int,
    pattern: str,
    idle_exit: float | None,
    settle: float,
    retries: int,
) -> ArchiveOutcome:
    """Run `process_stream` until the source ends; its reports, one per segment."""
    from sam2flow.flows.process_stream import process_stream

    _quiet_input_errors()
    _start_temporary_server()
    state = process_stream(
        source=source, out=out, config=config, segment_seconds=segment_seconds, max_in_flight=max_in_flight,
        pattern=pattern, idle_exit=idle_exit, settle=settle, retries=retries, return_state=True,
    )  # fmt: skip
    return ArchiveOutcome.of(state, "stream")


def run_sweep(
    video: str, ground_truth: str, out: str, grid: list[GridAxis], config: PipelineConfig, metric: Metric
) -> list[SweepRow]:
    """Run `process_sweep`; returns one record per setting, best first."""
    from sam2flow.flows.process_sweep import process_sweep

    _quiet_input_errors()
    _start_temporary_server()
    return process_sweep(video=video, ground_truth=ground_truth, out=out, grid=grid, config=config, metric=metric)


def serve(
    config: PipelineConfig, source: str | None, out: str | None, pattern: str, cron: str | None, limit: int
) -> None:
    """Serve the process_video and process_archive deployments from this machine until interrupted, running at most
    ``limit`` flow runs at once (the others wait, scheduled, and start as runs finish)."""
    from prefect import serve as prefect_serve

    from sam2flow.flows.deployments import build_deployments

    deployments = build_deployments(config, source=source, out=out, pattern=pattern, cron=cron, limit=limit)
    names = ", ".join(d.name for d in deployments)
    print(f"serving: {names}, at most {limit} run(s) at once (Ctrl-C to stop)", flush=True)
    prefect_serve(*deployments, limit=limit)
