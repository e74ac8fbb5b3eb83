"""Stopping a run cleanly on SIGINT (Ctrl-C) or SIGTERM.

The command runs its flow on a thread of its own (`supervise`) and keeps the main thread for signals. The first
SIGINT or SIGTERM sets a process-wide stop request; every stage checks it (`check`) between frames and between
subsequences and raises `RunStopped`, so running tasks end within a frame or so, pending ones end at once, half-written
files are removed by their writers, and no ``_SUCCESS`` is written. A second signal ends the process at once (the
`sam2flow.control.reaper` watchdog then stops its children).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

STOP_TIMEOUT_SECONDS = 60.0
"""How long the run may take to stop after the first signal before the process ends anyway."""

_REQUEST = threading.Event()
_SIGNAL: list[int] = []


class RunStopped(BaseException):
    """The run was asked to stop. A BaseException, so that no ``except Exception`` takes it for a failed video."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")

    @property
    def exit_code(self) -> int:
        """128 + the signal number: 130 for SIGINT, 143 for SIGTERM (the shell's convention)."""
        return 128 + self.signum


def request(signum: int) -> None:
    """Ask every stage of this process to stop (what the signal handler does)."""
    if not _REQUEST.is_set():
        _SIGNAL.append(signum)
        _REQUEST.set()


def requested() -> int | None:
    """The signal that asked the run to stop, or None."""
    return _SIGNAL[0] if _REQUEST.is_set() else None


def check() -> None:
    """Raise `RunStopped` when a stop was requested (called between units of work)."""
    signum = requested()
    if signum is not None:
        raise RunStopped(signum)


def _on_signal(signum: int, _frame: Any) -> None:
    if requested() is not None:  # a second signal: stop now
        sys.stderr.write(f"\n{signal.Signals(signum).name} again: exiting without cleaning up\n")
        sys.stderr.flush()
        os._exit(128 + signum)
    sys.stderr.write(f"\n{signal.Signals(signum).name}: stopping the run (send it again to exit at once)…\n")
    sys.stderr.flush()
    request(signum)


def supervise(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` on a thread while the main thread answers SIGINT and SIGTERM with a stop request.

    Returns what ``fn`` returned, or raises what it raised; when a stop was requested and ``fn`` did not finish,
    raises `RunStopped` (whatever ``fn`` raised while stopping is its consequence, not the cause).
    """
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = fn(*args)
        except BaseException as exc:  # handed to the main thread
            outcome["error"] = exc

    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    worker = threading.Thread(target=target, name="sam2flow-run", daemon=True)
    try:
        worker.start()
        while worker.is_alive():
            worker.join(0.2)
            signum = requested()
            if signum is not None:
                worker.join(STOP_TIMEOUT_SECONDS)
                if worker.is_alive():
                    sys.stderr.write(f"the run did not stop within {STOP_TIMEOUT_SECONDS:.0f} s; exiting\n")
                    sys.stderr.flush()
                    os._exit(128 + signum)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if "value" in outcome:
        return outcome["value"]  # type: ignore[no-any-return]
    signum = requested()
    if signum is not None:
        raise RunStopped(signum) from outcome.get("error")
    raise outcome["error"]
