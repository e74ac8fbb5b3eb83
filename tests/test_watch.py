"""Live sources: ffmpeg serves a live MPEG-TS stream on 127.0.0.1; `process_stream` records it into segments,
processes each as it closes, in order, and continues identities across segment boundaries."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from sam2flow.config import load_config
from sam2flow.sources.watch import SourceError, _listed, check_source, stream_id
from tests.scene_doubles import HEIGHT, SCENE, WIDTH, SceneDetector, SceneSegmenter
from tests.synth import write_clip

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(clip: Path, port: int, delay: float = 0.0) -> Iterator[subprocess.Popen[bytes]]:
    """ffmpeg serving ``clip`` as a live MPEG-TS stream (real time) to the first client on ``port``, after
    ``delay`` seconds."""
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-re", "-i", str(clip), "-c", "copy", "-f", "mpegts",
           f"tcp://127.0.0.1:{port}?listen=1"]  # fmt: skip
    if delay:
        cmd = ["sh", "-c", f"sleep {delay} && exec " + " ".join(cmd)]
    proc = subprocess.Popen(cmd)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_sources_and_segment_lists(tmp_path: Path) -> None:
    """Live sources are checked (stream URLs and local folders only) and ffmpeg's segment list is read."""
    out = str(tmp_path / "out")
    check_source("rtsp://camera.local/stream1", out)
    check_source(str(tmp_path), out)
    for bad in ("ftp://x/y", str(tmp_path / "missing"), "s3://bucket/live"):
        with pytest.raises(SourceError, match="neither a stream URL"):
            check_source(bad, out)
    with pytest.raises(SourceError, match="local folder"):
        check_source(str(tmp_path), "s3://bucket/results")
    assert stream_id("tcp://127.0.0.1:9000") != stream_id("tcp://127.0.0.1:9001")
    listing = tmp_path / "list.csv"
    listing.write_text("seg-000004.mkv,0.000000,2.083000\nseg-000005.mkv,2.083000,4.083000\n")
    segs = _listed(listing, 1, tmp_path)
    assert [(s.index, Path(s.path).name, s.start) for s in segs] == [(5, "seg-000005.mkv", 2.083)]


