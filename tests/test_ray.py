"""The segment fan-out on Ray (prefect-ray): a local Ray head on 127.0.0.1, the CPU random model."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.smoke import SQUARES, check_outputs, small_config
from tests.synth import write_clip

VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`ray start --head` on 127.0.0.1 with two CPUs; yields its address."""
    ray = VENV_BIN / "ray"
    if not ray.exists():
        pytest.fail("ray is not installed: it is a dev dependency (scripts/setup.sh)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    temp = tmp_path_factory.mktemp("ray")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    cmd = [str(ray), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
           "--num-gpus=0", "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([str(ray), "stop", "--force"], capture_output=True, env=env)


@pytest.mark.slow
def test_segment_fanout_on_a_local_ray_head(prefect_harness: None, ray_head: str, tmp_path: Path) -> None:
    """Every subsequence is extracted and segmented by a Ray worker process; the outputs are the usual ones."""
    from sam2flow.flows.process_video import process_video

    clip = write_clip(tmp_path / "squares.mp4", frames=48, squares=SQUARES)
    cfg = small_config("runtime.executor=ray", f"runtime.ray_address={ray_head}")
    out = Path(process_video(video=str(clip), out=str(tmp_path / "out"), config=cfg))
    manifest = check_outputs(out, 48, clip)
    subs = manifest["stages"]["segment"]["subsequences"]
    assert [s["index"] for s in subs] == [0, 1]
    assert all(s["pid"] != os.getpid() and s["reused"] is False for s in subs), "segmented in Ray workers"
    assert manifest["stages"]["extract"]["task_seconds"] == 0, "the Ray tasks extracted their own frames"
