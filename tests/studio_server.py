"""A real `sam2flow studio` process for tests: started with the command a user types, on a free port, with its own
temporary directory; talked to over real HTTP with the token it printed."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from tests.synth import Square

STUDIO_SQUARES = (
    Square((230, 40, 40), y=60, x0=20, speed=2.0, size=50),
    Square((40, 200, 60), y=150, x0=250, speed=-2.0, size=40),
)
STUDIO_BASE = ["chunking.length=32", "chunking.overlap=16", "detector.enabled=false"]  # Save replaces the prompts
"""The studio tests' clip (two squares) and base config overrides (Save replaces the prompts)."""


def studio_clip(folder: Path) -> Path:
    """``folder`` with the studio tests' clip in it (48 frames, two squares)."""
    from tests.synth import write_clip

    write_clip(folder / "clip.mp4", frames=48, squares=STUDIO_SQUARES)
    return folder


def local_studio(root: Path, tmp: Path) -> StudioProcess:
    """`sam2flow studio` on ``root`` with the smoke config and the base overrides; Run starts local runs."""
    smoke = Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml"
    sets = [a for s in STUDIO_BASE for a in ("--set", s)]
    return StudioProcess(["--root", str(root), "--config", str(smoke), *sets, "--local"], tmp)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class StudioProcess:
    """``sam2flow studio ARGS --port P`` with TMPDIR set to ``tmp``; `client` sends its token and its own Origin."""

    def __init__(self, args: list[str], tmp: Path, timeout: float = 120, env: dict[str, str] | None = None) -> None:
        self.port, self.tmp = free_port(), tmp
        tmp.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **(env or {}), "TMPDIR": str(tmp)}
        cmd = [sys.executable, "-m", "sam2flow.cli", "studio", *args, "--port", str(self.port)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.lines: list[str] = []
        self.url, self.token = self._wait_for_address(timeout)
        self.reader = threading.Thread(target=self.lines.extend, args=(self.proc.stdout,), daemon=True)
        self.reader.start()  # keeps the pipe drained
        self.client = self.session()

    def _wait_for_address(self, timeout: float) -> tuple[str, str | None]:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            found = re.search(r"sam2flow studio on (http://\S+?/)(?:\?token=(\S+))? ", line)
            if found:
                url, token = found.group(1).rstrip("/"), found.group(2)
                break
        else:
            raise RuntimeError("the studio did not start:\n" + "".join(self.lines))
        deadline = time.time() + timeout
        while time.time() < deadline:  # the address is printed just before the server listens
            try:
                httpx.get(url + "/", timeout=2)
                return url, token
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError(f"the studio never answered on {url}")

    def session(self, **headers: str) -> httpx.Client:
        """A client that sends the token and the studio's own Origin (as its pages do), plus ``headers``."""
        base = {"Origin": self.url, **({"Authorization": f"token {self.token}"} if self.token else {}), **headers}
        return httpx.Client(base_url=self.url, headers=base, timeout=600)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Stop the studio the way a user or a service manager does; returns its exit code."""
        self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(30)
        self.reader.join(10)
        return code


def not_blank(path: Path, name: str | None = None) -> bool:
    """Whether a screenshot shows something; with $SAM2FLOW_SCREENSHOTS set (e.g. to docs) and a ``name``, a small
    JPEG of it is kept there under that name (the documentation's pictures are made this way)."""
    import numpy as np
    from PIL import Image

    image = Image.open(path).convert("RGB")
    keep = os.environ.get("SAM2FLOW_SCREENSHOTS")
    if keep and name:
        small = image.crop((0, 0, image.width, min(image.height, 820)))
        small.thumbnail((1000, 1000))
        small.save(Path(keep) / name, quality=70, optimize=True)
    shot = np.asarray(image)
    return bool(shot.std() > 20 and len(np.unique(shot.reshape(-1, 3), axis=0)) > 200)
