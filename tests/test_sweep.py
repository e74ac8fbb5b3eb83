"""Sweeps: the grid, the `process_sweep` flow on a synthetic video with a known best setting, and the command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from sam2flow.config import ConfigError, load_config
from sam2flow.sources.sweep import GridAxis, SweepRow, best, expand, parse_grid, table_rows
from tests.replay import write_davis
from tests.scene_doubles import FRAMES, HEIGHT, SCENE, WIDTH, SceneDetector, SceneSegmenter
from tests.synth import write_clip

ROOT = Path(__file__).resolve().parents[1]
BASE = [
    "detector.model=random:yolo11n", "detector.detect_every=8", "chunking.length=24", "chunking.overlap=16",
    "segmenter.checkpoint=random:sam2.1_hiera_tiny", "stitching.iou_threshold=0.95", "runtime.torch_threads=1",
]  # fmt: skip
GRID = [GridAxis(key="segmenter.max_objects", values=[1, 2]), GridAxis(key="stitching.min_iou", values=[0.05, 0.95])]


def test_grid_parsing_and_expansion() -> None:
    """A sweep grid parses, expands with runs sharing a segmentation together, and refuses bad axes."""
    assert parse_grid(["stitching.iou_threshold=0.2,0.5", "runtime.device=[cpu,cpu],cpu"]) == [
        GridAxis(key="stitching.iou_threshold", values=[0.2, 0.5]),
        GridAxis(key="runtime.device", values=[["cpu", "cpu"], "cpu"]),
    ]
    settings = expand(load_config(None, BASE), parse_grid(["stitching.min_iou=0.05,0.95", "segmenter.max_objects=1,2"]))
    # Settings sharing a segmentation come together: max_objects decides it, min_iou does not.
    assert [s.values["segmenter.max_objects"] for s in settings] == [1, 1, 2, 2]
    assert [s.number for s in settings] == [0, 2, 1, 3]
    assert all(not s.config.render.enabled and not s.config.report.enabled for s in settings)
    assert settings[0].config.digest() == settings[1].config.digest() != settings[2].config.digest()
    for bad, match in (
        (["stitching.iou_threshold"], "must look like"),
        (["stitching.iou_threshold=[0.2"], "not YAML"),
    ):
        with pytest.raises(ConfigError, match=match):
            parse_grid(bad)
    with pytest.raises(ConfigError, match=r"stitching\.nope"):
        expand(load_config(None, []), parse_grid(["stitching.nope=1"]))
    with pytest.raises(ConfigError, match="iou_threshold"):
        expand(load_config(None, []), parse_grid(["stitching.iou_threshold=0.3,7"]))
    with pytest.raises(ConfigError, match="at most 64"):
        expand(
            load_config(None, []),
            parse_grid(["stitching.margin=1,2,3,4,5,6,7,8,9", "stitching.min_iou=0,0,0,0,0,0,0,0"]),
        )
    with pytest.raises(ConfigError, match="twice"):
        expand(load_config(None, []), parse_grid(["stitching.margin=1", "stitching.margin=2"]))
    rows = [SweepRow(n, {}, "segmented", 1.0, {"HOTA": h, "IDSW": s}) for n, (h, s) in enumerate([(0.5, 3), (0.9, 1)])]
    assert best(rows, "HOTA").setting == 1 and best(rows, "IDSW").setting == 1


@pytest.fixture()
def video(tmp_path: Path) -> tuple[Path, Path]:
    clip = write_clip(tmp_path / "clip.mp4", FRAMES, WIDTH, HEIGHT, squares=SCENE.squares)
    return clip, write_davis(SCENE, FRAMES, tmp_path / "gt")


@pytest.mark.slow
def test_sweep_finds_the_known_best_setting(
    prefect_harness: None, tmp_path: Path, video: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two objects, both detected. max_objects 1 loses one; stitching that demands 0.95 overlap IoU of jittered masks
    splits tracks at every boundary. The sweep finds (max_objects 2, min_iou 0.05), segments twice, re-stitches
    twice, writes its table, and leaves the best setting's results in the run folder. A second sweep reuses every
    part file."""
    import torch

    from sam2flow.control import runtime
    from sam2flow.flows.process_sweep import process_sweep
    from sam2flow.models import detector, segmenter

    clip, gt = video
    monkeypatch.setattr(segmenter, "Sam2Segmenter", SceneSegmenter)
    monkeypatch.setattr(detector, "YoloDetector", SceneDetector)
    cfg = load_config(None, BASE)
    out = tmp_path / "out"
    threads = torch.get_num_threads()
    try:
        table = table_rows(
            process_sweep(video=str(clip), ground_truth=str(gt), out=str(out), grid=GRID, config=cfg), "HOTA"
        )
        state = process_sweep(
            video=str(clip), ground_truth=str(gt), out=str(out), grid=GRID, config=cfg, metric="IDF1", return_state=True
        )
    finally:
        runtime._POOLS.clear()  # their slots hold the double: no other test may get it
        torch.set_num_threads(threads)
    again = table_rows(state.result(), "IDF1")
    assert len(table) == 4
    top = table[0]
    assert (top["segmenter.max_objects"], top["stitching.min_iou"]) == ("2", "0.05"), table
    assert top["HOTA"] > max(r["HOTA"] for r in table[1:]) and top["IDF1"] > 0.9
    assert sorted(r["how"] for r in table) == ["restitched", "restitched", "segmented", "segmented"]
    by = {(r["segmenter.max_objects"], r["stitching.min_iou"]): r for r in table}
    assert by[("1", "0.05")]["Recall"] < 0.6 < by[("2", "0.05")]["Recall"], "one object of two is tracked"
    assert by[("2", "0.95")]["IDF1"] < by[("2", "0.05")]["IDF1"], "split tracks"

    saved = pq.read_table(next((out / "sweeps").glob("*.parquet")))
    assert saved.num_rows == 4 and saved.schema.metadata[b"metric"] == b"IDF1"
    assert saved.column("setting").to_pylist() == [r["setting"] for r in again]
    run = next(p for p in out.iterdir() if p.name != "sweeps")
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["config"]["segmenter"]["max_objects"] == 2 and manifest["config"]["stitching"]["min_iou"] == 0.05
    assert (run / "_SUCCESS").is_file()
    assert [r["IDF1"] for r in again] == sorted((r["IDF1"] for r in table), reverse=True)
    assert manifest["stages"]["segment"]["reused"] == len(manifest["stages"]["segment"]["subsequences"]) > 1

    from prefect.client.orchestration import get_client

    from tests.prefect_api import run_tree_artifacts

    with get_client(sync_client=True) as client:
        _, arts = run_tree_artifacts(client, state.state_details.flow_run_id)
    tables = [a for a in arts if a.key.startswith("sweep-")]
    assert len(tables) == 1 and tables[0].type == "table"
    shown = json.loads(tables[0].data) if isinstance(tables[0].data, str) else tables[0].data
    assert [r["setting"] for r in shown] == [r["setting"] for r in again]


def test_sweep_command_rejects_bad_input_before_running(tmp_path: Path, video: tuple[Path, Path]) -> None:
    """`sam2flow sweep` refuses a bad key, missing ground truth or an unknown metric before running anything."""
    clip, gt = video

    def sweep(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "sam2flow.cli", "sweep", str(clip), "--out", str(tmp_path / "o"), *args]
        return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)

    for args, message in (
        (["--gt", str(gt), "--grid", "stitching.bogus=1,2"], "stitching.bogus"),
        (["--gt", str(tmp_path / "missing"), "--grid", "stitching.min_iou=0.1"], "missing"),
        (["--gt", str(gt), "--grid", "stitching.min_iou=0.1", "--metric", "speed"], "--metric"),
    ):
        proc = sweep(*args)
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "o").exists()
