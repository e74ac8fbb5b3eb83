"""Where a run may read and write, as the operator allows it: folders or URI prefixes named in the environment of
the process that runs flows (`sam2flow serve` sets them from its options), never by a run's own parameters.

Unset, a root list allows everything: a person running `sam2flow run` on their own machine is the operator.
"""

from __future__ import annotations

import os
from pathlib import Path

from sam2flow.errors import InputError
from sam2flow.io import storage

INPUT_ROOTS_ENV = "SAM2FLOW_INPUT_ROOTS"
"""Folders or URI prefixes (separated by ``os.pathsep``) that runs may read videos from."""
OUTPUT_ROOTS_ENV = "SAM2FLOW_OUTPUT_ROOTS"
"""Folders or URI prefixes (separated by ``os.pathsep``) that runs may write results under."""


class AccessError(InputError):
    """A run named a place outside the folders the operator allows."""


def roots(env: str) -> list[str]:
    """The roots listed in environment variable ``env`` (empty: no restriction set)."""
    return [r for r in os.environ.get(env, "").split(os.pathsep) if r.strip()]


def add_roots(env: str, extra: list[str]) -> None:
    """Append roots to ``env`` in this process (its flow runs and workers inherit them)."""
    if extra:
        os.environ[env] = os.pathsep.join([*roots(env), *extra])


def inside(uri: str, root: str) -> bool:
    """Whether ``uri`` is ``root`` or lies under it (local paths compared after resolving links and ``..``)."""
    if root == "*":
        return True
    if storage.is_remote(uri) or storage.is_remote(root):
        return storage.is_remote(uri) and storage.is_remote(root) and (uri + "/").startswith(root.rstrip("/") + "/")
    return Path(uri).expanduser().resolve().is_relative_to(Path(root).expanduser().resolve())


def check(uri: str, env: str, what: str) -> None:
    """Refuse ``uri`` when ``env`` lists roots and none holds it.

    Raises:
        AccessError: Naming the place, the allowed roots and how the operator changes them.
    """
    allowed = roots(env)
    if allowed and not any(inside(uri, r) for r in allowed):
        raise AccessError(
            f"{what} {uri} is outside the folders this service may use ({os.pathsep.join(allowed)}); the operator "
            f"sets them with `sam2flow serve --source/--out` (or {env})"
        )
