"""One run at a time per output folder: an exclusive lock on ``OUT/<video_id>/.lock`` for as long as a run works in it.

A second run of the same video into the same folder either waits for the first to finish (archive runs, where two
copies of one video may come up together) or stops at once with exit code 2 naming the run that holds the folder
(`sam2flow run`). For an output folder on object storage (``s3://…``) the lock file is kept in the local cache, so it
keeps apart the runs of one machine only: give each machine its own output folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import time
from collections.abc import Iterator
from pathlib import Path

from sam2flow.errors import InputError
from sam2flow.io import storage

LOCK_NAME = ".lock"


class FolderBusyError(InputError):
    """Another run holds the output folder."""


def lock_path(out_dir: str) -> Path:
    """The lock file of an output folder (in it when local, in the cache for object storage)."""
    if storage.is_remote(out_dir):
        key = hashlib.sha256(out_dir.rstrip("/").encode()).hexdigest()[:32]
        return storage.cache_root() / "locks" / f"{key}.lock"
    return Path(out_dir) / LOCK_NAME


def _holder(handle: object) -> str:
    try:
        info = json.loads(Path(str(getattr(handle, "name", ""))).read_text() or "{}")
    except (OSError, ValueError):
        return "another sam2flow run"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(info.get("started", 0))))
    return f"sam2flow run (pid {info.get('pid')} on {info.get('host')}, started {started})"


@contextlib.contextmanager
def hold(out_dir: str, wait: bool = False, what: str = "") -> Iterator[None]:
    """Hold the folder's lock for the block.

    Args:
        out_dir: ``OUT/<video_id>``.
        wait: Wait for a run that holds it to finish, instead of failing.
        what: Written into the lock (e.g. the input), for the message another run shows.

    Raises:
        FolderBusyError: When another run holds the folder and ``wait`` is False.
    """
    path = lock_path(out_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise FolderBusyError(
                f"output folder {out_dir} is in use by {_holder(handle)}; wait for that run to finish (or stop it), "
                "then run again: the finished parts are reused"
            ) from None
        try:
            handle.seek(0)
            handle.truncate()
            info = {"pid": os.getpid(), "host": platform.node(), "started": time.time(), "input": what}
            handle.write(json.dumps(info))
            handle.flush()
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
