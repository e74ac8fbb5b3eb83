"""Stopping `sam2flow run` from outside once segmentation has begun: SIGKILL leaves no process behind (the watchdog
reaps Prefect's temporary server and every ffmpeg); SIGTERM and SIGINT stop the run cleanly (exit 143/130, no
``_SUCCESS``, no half-written file, a message on how to resume) and the same command then resumes it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.synth import Square, write_clip

ROOT = Path(__file__).resolve().parents[1]
MARK = "SAM2FLOW_TEST_MARK"
SETTINGS = (
    "detector.enabled=false",
    "prompts=[{frame: 0, box: [20, 60, 70, 110], class_name: square}]",
    "segmenter.max_objects=1",
    "chunking.length=24",
    "chunking.overlap=16",
)


def _marked(mark: str) -> list[int]:
    """Live processes whose environment carries ``mark`` (zombies have an empty environment)."""
    needle = f"{MARK}={mark}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def _gone_within(mark: str, seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while (alive := _marked(mark)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return alive


class _Run:
    """`sam2flow run` on a 40-frame clip (3 subsequences) in a subprocess, its output collected as it comes."""

    def __init__(self, tmp: Path) -> None:
        self.clip = tmp / "clip.mp4"
        if not self.clip.exists():
            write_clip(self.clip, 40, squares=(Square((230, 40, 40), y=60, x0=20, speed=1.0, size=50),))
        self.out, self.mark = tmp / "out", uuid.uuid4().hex
        args = ["run", str(self.clip), "--config", str(ROOT / "configs" / "smoke.yaml"), "--out", str(self.out)]
        for s in SETTINGS:
            args += ["--set", s]
        env = {**os.environ, MARK: self.mark}
        self.proc = subprocess.Popen([sys.executable, "-m", "sam2flow.cli", *args], cwd=ROOT, env=env, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait_for(self, text: str, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            assert self.proc.poll() is None, "".join(self.lines[-40:])
            assert time.monotonic() < deadline, f"no {text!r} within {timeout}s:\n" + "".join(self.lines[-40:])
            time.sleep(0.1)

    def output(self) -> str:
        time.sleep(0.3)  # the reader thread catches up with the last lines
        return "".join(self.lines)


@pytest.mark.slow
def test_sigkill_leaves_no_process_of_the_run(tmp_path: Path) -> None:
    """SIGKILL of `sam2flow run` leaves no process of the run behind and no _SUCCESS."""
    run = _Run(tmp_path)
    run.wait_for("subsequence 1/3: frame")
    assert len(_marked(run.mark)) >= 2, "the run has children (at least Prefect's temporary server)"
    run.proc.kill()
    run.proc.wait(10)
    alive = _gone_within(run.mark, 10)
    assert not alive, [Path(f"/proc/{p}/cmdline").read_bytes() for p in alive]
    assert not list(run.out.glob("*/_SUCCESS"))


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_run_cleanly_and_it_resumes(tmp_path: Path, sig: signal.Signals) -> None:
    """SIGINT or SIGTERM stops the run cleanly (exit 128+n, no traceback), and the same command resumes it."""
    run = _Run(tmp_path)
    run.wait_for("subsequence 2/3: frame")  # the first subsequence is done, the second under way
    run.proc.send_signal(sig)
    assert run.proc.wait(90) == 128 + sig
    text = run.output()
    assert f"stopped by {sig.name}" in text and "To resume, run the same command again" in text, text[-3000:]
    assert "Traceback" not in text.split(f"{sig.name}: stopping", 1)[-1], text[-3000:]
    alive = _gone_within(run.mark, 10)
    assert not alive, [Path(f"/proc/{p}/cmdline").read_bytes() for p in alive]
    (run_dir,) = run.out.iterdir()
    assert not (run_dir / "_SUCCESS").exists()
    left = [p for p in run_dir.rglob("*") if ".tmp" in p.name]
    assert not left, left
    parts = sorted(run_dir.glob("parts/*/*.parquet"))
    assert parts, "the subsequence finished before the signal is kept"
    if sig != signal.SIGTERM:
        return
    import pyarrow.parquet as pq

    for p in parts:
        pq.read_metadata(p)  # complete files only
    again = _Run(tmp_path)
    assert again.proc.wait(600) == 0, again.output()[-3000:]
    assert not _gone_within(again.mark, 10), "a run that ends normally leaves nothing running either"
    assert (run_dir / "_SUCCESS").is_file()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["stages"]["segment"]["reused"] == len(parts)
