"""`sam2flow studio`: a local web app to prompt videos by pointing (points, boxes, zones, SAM2 preview, save and
run a config) and to review finished runs (tracks over the video, merge/split/delete/rename, point and box
corrections saved to corrections.yaml and applied by re-stitching).

It listens on 127.0.0.1 by default, reads and writes only under the roots it is given, and answers only requests
that name its own address as Host, come from its own pages when they change anything, and carry its session token
(`sam2flow.studio.guard`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sam2flow.config import PipelineConfig
from sam2flow.studio.guard import Guard


def serve(roots: list[str], config: PipelineConfig, base_data: dict[str, Any] | None, guard: Guard,
          device: str | list[str] = "cpu", deployment: str | None = None) -> None:  # fmt: skip
    """Run the studio on ``guard``'s address until interrupted (SIGINT or SIGTERM), then remove its scratch folder;
    Run goes through ``deployment`` when a Prefect server serves it."""
    import uvicorn

    from sam2flow.studio.app import create_app

    app = create_app(roots, config, guard, base_data, device, deployment)
    uvicorn.run(app, host=guard.host, port=guard.port, log_level="warning")


def base_data(path: Path | None) -> dict[str, Any] | None:
    """The base config file's own mapping (what Save writes back with the prompts and zones), or None."""
    if path is None:
        return None
    import yaml

    data = yaml.safe_load(path.read_text()) or {}
    return data if isinstance(data, dict) else None
