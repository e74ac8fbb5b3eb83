"""The example configs in configs/ run end to end offline: real flow, real SAM2 and YOLO code, random weights.

Each example is shortened (32 frames, SAM2 at 256 px) and its models swapped for random ones; everything else is the
file as shipped. What needs real learning (the fine-tuned detector finding the object) is covered by
tests/test_finetune.py on a synthetic clip.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from sam2flow.config import load_config
from sam2flow.io.parquet import EVENTS_SCHEMA
from tests.conftest import SHARED_DATA
from tests.smoke import check_outputs

ROOT = Path(__file__).resolve().parents[1]
FRAMES = 32
OFFLINE = (
    "segmenter.checkpoint=random:sam2.1_hiera_tiny",
    "segmenter.image_size=256",
    "runtime.device=cpu",
    f"video.max_frames={FRAMES}",
    "chunking.length=24",
)


def _run(name: str, video: Path, out: Path, *extra: str) -> tuple[Path, dict]:  # type: ignore[type-arg]
    from sam2flow.flows.process_video import process_video

    if not video.is_file():
        pytest.skip(f"{video} is absent")
    cfg = load_config(ROOT / "configs" / f"{name}.yaml", [*OFFLINE, *extra])
    run_dir = Path(process_video(video=str(video), out=str(out), config=cfg))
    return run_dir, check_outputs(run_dir, FRAMES, video)


@pytest.mark.slow
def test_people_in_zone_example(prefect_harness: None, tmp_path: Path) -> None:
    """The people-in-zone example runs offline and writes zone events that re-stitching recomputes without a model."""
    run_dir, manifest = _run(
        "people_in_zone", SHARED_DATA / "bedroom.mp4", tmp_path / "out",
        "detector.model=random:yolo11n", "detector.confidence=0.0001", "detector.image_size=320",
        "detector.max_objects_per_keyframe=2", "segmenter.max_objects=2",
    )  # fmt: skip
    assert manifest["outputs"]["events.parquet"].endswith("events.parquet")
    events = pq.read_table(run_dir / "events.parquet")
    assert events.schema.equals(EVENTS_SCHEMA, check_metadata=False)
    assert manifest["stages"]["stitch"]["events"]["events"] == events.num_rows
    masks = pq.read_table(run_dir / "masks.parquet", columns=["class_name"]).to_pylist()
    assert {r["class_name"] for r in masks} <= {"person"}, "detector.classes keeps only people"
    assert set(events.column("zone").to_pylist()) <= {"bed"}

    # Zone settings only decide events: re-stitching recomputes them from the masks without any model.
    from sam2flow.stages.stitch.restitch import restitch

    restitch(str(run_dir), ["zones.anchor=center", "zones.hysteresis=1"])
    again = json.loads((run_dir / "manifest.json").read_text())
    assert again["config"]["zones"]["hysteresis"] == 1 and (run_dir / "_SUCCESS").is_file()
    assert again["stages"]["stitch"]["events"]["events"] == pq.read_metadata(run_dir / "events.parquet").num_rows


@pytest.mark.slow
def test_manual_prompts_example(prefect_harness: None, tmp_path: Path) -> None:
    """The manual-prompts example (carry mode, no detector) keeps each prompted object as one named track."""
    run_dir, manifest = _run("manual_prompts", SHARED_DATA / "bedroom.mp4", tmp_path / "out")
    assert manifest["checkpoints"]["yolo"] is None, "no detector in this mode"
    tracks = pq.read_table(run_dir / "tracks.parquet").to_pylist()
    # carry mode keeps each manual object as one track through both subsequences
    assert sorted(t["class_name"] for t in tracks) == ["boy", "girl"]


@pytest.mark.slow
def test_finetune_example_trains_once_and_reuses(prefect_harness: None, tmp_path: Path) -> None:
    # A one-epoch detector scores low: a near-zero threshold lets it prompt the second subsequence (which has no
    # manual prompt), so the trained detector's path through segmentation runs too.
    """The fine-tune example trains a detector once, records it in the manifest and reuses it on the next run."""
    extra = (
        "finetune.frames=24", "finetune.epochs=1", "finetune.image_size=64", "finetune.batch=8",
        "detector.confidence=0.0001", "detector.max_objects_per_keyframe=1",
    )  # fmt: skip
    run_dir, manifest = _run("finetune_first_frames", SHARED_DATA / "dog_first300.mp4", tmp_path / "out", *extra)
    ft = manifest["finetune"]
    assert ft["reused"] is False and ft["classes"] == ["dog"] and ft["labelled_frames"] == 24
    # offline, the pretrained yolo11n cannot be fetched: training starts from the architecture's YAML
    assert ft["base"] == "yolo11n.yaml" and ft["pretrained"] is False and ft["epochs_run"] == 1
    weights = Path(ft["weights"])
    assert weights.parent.parent == run_dir / "finetune" and weights.is_file()
    metrics = json.loads((weights.parent / "metrics.json").read_text())
    assert metrics["weights"] == ft["weights"] and "metrics/mAP50(B)" in metrics["metrics"]
    assert (weights.parent / "labels.parquet").is_file() and (weights.parent / "results.csv").is_file()
    assert manifest["checkpoints"]["yolo"]["path"] == str(weights), "the trained detector prompts the video"
    mtime = weights.stat().st_mtime_ns

    # The same run again: nothing is retrained or re-segmented.
    run_dir2, manifest2 = _run("finetune_first_frames", SHARED_DATA / "dog_first300.mp4", tmp_path / "out", *extra)
    assert run_dir2 == run_dir
    assert manifest2["finetune"]["reused"] is True and weights.stat().st_mtime_ns == mtime
    assert manifest2["stages"]["segment"]["reused"] == len(manifest2["subsequences"])
