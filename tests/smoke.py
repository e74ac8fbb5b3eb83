"""The smoke config shortened for tests, and the checks every finished run's outputs must pass (shared by the
end-to-end, example and Ray tests)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pyarrow.parquet as pq

from sam2flow.config import PipelineConfig, load_config
from sam2flow.core import rle
from sam2flow.io.video import probe
from sam2flow.models.precision import resolve as resolve_precision
from tests.synth import Square

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "smoke.yaml"
SQUARES = (
    Square((230, 40, 40), y=60, x0=20, speed=3.0, size=50),
    Square((40, 200, 60), y=150, x0=250, speed=-2.0, size=40, first=10),
)


SMALL_OVERRIDES = (
    "chunking.length=32",
    "chunking.overlap=16",
    "detector.detect_every=16",
    "segmenter.max_objects=2",
    "prompts=[{frame: 0, box: [20, 60, 70, 110], class_name: square}]",
)


def small_config(*extra: str) -> PipelineConfig:
    """The smoke config, shortened so each run takes well under a minute on a 2-core CPU."""
    return load_config(SMOKE, [*SMALL_OVERRIDES, *extra])


def check_outputs(out_dir: Path, expected_frames: int, source: Path) -> dict:  # type: ignore[type-arg]
    """Every output exists and is consistent; returns the manifest."""
    names = (
        "masks.parquet",
        "tracks.parquet",
        "review.parquet",
        "annotated.mp4",
        "manifest.json",
        "report/report.html",
    )
    for name in (*names, "_SUCCESS"):
        assert (out_dir / name).is_file(), name
    manifest = json.loads((out_dir / "manifest.json").read_text())
    src = probe(str(source))
    assert manifest["random_weights"] is True
    assert (
        manifest["checkpoints"]["sam2"]["random_weights"] is True
        and len(manifest["checkpoints"]["sam2"]["sha256"]) == 64
    )
    assert set(manifest["stages"]) >= {"prepare", "extract", "segment", "stitch", "render"}
    ran = {(s["device"], s["precision"]) for s in manifest["stages"]["segment"]["subsequences"] if not s["reused"]}
    precision = manifest["config"]["segmenter"]["precision"]
    assert ran <= {("cpu", resolve_precision(precision, "cpu"))}, "the manifest says what SAM2 computed in"

    table = pq.read_table(out_dir / "masks.parquet")
    assert table.schema.metadata[b"random_weights"] == b"true"
    masks = table.to_pylist()
    assert masks, "no masks at all"
    keys = [(r["frame"], r["track_id"]) for r in masks]
    assert keys == sorted(set(keys)), "rows must be unique and sorted by (frame, track_id)"
    for r in masks[:: max(1, len(masks) // 60)]:
        m = rle.decode(r["rle"], r["height"], r["width"])
        assert (r["height"], r["width"]) == (src.height, src.width)
        assert int(m.sum()) == r["area"] > 0
        assert tuple(r["bbox"]) == rle.bbox(m)
        assert abs(r["time"] - r["frame"] / src.fps_float) < 1e-9
    assert max(r["frame"] for r in masks) < expected_frames

    tracks = pq.read_table(out_dir / "tracks.parquet").to_pylist()
    assert [t["track_id"] for t in tracks] == list(range(1, len(tracks) + 1))
    for t in tracks:
        rows = [r for r in masks if r["track_id"] == t["track_id"]]
        assert (
            t["num_frames"] == len(rows)
            and t["first_frame"] == rows[0]["frame"]
            and t["last_frame"] == rows[-1]["frame"]
        )
        assert {r["class_name"] for r in rows} == {t["class_name"]}

    parts = sorted((out_dir / "parts").rglob("*.parquet"))
    assert len(parts) == len(manifest["subsequences"])
    for part in parts:
        assert pq.read_metadata(part).num_rows > 0, f"SAM2 produced no masks in {part.name}"

    v = subprocess.run(
        ["ffprobe", "-v", "error", "-count_packets", "-show_entries",
         "stream=codec_name,pix_fmt,r_frame_rate,nb_read_packets", "-of", "json", str(out_dir / "annotated.mp4")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    stream = json.loads(v.stdout)["streams"][0]
    assert stream["codec_name"] == "h264" and stream["pix_fmt"] == "yuv420p"
    assert int(stream["nb_read_packets"]) == expected_frames
    assert stream["r_frame_rate"] == src.fps if "/" in src.fps else stream["r_frame_rate"] == f"{src.fps}/1"
    return manifest
