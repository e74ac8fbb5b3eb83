"""Corrections (OUT/<video_id>/corrections.yaml): model-free track edits, and prompts that re-segment only the
subsequences they touch, with the real process_video flow and SAM2 (random weights, 256 px)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from sam2flow.config import ConfigError
from sam2flow.core.types import TrackId
from sam2flow.stages.stitch.corrections import Corrections, Split, TrackEdits, parse
from tests.synth import Square, write_clip

ROOT = Path(__file__).resolve().parents[1]


def test_track_edits_merge_split_delete_and_keep_the_best_duplicate() -> None:
    """Merge, split, delete and class corrections give the expected rows and ids; a merge keeps the best row."""
    edits = TrackEdits(Corrections(merge=[[1, 2]], split=[Split(track=3, frame=5)], delete=[4]), next_track=5)
    frames = np.array([0, 0, 1, 4, 5, 6, 6])
    tracks = np.array([1, 2, 2, 3, 3, 4, 1])
    scores = np.array([0.5, 0.9, 0.7, 0.6, 0.6, 0.8, 0.1])
    keep, new = edits.apply(frames, tracks, scores)
    assert keep.tolist() == [1, 2, 3, 4, 6], "frame 0: track 2's row (0.9) beats track 1's (0.5); track 4 is gone"
    assert new.tolist() == [1, 1, 3, 5, 1], "track 2 is now 1; track 3 from frame 5 on is the new track 5"
    votes = {TrackId(1): {(0, "a"): 3}, TrackId(2): {(1, "b"): 5}, TrackId(3): {(0, "a"): 2}, TrackId(4): {(0, "a"): 1}}
    classes = TrackEdits(Corrections(merge=[[1, 2]], delete=[4], classes=[{"track": 3, "class_name": "b"}]), 5)
    assert classes.classes(votes) == {TrackId(1): (1, "b"), TrackId(3): (1, "b")}


def test_a_split_off_piece_keeps_the_class_its_track_was_given() -> None:
    """Renamed and split, a track's both pieces carry the new name (the split-off one does not fall back to the
    class its rows voted for)."""
    fixes = Corrections(split=[Split(track=1, frame=5)], classes=[{"track": 1, "class_name": "dog"}])
    classes = TrackEdits(fixes, next_track=3).classes({TrackId(1): {(0, "cat"): 9}, TrackId(2): {(0, "cat"): 2}})
    assert classes == {TrackId(1): (-1, "dog"), TrackId(3): (-1, "dog"), TrackId(2): (0, "cat")}


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("merge: [[3]]", "merge"),
        ("delete: [0]", "delete"),
        ("split: [{track: 2}]", "frame"),
        ("colour: red", "colour"),
        ("prompts: [{frame: 3}]", "needs points or a box"),
        ("[1, 2]", "must hold a mapping"),
    ],
)
def test_bad_corrections_name_the_key(text: str, match: str) -> None:
    """A corrections.yaml that is not valid names the key that is wrong."""
    with pytest.raises(ConfigError, match=match):
        parse(text, "OUT/x/corrections.yaml")


CLIP_SQUARES = (
    Square((230, 40, 40), y=60, x0=20, speed=2.0, size=50),
    Square((40, 200, 60), y=150, x0=250, speed=-2.0, size=40),
)
FIRST = "{frame: 0, obj_id: 1, box: [20, 60, 70, 110], class_name: red}"
SECOND = "{frame: 0, box: [250, 150, 290, 190], class_name: green}"
LATER = {"frame": 44, "obj_id": 1, "box": [108.0, 60.0, 158.0, 110.0], "class_name": "red"}


def _config(*prompts: str) -> list[str]:
    return ["chunking.length=40", "chunking.overlap=16", "detector.enabled=false", f"prompts=[{', '.join(prompts)}]"]


def _manifest(run: Path) -> dict:  # type: ignore[type-arg]
    return json.loads((run / "manifest.json").read_text())


@pytest.mark.slow
def test_a_correction_re_segments_only_what_it_touches(prefect_harness: None, tmp_path: Path) -> None:
    """A prompt added in corrections.yaml re-segments only the subsequences whose frames it touches."""
    from sam2flow.config import load_config
    from sam2flow.flows.process_video import process_video

    clip = write_clip(tmp_path / "clip.mp4", frames=72, squares=CLIP_SQUARES)
    smoke = ROOT / "configs" / "smoke.yaml"
    run = Path(
        process_video(video=str(clip), out=str(tmp_path / "out"), config=load_config(smoke, _config(FIRST, SECOND)))
    )
    plan = _manifest(run)["subsequences"]
    assert [(s["start"], s["stop"]) for s in plan] == [(0, 40), (24, 64), (48, 72)]

    # A box for object 1 on frame 44 (inside subsequence 1 only) re-segments that subsequence alone.
    (run / "corrections.yaml").write_text(json.dumps({"prompts": [LATER]}))
    again = Path(
        process_video(video=str(clip), out=str(tmp_path / "out"), config=load_config(smoke, _config(FIRST, SECOND)))
    )
    assert again == run
    segment = _manifest(run)["stages"]["segment"]
    assert segment["reused"] == 2 and [s["index"] for s in segment["subsequences"] if not s["reused"]] == [1]

    # The same prompts from scratch (in the config, no corrections) give the same tables.
    later = "{frame: 44, obj_id: 1, box: [108, 60, 158, 110], class_name: red}"
    fresh = Path(
        process_video(
            video=str(clip), out=str(tmp_path / "fresh"), config=load_config(smoke, _config(FIRST, SECOND, later))
        )
    )
    assert pq.read_table(fresh / "masks.parquet").equals(pq.read_table(run / "masks.parquet"))
    assert pq.read_table(fresh / "tracks.parquet").equals(pq.read_table(run / "tracks.parquet"))

    # Object 1 is one track on frame 0 and on frame 44, whatever the masks say.
    rows = pq.read_table(run / "masks.parquet").to_pylist()
    red = {r["track_id"] for r in rows if r["frame"] in (0, 44) and r["class_name"] == "red"}
    assert len(red) == 1

    # Model-free corrections: merging the two tracks with `sam2flow stitch` leaves one track, no model loaded.
    tracks = pq.read_table(run / "tracks.parquet").to_pylist()
    ids = [t["track_id"] for t in tracks]
    (run / "corrections.yaml").write_text(
        json.dumps({"prompts": [LATER], "merge": [ids[:2]], "classes": [{"track": ids[0], "class_name": "pair"}]})
    )
    code = ("import sys; from sam2flow.stages.stitch.restitch import restitch; restitch(sys.argv[1]);"
            "sys.exit(bool([m for m in ('torch', 'sam2') if m in sys.modules]))")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code, str(run)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    merged = pq.read_table(run / "tracks.parquet").to_pylist()
    assert [t["track_id"] for t in merged] == [ids[0], *ids[2:]] and merged[0]["class_name"] == "pair"
    frames = {r["frame"] for r in rows if r["track_id"] in ids[:2]}
    assert merged[0]["num_frames"] == len(frames), "one row per frame where either track was"
    assert (run / "_SUCCESS").is_file()
