"""When a failed task is tried again: only when another attempt can succeed (see `sam2flow.errors.is_permanent`)."""

from typing import Any

from sam2flow.errors import is_permanent


def retry_unless_permanent(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect's ``retry_condition_fn``: retry unless the task failed on bad input, a bad checkpoint or no space."""
    exc = getattr(state, "data", None)
    return not (isinstance(exc, BaseException) and is_permanent(exc))
