"""Packaging: the built wheel holds exactly the sam2flow, flows and tasks packages, and sam2flow stays light."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_top_level_packages(tmp_path: Path) -> None:
    """The wheel's top-level packages are sam2flow, flows and tasks, and it ships the checkpoint manifest."""
    src = tmp_path / "src"
    shutil.copytree(
        ROOT, src, ignore=shutil.ignore_patterns(".git", ".venv", "build", "out", "*.egg-info", "__pycache__")
    )
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path), str(src)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("sam2flow-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"sam2flow", "flows", "tasks"}
    assert "sam2flow/checkpoints_manifest.yaml" in names
    assert "sam2flow/core/stitching.py" in names and "flows/process_video.py" in names


def test_import_sam2flow_needs_neither_prefect_nor_torch() -> None:
    """`import sam2flow` and its pure core import neither Prefect, torch, nor the flows/tasks packages."""
    code = (
        "import sys, sam2flow, sam2flow.config, sam2flow.core.planning, sam2flow.core.stitching, sam2flow.core.prompts;"
        "bad = [m for m in ('prefect', 'torch', 'flows', 'tasks', 'ultralytics', 'sam2') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_library_does_not_import_prefect() -> None:
    """No module of the sam2flow package imports Prefect or the flows/tasks packages (DESIGN: logic stays pure)."""
    offenders = []
    for path in (ROOT / "sam2flow").rglob("*.py"):
        for line in path.read_text().splitlines():
            s = line.strip()
            if s.startswith(
                ("import prefect", "from prefect", "from flows", "from tasks", "import flows", "import tasks")
            ):
                offenders.append(f"{path.relative_to(ROOT)}: {s}")
    # The CLI is the one place that starts the flow.
    assert [o for o in offenders if not o.startswith("sam2flow/cli.py")] == []
