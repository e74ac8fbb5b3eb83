"""Export cost vs video length: `sam2flow export` (the CLI a user types) on runs of N and 4N frames with large masks.

Each run folder is written directly (no model): a synthetic clip, four large moving discs per frame as masks, its
tables, manifest and ``_SUCCESS``. Every format is exported in its own process; the resident memory of that process
tree is sampled every 0.05 s. Exports stream frame by frame, so the peak should not grow with the number of frames.

    .venv/bin/python -m benchmarks.exports [--frames 500] [--size 1280x720] [--json out/exports.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from benchmarks.common import ROOT, tree_rss_mib
from sam2flow.export import FORMATS

OBJECTS = 4


def _masks(frame: int, width: int, height: int) -> list[np.ndarray]:
    yy, xx = np.mgrid[:height, :width]
    out = []
    for k in range(OBJECTS):
        cx = (0.2 + 0.2 * k) * width + 0.1 * width * np.sin(frame / 25 + k)
        cy = 0.5 * height + 0.25 * height * np.cos(frame / 30 + 2 * k)
        out.append((xx - cx) ** 2 + (yy - cy) ** 2 < (0.12 * height) ** 2)
    return out


def make_run(folder: Path, frames: int, width: int, height: int) -> Path:
    """A finished run folder with ``frames`` frames and four large discs per frame."""
    from sam2flow.core import rle
    from sam2flow.io.parquet import MASKS_SCHEMA, TRACKS_SCHEMA, ParquetSink, table_from_columns, write_times
    from sam2flow.io.sample import write_sample
    from sam2flow.io.video import probe

    run = folder / "run"
    clip = write_sample(folder / "clip.mp4", frames, width, height)
    times = np.arange(frames, dtype=np.float64) / 24.0
    write_times(str(run / "timestamps.parquet"), times)
    with ParquetSink(str(run / "masks.parquet"), MASKS_SCHEMA) as sink:
        for start in range(0, frames, 64):
            cols: dict[str, list[Any]] = {n: [] for n in MASKS_SCHEMA.names}
            for f in range(start, min(start + 64, frames)):
                for k, m in enumerate(_masks(f, width, height)):
                    values = ["bench", f, times[f], k + 1, 0, "disc", 0.9, list(rle.bbox(m)), int(m.sum()), height,
                              width, rle.encode(m)]  # fmt: skip
                    for n, v in zip(MASKS_SCHEMA.names, values):
                        cols[n].append(v)
            sink.write(table_from_columns(cols, MASKS_SCHEMA))
    tracks = {"video_id": ["bench"] * OBJECTS, "track_id": list(range(1, OBJECTS + 1)), "class_id": [0] * OBJECTS,
              "class_name": ["disc"] * OBJECTS, "first_frame": [0] * OBJECTS, "last_frame": [frames - 1] * OBJECTS,
              "num_frames": [frames] * OBJECTS, "mean_score": [0.9] * OBJECTS}  # fmt: skip
    with ParquetSink(str(run / "tracks.parquet"), TRACKS_SCHEMA) as sink:
        sink.write(table_from_columns(tracks, TRACKS_SCHEMA))
    manifest = {"video_id": "bench", "input": str(clip), "local_input": str(clip), "frames_processed": frames,
                "probe": probe(str(clip)).to_dict(), "config": {}, "random_weights": False, "stages": {}}  # fmt: skip
    (run / "manifest.json").write_text(json.dumps(manifest))
    (run / "_SUCCESS").write_text("")
    return run


def export_once(run: Path, fmt: str, dest: Path) -> dict[str, float]:
    """`sam2flow export RUN --format FMT --dest DEST`: wall seconds, peak tree RSS, bytes written."""
    cmd = [sys.executable, "-m", "sam2flow.cli", "export", str(run), "--format", fmt, "--dest", str(dest)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    handle, peak = psutil.Process(proc.pid), 0.0
    while proc.poll() is None:
        peak = max(peak, tree_rss_mib(handle)[1])
        time.sleep(0.05)
    if proc.returncode != 0:
        raise RuntimeError(f"export {fmt} failed: {proc.stderr.read() if proc.stderr else ''}")
    size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    return {"seconds": time.perf_counter() - t0, "peak_tree_mib": peak, "mb": size / 1e6}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=500, help="Short run length; the long run has 4x as many frames.")
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--formats", nargs="+", default=list(FORMATS), choices=FORMATS)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    results: dict[str, dict[int, dict[str, float]]] = {f: {} for f in args.formats}
    with tempfile.TemporaryDirectory(prefix="sam2flow-bench-") as tmp:
        for n in (args.frames, 4 * args.frames):
            run = make_run(Path(tmp) / f"n{n}", n, width, height)
            for fmt in args.formats:
                results[fmt][n] = r = export_once(run, fmt, Path(tmp) / f"n{n}" / "export" / fmt)
                print(f"{fmt:9} {n:6d} frames: {r['seconds']:6.1f} s, peak {r['peak_tree_mib']:6.0f} MiB, "
                      f"{r['mb']:8.1f} MB", flush=True)  # fmt: skip
    print(f"\npeak memory, {4 * args.frames} vs {args.frames} frames ({width}x{height}, {OBJECTS} objects per frame):")
    for fmt, by_n in results.items():
        short, long = by_n[args.frames], by_n[4 * args.frames]
        ratio, slower = long["peak_tree_mib"] / short["peak_tree_mib"], long["seconds"] / short["seconds"]
        print(f"  {fmt:9} {ratio:.3f}  (time {slower:.2f}x)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
