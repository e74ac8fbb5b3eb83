"""Reading a flow run's tree (its subflow runs) and artifacts back through the Prefect API, for tests."""

from __future__ import annotations

from typing import Any
from uuid import UUID


def run_tree_artifacts(client: Any, flow_run_id: UUID) -> tuple[set[UUID], list[Any]]:
    """The ids of a flow run and of the subflow runs its tasks started, and every artifact they created."""
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterParentTaskRunId,
        TaskRunFilter,
        TaskRunFilterFlowRunId,
    )

    tasks = client.read_task_runs(
        task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[flow_run_id])), limit=200
    )
    subflows = client.read_flow_runs(
        flow_run_filter=FlowRunFilter(parent_task_run_id=FlowRunFilterParentTaskRunId(any_=[t.id for t in tasks])),
        limit=200,
    )
    ids = {flow_run_id, *(r.id for r in subflows)}
    artifacts = client.read_artifacts(
        artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=list(ids))), limit=200
    )
    return ids, list(artifacts)
