"""Exports and the Python reader, each format checked with the real reader of that format.

The run folder is made without models (`tests.replay.finished_run`: replayed exact masks through the real driver
and stitcher, on a clip with a variable frame rate), so every exported mask can be compared with a known one.
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from sam2flow.core import rle
from sam2flow.core.prompts import box_iou
from tests.replay import STRESS, finished_run

FRAMES = 96


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return finished_run(STRESS, tmp_path_factory.mktemp("export"), FRAMES)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sam2flow.cli", *args], capture_output=True, text=True, timeout=600)


def _export(run_dir: Path, fmt: str, *extra: str) -> Path:
    proc = _cli("export", str(run_dir), "--format", fmt, *extra)
    assert proc.returncode == 0, proc.stderr
    dest = Path(extra[extra.index("--dest") + 1]) if "--dest" in extra else run_dir / "export" / fmt
    record = json.loads((dest / "export.json").read_text())
    assert record["format"] == fmt and record["video_id"] == "synthetic"
    return dest


def _rows(run_dir: Path) -> list[dict]:  # type: ignore[type-arg]
    return pq.read_table(run_dir / "masks.parquet").to_pylist()


def test_reader_streams_every_frame_with_its_masks(run_dir: Path) -> None:
    """read_run streams every frame with its times, tracks, boxes and decoded masks, matching masks.parquet."""
    from sam2flow import read_run

    run = read_run(str(run_dir))
    rows = _rows(run_dir)
    by_frame = defaultdict(list)
    for r in rows:
        by_frame[r["frame"]].append(r)
    times = pq.read_table(run_dir / "timestamps.parquet")["time"].to_numpy()
    frames = list(run.frames())
    assert [f.frame for f in frames] == list(range(FRAMES))
    for f in frames:
        expect = by_frame[f.frame]
        assert f.time == times[f.frame]
        assert f.track_ids.tolist() == [r["track_id"] for r in expect]
        assert f.boxes.tolist() == [r["bbox"] for r in expect]
        for m, r in zip(f.masks, expect):
            assert np.array_equal(m, rle.decode(r["rle"], r["height"], r["width"]))
    green = [f for f in run.frames(range(10, 80), tracks=[rows[-1]["track_id"]])]
    assert len(green) == 70 and all(set(f.track_ids.tolist()) <= {rows[-1]["track_id"]} for f in green)
    assert run.tracks("polars").height == run.tracks("pandas").shape[0] == run.tracks().num_rows
    det = frames[40].to_supervision()
    assert det.tracker_id.tolist() == frames[40].track_ids.tolist()
    assert det.mask.shape == (len(frames[40]), STRESS.height, STRESS.width)


def test_reader_refuses_an_unfinished_run(run_dir: Path, tmp_path: Path) -> None:
    """read_run refuses a folder without _SUCCESS, saying the run is unfinished."""
    from sam2flow.readers.run import RunReadError, read_run

    (tmp_path / "manifest.json").write_text((run_dir / "manifest.json").read_text())
    with pytest.raises(RunReadError, match="no _SUCCESS"):
        read_run(str(tmp_path))


def test_coco_export_loads_in_pycocotools(run_dir: Path) -> None:
    """The COCO export loads in pycocotools, one annotation per mask row with the same mask, area and track id."""
    from pycocotools.coco import COCO

    dest = _export(run_dir, "coco")
    coco = COCO(str(dest / "annotations.json"))
    rows = _rows(run_dir)
    assert len(coco.getImgIds()) == FRAMES and len(coco.getAnnIds()) == len(rows)
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["square"]
    anns = coco.loadAnns(coco.getAnnIds())
    for ann, row in list(zip(anns, rows))[::7]:
        assert ann["image_id"] == row["frame"] + 1 and ann["track_id"] == row["track_id"]
        assert coco.imgs[ann["image_id"]]["frame_id"] == row["frame"]
        assert np.array_equal(coco.annToMask(ann).astype(bool), rle.decode(row["rle"], row["height"], row["width"]))
        assert ann["area"] == row["area"]


def test_mot_export_scores_itself_perfectly(run_dir: Path) -> None:
    """The MOT export reads in motmetrics and TrackEval and scores itself perfectly."""
    import motmetrics as mm
    from trackeval.datasets._base_dataset import _BaseDataset

    dest = _export(run_dir, "mot")
    rows = _rows(run_dir)
    boxes = mm.io.loadtxt(str(dest / "mot.txt"), fmt="mot15-2D")  # motmetrics' reader (it makes x, y 0-based)
    assert len(boxes) == len(rows)
    acc = mm.MOTAccumulator(auto_id=True)
    for _, frame in boxes.groupby(level="FrameId"):
        ids = frame.index.get_level_values("Id").tolist()
        xyxy = frame[["X", "Y", "Width", "Height"]].to_numpy() @ np.array(
            [[1, 0, 1, 0], [0, 1, 0, 1], [0, 0, 1, 0], [0, 0, 0, 1]]
        )
        acc.update(ids, ids, 1.0 - box_iou(xyxy, xyxy))  # motmetrics 1.4's own IoU helper predates NumPy 2
    summary = mm.metrics.create().compute(acc, metrics=["idf1", "num_switches"], name="self")
    assert summary["idf1"]["self"] == 1.0 and summary["num_switches"]["self"] == 0
    first = rows[0]
    x0, y0, x1, y1 = first["bbox"]
    assert boxes.loc[(first["frame"] + 1, first["track_id"])][["X", "Y", "Width", "Height"]].tolist() == pytest.approx(
        [x0, y0, x1 - x0, y1 - y0], abs=0.01
    )
    data, _ = _BaseDataset._load_simple_text_file(str(dest / "mots.txt"), force_delimiters=" ")
    assert sum(len(v) for v in data.values()) == len(rows)
    line = data[str(first["frame"] + 1)][0]
    assert int(line[1]) == first["track_id"] and line[5] == first["rle"]
    mask = rle.decode(line[5], int(line[3]), int(line[4]))
    assert np.array_equal(mask, rle.decode(first["rle"], first["height"], first["width"]))


def test_davis_export_evaluates_to_a_perfect_score(run_dir: Path) -> None:
    """The DAVIS export has one PNG per frame and evaluates to J&F and IDF1 of 1 against the run."""
    dest = _export(run_dir, "davis")
    assert len(list(dest.glob("*.png"))) == FRAMES
    proc = _cli("evaluate", str(run_dir), str(dest))
    assert proc.returncode == 0, proc.stderr
    metrics = dict(line.split() for line in proc.stdout.splitlines() if line.strip())
    assert float(metrics["J&F"]) == pytest.approx(1.0) and float(metrics["IDF1"]) == pytest.approx(1.0)
    mapping = json.loads((dest / "mapping.json").read_text())["pixel_value_to_track_id"]
    assert sorted(mapping.values()) == sorted({r["track_id"] for r in _rows(run_dir)})


def test_davis_export_keeps_frames_without_objects(run_dir: Path, tmp_path: Path) -> None:
    """A DAVIS export of one track over a frame range keeps every frame, empty ones included."""
    from PIL import Image

    rows = _rows(run_dir)
    (tid,) = {r["track_id"] for r in rows if r["frame"] == 50 and r["bbox"][1] == 35.0}  # the green square
    expected = {r["frame"] for r in rows if r["track_id"] == tid and 10 <= r["frame"] < 80}
    assert min(expected) > 10 and max(expected) < 79, "it comes and goes inside the range"
    dest = _export(run_dir, "davis", "--tracks", str(tid), "--frames", "10:80", "--dest", str(tmp_path / "d"))
    pngs = sorted(dest.glob("*.png"))
    assert [p.name for p in pngs] == [f"{f:05d}.png" for f in range(10, 80)]
    present = {int(p.stem) for p in pngs if np.asarray(Image.open(p)).any()}
    assert present == expected
    assert Image.open(pngs[30]).mode == "P"


def test_yolo_seg_export_trains_in_ultralytics(run_dir: Path, tmp_path: Path) -> None:
    """The YOLO segmentation export is a dataset Ultralytics checks and trains on, with polygons from the masks."""
    import cv2
    from ultralytics import YOLO
    from ultralytics.data.utils import check_det_dataset

    dest = _export(run_dir, "yolo-seg")
    data = check_det_dataset(str(dest / "data.yaml"))
    assert data["nc"] == 1 and data["names"] == {0: "square"}
    train, val = sorted((dest / "labels" / "train").glob("*.txt")), sorted((dest / "labels" / "val").glob("*.txt"))
    assert len(train) + len(val) == FRAMES and len(val) == 10
    row = _rows(run_dir)[0]
    values = [
        float(v)
        for v in (dest / "labels" / "train" / f"{row['frame']:06d}.txt").read_text().splitlines()[0].split()[1:]
    ]
    poly = np.round(np.array(values).reshape(-1, 2) * [STRESS.width, STRESS.height]).astype(np.int32)
    drawn = cv2.fillPoly(np.zeros((STRESS.height, STRESS.width), np.uint8), [poly], 1).astype(bool)
    truth = rle.decode(row["rle"], row["height"], row["width"])
    assert (drawn & truth).sum() / (drawn | truth).sum() > 0.85
    model = YOLO("yolo11n-seg.yaml")
    model.train(data=str(dest / "data.yaml"), epochs=1, imgsz=64, batch=16, workers=0, device="cpu",
                project=str(tmp_path), name="t", plots=False, verbose=False, amp=False)  # fmt: skip
    assert (tmp_path / "t" / "weights" / "last.pt").is_file()


def test_cvat_export_is_one_track_per_track_id(run_dir: Path) -> None:
    """The CVAT export has one track per track id, keyframes where it is present and outside where it leaves."""
    dest = _export(run_dir, "cvat")
    root = ET.parse(dest / "annotations.xml").getroot()
    assert root.findtext("version") == "1.1"
    assert int(root.findtext("meta/task/size") or 0) == FRAMES
    rows = _rows(run_dir)
    present = defaultdict(set)
    for r in rows:
        present[r["track_id"]].add(r["frame"])
    tracks = root.findall("track")
    assert sorted(int(t.get("id") or -1) for t in tracks) == sorted(present)
    for t in tracks:
        frames = present[int(t.get("id") or -1)]
        shapes = t.findall("polygon")
        inside = {int(s.get("frame") or -1) for s in shapes if s.get("outside") == "0"}
        outside = {int(s.get("frame") or -1) for s in shapes if s.get("outside") == "1"}
        assert inside == frames
        assert outside == {f + 1 for f in frames if f + 1 not in frames and f + 1 < FRAMES}
        assert all(0 <= int(s.get("frame") or -1) < FRAMES for s in shapes)
        assert t.get("label") == "square"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "pascal"], "unknown export format 'pascal'"),
        (["--format", "coco", "--frames", "5-9"], "give a range of frames as a:b"),
        (["--format", "coco", "--frames", "500:600"], "holds no frame of the video"),
        (["--format", "coco", "--tracks", "999"], "the run has no track 999"),
        (["--format", "coco", "--tracks", "one"], "give track ids separated by commas"),
    ],
)
def test_bad_export_requests_are_one_clear_error(run_dir: Path, args: list[str], message: str) -> None:
    """An unknown format, a bad frame range or an unknown track is one clear error, exit code 2."""
    proc = _cli("export", str(run_dir), *args)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


def test_failed_export_leaves_the_previous_one_whole(run_dir: Path, tmp_path: Path) -> None:
    """yolo-seg needs the video's frames: with the video gone the export fails, and the last export stays as it was."""
    copy = tmp_path / "run"
    subprocess.run(["cp", "-r", str(run_dir), str(copy)], check=True)
    manifest = json.loads((copy / "manifest.json").read_text())
    dest = tmp_path / "out"
    _export(copy, "coco", "--dest", str(dest))
    before = (dest / "annotations.json").read_bytes()
    manifest["input"] = manifest["local_input"] = str(tmp_path / "gone.mp4")
    (copy / "manifest.json").write_text(json.dumps(manifest))
    proc = _cli("export", str(copy), "--format", "yolo-seg", "--dest", str(dest))
    assert proc.returncode == 2 and "gone.mp4" in proc.stderr and "Traceback" not in proc.stderr
    assert (dest / "annotations.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "run"], "no temporary folder is left behind"


def test_export_never_destroys_what_dest_names(run_dir: Path, tmp_path: Path) -> None:
    """--dest naming a file or a folder of other files is refused (exit 2) and left as it was; an empty folder is
    used, and an earlier export there is replaced whole."""
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.jpg").write_bytes(b"jpeg")
    for dest, message in ((notes, "is a file"), (photos, "not an earlier sam2flow export")):
        proc = _cli("export", str(run_dir), "--format", "mot", "--dest", str(dest))
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert notes.read_text() == "mine" and [p.name for p in photos.iterdir()] == ["a.jpg"]
    (tmp_path / "empty").mkdir()
    mot = _export(run_dir, "mot", "--dest", str(tmp_path / "empty"))
    assert (mot / "mot.txt").is_file()
    coco = _export(run_dir, "coco", "--dest", str(tmp_path / "empty"))
    assert sorted(p.name for p in coco.iterdir()) == ["annotations.json", "export.json"], "replaced whole"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "notes.txt", "photos"]


