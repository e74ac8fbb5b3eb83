"""Nothing a command started outlives it, however the command ends (SIGKILL and the out-of-memory killer included).

`guard` tags the command's environment with a token that every process it starts inherits (Prefect's temporary
server, ffmpeg, render and extraction decoders, local studio runs, a local Ray instance) and starts a small watchdog
in a session of its own. The watchdog waits for the command to end, by any means, then stops every process that still
carries the token: SIGTERM, and SIGKILL to those still alive a few seconds later. It needs Linux's ``/proc``; elsewhere
`guard` does nothing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

TOKEN_ENV = "SAM2FLOW_RUN_TOKEN"
GRACE_SECONDS = 3.0
PROC = Path("/proc")


def guard() -> str | None:
    """Tag this process's children with a new token and start the watchdog; returns the token (None without /proc)."""
    if not (PROC / str(os.getpid()) / "environ").is_file():
        return None
    token = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}  # the watchdog must not find itself
    os.environ[TOKEN_ENV] = token
    subprocess.Popen(
        [sys.executable, "-m", "sam2flow.control.reaper", str(os.getpid()), token],
        env=env,
        start_new_session=True,  # a signal sent to the command's process group does not stop the watchdog
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return token


def carriers(token: str) -> list[int]:
    """Processes (other than this one) whose environment holds ``token``."""
    needle = f"{TOKEN_ENV}={token}".encode()
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone already, or another user's
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def _wait_for_exit(pid: int) -> None:
    """Return once process ``pid`` (this watchdog's parent) has ended."""
    if os.getppid() != pid:
        return  # it ended before the watchdog started
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # no pidfd (old kernel or Python): poll
        while os.getppid() == pid:
            time.sleep(0.5)
        return
    import select

    try:
        select.select([fd], [], [])
    finally:
        os.close(fd)


def _signal_all(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):  # gone already
            os.kill(pid, sig)


def reap(token: str, grace: float = GRACE_SECONDS) -> int:
    """Stop every process carrying ``token``: SIGTERM, then SIGKILL after ``grace`` seconds; returns how many."""
    victims = carriers(token)
    _signal_all(victims, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and carriers(token):
        time.sleep(0.1)
    _signal_all(carriers(token), signal.SIGKILL)
    return len(victims)


def main(argv: list[str]) -> None:
    """The watchdog: ``python -m sam2flow.control.reaper PID TOKEN``."""
    pid, token = int(argv[0]), argv[1]
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in the terminal is for the command, not for this
    _wait_for_exit(pid)
    reap(token)
    time.sleep(0.5)
    reap(token, grace=1.0)  # anything a dying child started meanwhile


if __name__ == "__main__":
    main(sys.argv[1:])