@pytest.mark.slow
def test_a_live_stream_is_processed_segment_by_segment_keeping_identities(
    prefect_harness: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four seconds of two squares streamed live, recorded in segments of about two seconds: every segment is
    processed, in order, and each square is one stream track through every segment (the test doubles replay the
    scene's masks, so the identities can be checked exactly)."""
    import torch

    from sam2flow.control import runtime
    from sam2flow.flows.process_stream import process_stream
    from sam2flow.models import detector, segmenter

    monkeypatch.setattr(segmenter, "Sam2Segmenter", SceneSegmenter)
    monkeypatch.setattr(detector, "YoloDetector", SceneDetector)
    clip = write_clip(tmp_path / "clip.mp4", 96, WIDTH, HEIGHT, squares=SCENE.squares)
    cfg = load_config(None, [
        "detector.model=random:yolo11n", "detector.detect_every=8", "chunking.length=24", "chunking.overlap=16",
        "segmenter.checkpoint=random:sam2.1_hiera_tiny", "render.enabled=false", "report.enabled=false",
        "runtime.torch_threads=1",
    ])  # fmt: skip
    port = _free_port()
    source = f"tcp://127.0.0.1:{port}"
    threads = torch.get_num_threads()
    try:
        with serving(clip, port, delay=1.5):
            state = process_stream(source=source, out=str(tmp_path / "out"), config=cfg, segment_seconds=2.0,
                                   retries=5, return_state=True)  # fmt: skip
    finally:
        runtime._POOLS.clear()
        torch.set_num_threads(threads)
    assert state.is_completed(), state.message
    assert "reconnection" in str(state.message) and "the source ended" in str(state.message)
    reports = state.result()
    folder = tmp_path / "out" / stream_id(source)
    recorded = sorted((folder / "segments").glob("seg-*.mkv"))
    assert len(recorded) == len(reports) >= 2
    assert [Path(r.video).name for r in reports] == [p.name for p in recorded], "processed in recording order"
    assert all(r.status == "done" and (Path(str(r.out_dir)) / "masks.parquet").is_file() for r in reports)
    assert sum(r.frames or 0 for r in reports) == 96, "every frame of the stream is in exactly one segment"

    table = pq.read_table(folder / "tracks.parquet").to_pylist()
    assert sorted({r["segment"] for r in table}) == list(range(len(reports)))
    assert {r["stream_track_id"] for r in table} == {1, 2}, table
    for seg in range(len(reports)):
        assert sorted(r["stream_track_id"] for r in table if r["segment"] == seg) == [1, 2]
    # Each stream track is one square in every segment: the square nearest its box on its first frame.
    square_of: dict[int, set[int]] = {}
    for r in table:
        masks = pq.read_table(Path(r["run"]) / "masks.parquet", filters=[("track_id", "=", r["track_id"])])
        first = masks.sort_by("frame").slice(0, 1).to_pylist()[0]
        frame = sum(rep.frames or 0 for rep in reports[: r["segment"]]) + first["frame"]
        nearest = min(SCENE.present(frame), key=lambda i: abs(first["bbox"][1] - SCENE.box(i, frame)[1]))
        square_of.setdefault(r["stream_track_id"], set()).add(nearest)
    assert len(square_of[1]) == len(square_of[2]) == 1 and square_of[1] != square_of[2], square_of


@pytest.mark.slow
def test_watch_command_retries_until_the_stream_comes_and_exits_0_at_its_end(tmp_path: Path) -> None:
    """`sam2flow watch` (smoke config: real SAM2 and YOLO, random weights) started before the stream exists: it
    retries with backoff, records the two-second stream into one-second segments, processes each, and exits 0."""
    clip = write_clip(tmp_path / "clip.mp4", 48, 160, 120, squares=SCENE.squares[:1])
    port = _free_port()
    cmd = [sys.executable, "-m", "sam2flow.cli", "watch", f"tcp://127.0.0.1:{port}", "--out", str(tmp_path / "out"),
           "--segment-seconds", "1", "--config", "configs/smoke.yaml", "--set", "render.enabled=false",
           "--set", "report.enabled=false", "--set", "chunking.length=24",
           "--set", "detector.enabled=false"]  # fmt: skip
    t0 = time.monotonic()
    log = tmp_path / "watch.log"
    with open(log, "w") as err:
        watcher = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, cwd=ROOT)
        while "retrying in" not in log.read_text() and watcher.poll() is None and time.monotonic() - t0 < 300:
            time.sleep(0.2)  # the stream is not there yet: the watch must retry
        with serving(clip, port):
            stdout, _ = watcher.communicate(timeout=600)
    proc = subprocess.CompletedProcess(cmd, watcher.returncode, stdout, log.read_text())
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "retrying in" in proc.stderr, proc.stderr[-2000:]
    assert re.search(r"[1-5] reconnection\(s\); the source ended", proc.stdout), proc.stdout[-2000:]
    folder = tmp_path / "out" / stream_id(f"tcp://127.0.0.1:{port}")
    segments = sorted((folder / "segments").glob("seg-*.mkv"))
    assert len(segments) >= 2 and proc.stdout.count("done ") == len(segments)
    assert all(list((folder / "runs").glob(f"{s.stem}-*/masks.parquet")) for s in segments)
    assert pq.read_table(folder / "tracks.parquet").num_rows >= 1
    print(f"watch took {time.monotonic() - t0:.1f} s for {len(segments)} segments")


def test_a_watched_folder_hands_over_finished_files_in_order(tmp_path: Path) -> None:
    """Files are handed over once they stop growing, in name order, each once; the watch ends after --idle-exit."""
    import threading

    from sam2flow.sources.watch import Segment, watch_folder

    (tmp_path / "b.mp4").write_bytes(b"x" * 10)
    (tmp_path / "a.mp4").write_bytes(b"x" * 10)
    (tmp_path / "notes.txt").write_text("not a video")
    got: list[Segment] = []
    growing = tmp_path / "c.mp4"
    early: list[bool] = []

    def write_slowly() -> None:
        with open(growing, "wb") as f:
            for _ in range(5):
                f.write(b"y" * 100)
                f.flush()
                time.sleep(0.15)
            early.append(any(Path(s.path) == growing for s in got))

    writer = threading.Thread(target=write_slowly)
    writer.start()
    end = watch_folder(tmp_path, "*.mp4", got.append, threading.Event(), idle_exit=1.0, settle=0.5, poll=0.1)
    writer.join()
    assert early == [False], "handed over while still growing"
    assert [Path(s.path).name for s in got] == ["a.mp4", "b.mp4", "c.mp4"] and [s.index for s in got] == [0, 1, 2]
    assert end.ended and end.segments == 3