def test_export_to_an_fsspec_destination(run_dir: Path) -> None:
    """--dest may be a URI: files are uploaded with export.json last (here fsspec's in-memory filesystem)."""
    import fsspec

    from sam2flow.export import export_run

    result = export_run(str(run_dir), "mot", dest="memory://exports/mot", frames="0:10")
    fs = fsspec.filesystem("memory")
    assert sorted(p.rsplit("/", 1)[-1] for p in fs.ls("/exports/mot", detail=False)) == [
        "classes.txt", "export.json", "mot.txt", "mots.txt"
    ]  # fmt: skip
    lines = fs.cat("/exports/mot/mot.txt").decode().splitlines()
    assert len(lines) == result.annotations == sum(1 for r in _rows(run_dir) if r["frame"] < 10)
    assert {int(line.split(",")[0]) for line in lines} <= set(range(1, 11))
    from sam2flow.io.storage import StorageError

    fs.pipe("/exports/file.txt", b"mine")
    fs.pipe("/exports/other/readme.md", b"mine")
    for dest in ("memory://exports/file.txt", "memory://exports/other"):
        with pytest.raises(StorageError, match=r"is a file|not an earlier sam2flow export"):
            export_run(str(run_dir), "mot", dest=dest)
    assert fs.cat("/exports/file.txt") == b"mine" and fs.ls("/exports/other", detail=False) == [
        "/exports/other/readme.md"
    ]
