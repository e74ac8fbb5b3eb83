"""Runs started from the studio's Run button: through the served ``process_video`` deployment when a Prefect server
is configured and serves it (through `sam2flow.flows.remote`, the library's one Prefect client), otherwise as a
local ``sam2flow run`` in a process of its own.

Each run answers `status()` with one shape: ``status`` (running/done/failed), ``via`` (deployment/local), ``note``,
``flow_run_url`` (a link to the Prefect UI, once known), ``progress``, ``log_tail``, ``run_dir`` (the finished run's
folder, once known) and ``reason`` (why it failed).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Protocol
from uuid import UUID

from sam2flow.config import PipelineConfig
from sam2flow.flows import remote

LOG_LINES = 15


class StartedRun(Protocol):
    via: str

    def status(self) -> dict[str, Any]: ...


class LocalRun:
    """`sam2flow run` in a child process; its output goes to a log file the status reads."""

    via = "local"

    def __init__(self, video: str, config: str, out: str, log: Path, api: str | None, note: str = "") -> None:
        cmd = [sys.executable, "-m", "sam2flow.cli", "run", video, "--config", config, "--out", out]
        env = {**os.environ, **({"PREFECT_API_URL": api} if api else {})}
        self.log, self.note = log, note
        with open(log, "w") as handle:
            self.proc = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env)

    def status(self) -> dict[str, Any]:
        lines = self.log.read_text(errors="replace").splitlines()
        link = next((line.split("View at ", 1)[1].strip() for line in lines if "View at " in line), None)
        code = self.proc.poll()
        state = "running" if code is None else ("done" if code == 0 else "failed")
        done = [line.split("done in ", 1)[1] for line in lines if "done in " in line and ": " in line]
        return {"status": state, "via": self.via, "note": self.note, "returncode": code, "flow_run_url": link,
                "progress": progress_of(lines), "log_tail": lines[-LOG_LINES:],
                "run_dir": done[-1].split(": ", 1)[1].strip() if done and state == "done" else None,
                "reason": reason_of(lines) if state == "failed" else None}  # fmt: skip


FRAME_LINE = re.compile(r"subsequence (\d+)/(\d+): (?:frame (\d+)/(\d+)|reusing)")
"""What the segment stage logs per subsequence: ``subsequence 2/5: frame 16/64`` or ``subsequence 1/5: reusing …``."""


def progress_of(lines: list[str]) -> list[str]:
    """Segmentation progress from a run's log, frame by frame: ``segmented 45% (subsequence 2/3, frame 16/64)``."""
    done: dict[int, float] = {}
    total, last = 0, ""
    for line in lines:
        m = FRAME_LINE.search(line)
        if m is None:
            continue
        index, total = int(m[1]), int(m[2])
        done[index] = 1.0 if m[3] is None else int(m[3]) / max(int(m[4]), 1)
        last = f"subsequence {index}/{total}" + ("" if m[3] is None else f", frame {m[3]}/{m[4]}")
    if not total:
        return []
    return [f"segmented {100 * sum(done.values()) / total:.0f}% ({last})"]


def reason_of(lines: list[str]) -> str:
    """Why a run failed: its ``error:`` line, else its last line."""
    errors = [line.strip() for line in lines if line.strip().lower().startswith("error")]
    rest = [line.strip() for line in lines if line.strip()]
    return errors[-1] if errors else (rest[-1] if rest else "the run ended without a message")


class DeploymentRun:
    """A flow run of the served deployment, created through the API; its state, progress and logs are read back."""

    via = "deployment"

    def __init__(self, api: str, deployment_id: UUID, parameters: dict[str, Any]) -> None:
        self.api = api
        self.flow_run_id = remote.create_run(api, deployment_id, parameters, tags=["studio"])

    def status(self) -> dict[str, Any]:
        s = remote.read_run(self.api, self.flow_run_id, LOG_LINES)
        return {
            "status": "running" if not s.final else ("done" if s.completed else "failed"),
            "via": self.via,
            "note": f"{s.name}: {s.message}" if s.message else s.name,
            "returncode": None,
            "flow_run_url": s.url,
            "progress": [] if s.progress is None else [f"segmented {s.progress:.0f}%"],
            "log_tail": s.logs,
            "run_dir": None,
            "reason": s.message if s.final and not s.completed else None,
        }


def start(video: str, config_file: str, out: str, config: PipelineConfig, log: Path, deployment: str | None) -> Any:
    """Start one run of ``video`` with the saved ``config_file`` (validated as ``config``) into ``out``.

    Through ``deployment`` when a Prefect server is configured and serves it; otherwise locally (reporting to the
    configured server, if any, whose UI then shows it too). ``deployment=None`` always runs locally. A configured
    server that does not answer is an input error, and nothing starts.
    """
    if deployment is None:
        return LocalRun(video, config_file, out, log, None)
    api = remote.configured_api()
    if api is None:
        return LocalRun(video, config_file, out, log, None)
    found = remote.find_deployment(api, deployment)
    if found is None:
        note = f"{api} serves no {deployment} deployment (start `sam2flow serve`); ran locally"
        return LocalRun(video, config_file, out, log, api, note)
    return DeploymentRun(api, found, {"video": video, "out": out, "config": config.model_dump(mode="json")})
