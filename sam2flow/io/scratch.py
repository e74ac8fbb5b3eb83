"""Folders of one process's own (``<prefix><host>-<pid>-<random>``): whatever a process of this machine that is gone
left behind (killed, out of memory) is removed before a new one is named, so nothing piles up."""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import uuid
from pathlib import Path


def alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def own_folder(parent: Path, prefix: str = "") -> Path:
    """A new folder name under ``parent`` for this process (not created), after removing the folders there that
    processes of this machine, now gone, named the same way."""
    host = platform.node()
    for old in parent.glob(f"{prefix}{host}-*-*") if parent.is_dir() else []:
        pid = old.name.removeprefix(f"{prefix}{host}-").split("-", 1)[0]
        if pid.isdigit() and not alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    return parent / f"{prefix}{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def remove_folder(path: Path) -> None:
    """Remove a folder named by `own_folder`, and its parent when nothing else is left in it."""
    shutil.rmtree(path, ignore_errors=True)
    with contextlib.suppress(OSError):  # not empty: another run of the same video is working there
        path.parent.rmdir()
