"""A small archive for tests: two short clips and a corrupt file, with a config that segments them quickly."""

from __future__ import annotations

from pathlib import Path

from sam2flow.config import PipelineConfig, load_config
from tests.synth import Square, write_clip

ROOT = Path(__file__).resolve().parents[1]

TINY = (
    "detector.enabled=false",
    "prompts=[{frame: 0, box: [20, 60, 70, 110], class_name: square}]",
    "chunking.length=24",
    "chunking.overlap=16",
    "segmenter.max_objects=1",
)


def make_archive(tmp_path: Path) -> tuple[Path, PipelineConfig]:
    """A folder with two small videos and a corrupt one, and a config that segments them quickly on the CPU."""
    archive = tmp_path / "archive"
    archive.mkdir()
    write_clip(archive / "a.mp4", 24, squares=(Square((230, 40, 40), y=60, x0=20, speed=1.0, size=50),))
    write_clip(archive / "b.mp4", 24, squares=(Square((40, 40, 230), y=60, x0=20, speed=-0.5, size=50),))
    (archive / "c_corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")
    return archive, load_config(ROOT / "configs" / "smoke.yaml", list(TINY))
