"""The library's one client of a Prefect server: find the served deployment, create a run of it, read its state,
progress and logs back (what the studio's Run button needs when a Prefect server is configured).

Prefect is imported inside the functions, so importing this module (for `DEPLOYMENT`) loads no Prefect. With
`sam2flow.flows.launch` (how the command line starts flows), it is the only door from `sam2flow` to Prefect
(tests/test_packaging.py checks it).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from sam2flow.errors import InputError

DEPLOYMENT = "process_video/sam2flow-video"
"""The deployment `sam2flow serve` (and infra/prefect.yaml) registers for one video."""


@dataclass(frozen=True)
class RemoteRunState:
    """Where a flow run stands: its state, the last progress artifact's value, its newest log lines, a UI link."""

    name: str
    message: str
    final: bool
    completed: bool
    progress: float | None
    url: str
    logs: list[str] = field(default_factory=list)


def configured_api() -> str | None:
    """The Prefect server this process is configured to use (``PREFECT_API_URL``), or None for none."""
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


@contextmanager
def _client(api: str) -> Iterator[Any]:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        yield client


def find_deployment(api: str, name: str) -> UUID | None:
    """The deployment's id, None when the server does not know it; an unreachable server is an input error."""
    from prefect.exceptions import ObjectNotFound

    try:
        with _client(api) as client:
            return UUID(str(client.read_deployment_by_name(name).id))
    except ObjectNotFound:
        return None
    except Exception as exc:  # connection refused, timeouts, HTTP errors: the configured server is unusable
        raise InputError(f"the Prefect server at {api} (PREFECT_API_URL) does not answer: {exc}") from exc


def create_run(api: str, deployment_id: UUID, parameters: dict[str, Any], tags: list[str]) -> UUID:
    """A new flow run of the deployment; the server's workers (or `sam2flow serve`) pick it up."""
    with _client(api) as client:
        run = client.create_flow_run_from_deployment(deployment_id, parameters=parameters, tags=tags)
    return UUID(str(run.id))


def read_run(api: str, flow_run_id: UUID, log_lines: int = 15) -> RemoteRunState:
    """The flow run's state, progress and last ``log_lines`` log messages."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import LogSort
    from prefect.settings import PREFECT_UI_URL

    ids = [flow_run_id]
    with _client(api) as client:
        run = client.read_flow_run(flow_run_id)
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=ids)), limit=log_lines,
                                sort=LogSort.TIMESTAMP_DESC)  # fmt: skip
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=ids)))
    progress = [float(a.data) for a in artifacts if a.type == "progress" and a.data is not None]
    state = run.state
    ui = str(PREFECT_UI_URL.value() or api.rstrip("/").removesuffix("/api"))
    return RemoteRunState(
        name=state.name if state else "Scheduled",
        message=(state.message if state else "") or "",
        final=bool(state and state.is_final()),
        completed=bool(state and state.is_completed()),
        progress=progress[-1] if progress else None,
        url=f"{ui}/runs/flow-run/{flow_run_id}",
        logs=[log.message for log in reversed(logs)],
    )
