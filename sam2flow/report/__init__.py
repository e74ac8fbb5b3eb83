"""The per-video report, ``OUT/<video_id>/report/``: the review list's top items with frame strips ("Look here
first"), track timeline, objects per frame, mask area per track, zone
occupancy and dwell times, a contact sheet of annotated frames, and ``report.html`` holding all of it in one
self-contained page. Built from the Parquet outputs alone (`sam2flow report` rebuilds it without any model).
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sam2flow.config import PipelineConfig
from sam2flow.io import storage
from sam2flow.io.render import masks_rows, track_colour
from sam2flow.io.staging import StagedFolder
from sam2flow.io.video import iter_frames
from sam2flow.job import REPORT_PAGE
from sam2flow.readers.run import Run
from sam2flow.report import charts, page, review, stats

REPORT_DIR, PAGE = REPORT_PAGE.split("/")
LINKED_OUTPUTS = ("annotated.mp4", "masks.parquet", "tracks.parquet", "review.parquet", "events.parquet",
                  "timestamps.parquet", "manifest.json")  # fmt: skip
AREA_TRACKS = 12


@dataclass(frozen=True)
class ReportResult:
    """What `build_report` wrote."""

    path: str
    tracks: int
    frames: int
    images: tuple[str, ...]
    contact_sheet: bool
    seconds: float


@dataclass
class _Tables:
    frames: np.ndarray
    track_ids: np.ndarray
    areas: np.ndarray
    tracks: list[dict[str, Any]]
    events: list[dict[str, Any]]


def _tables(run: Run) -> _Tables:
    m = run.masks(columns=["frame", "track_id", "area"])
    return _Tables(
        frames=m["frame"].to_numpy(),
        track_ids=m["track_id"].to_numpy(),
        areas=m["area"].to_numpy(),
        tracks=run.tracks().to_pylist(),
        events=run.events().to_pylist(),
    )


def _area_series(t: _Tables, track_ids: list[int], times: np.ndarray) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for tid in track_ids:
        sel = t.track_ids == tid
        f, a = t.frames[sel], t.areas[sel].astype(np.float64)
        full = np.full(int(f.max() - f.min() + 1), np.nan)
        full[f - f.min()] = a
        out[tid] = (times[int(f.min()) : int(f.max()) + 1], full)
    return out


def _tiles(run: Run, count: int) -> list[tuple[int, float, np.ndarray, list[Any]]] | None:
    """Evenly spaced frames from the source video with their rows, or None when the video cannot be read here."""
    video = run.local_video()
    if video is None:
        return None
    picks = sorted({round(x) for x in np.linspace(0, run.num_frames - 1, min(count, run.num_frames))})
    tiles = []
    for f, image in frames_at(video, run, picks):
        tiles.append((f, float(run.times[f]), image, masks_rows(run.file("masks.parquet"), range(f, f + 1))))
    return tiles or None


SEQUENTIAL_UP_TO = 3000
"""Decoding this many frames in one pass is quicker than seeking to each pick; longer videos seek."""


def frames_at(video: str, run: Run, picks: list[int]) -> Iterator[tuple[int, np.ndarray]]:
    if picks and picks[-1] < SEQUENTIAL_UP_TO:
        wanted = set(picks)
        for f, image in enumerate(iter_frames(video, run.info, max_frames=picks[-1] + 1)):
            if f in wanted:
                yield f, image
        return
    for f in picks:
        for image in iter_frames(video, run.info, max_frames=1, start=f):
            yield f, image


def _key_figures(run: Run, t: _Tables, cfg: PipelineConfig) -> list[tuple[str, str]]:
    m = run.manifest
    duration = float(run.times[-1]) if run.num_frames else 0.0
    rows = [
        ("input", m.input),
        ("video id", run.video_id),
        ("frames", f"{run.num_frames} ({duration:.2f} s, {run.width}×{run.height}, {run.fps:.3g} fps nominal)"),
        ("tracks", str(len(t.tracks))),
        ("mask rows", str(len(t.frames))),
        ("zone events", str(len(t.events)) if cfg.zones.regions else "no zones"),
        ("wall time", f"{m.wall_seconds:.1f} s"),
    ]
    rows += [(f"{stage} stage", f"{secs:.1f} s") for stage, secs in m.stages.seconds().items()]
    return rows


def _sections(
    run: Run, t: _Tables, cfg: PipelineConfig, images: dict[str, Path], dwell: list[stats.Dwell], look: str
) -> list[tuple[str, str]]:
    figures = page.table(["", ""], [[k, v] for k, v in _key_figures(run, t, cfg)])
    links = " · ".join(f'<a href="../{n}">{n}</a>' for n in LINKED_OUTPUTS if storage.exists(run.file(n)))
    longest = sorted(t.tracks, key=lambda r: (-r["num_frames"], r["track_id"]))[: cfg.report.max_tracks]
    track_rows = [
        [f'<span class=swatch style="background:rgb{track_colour(r["track_id"])}"></span>{r["track_id"]}',
         r["class_name"], f"{run.times[r['first_frame']]:.2f}", f"{run.times[r['last_frame']]:.2f}", r["num_frames"],
         f"{r['mean_score']:.3f}"]
        for r in longest
    ]  # fmt: skip
    sections = [
        ("Look here first", look),
        ("Key figures", figures + f"<p>Outputs: {links}</p>"),
        ("Track timeline", page.figure(images.get("timeline"), "Track timeline")),
        ("Contact sheet", page.figure(images.get("contact_sheet"), "Contact sheet")),
        ("Objects per frame", page.figure(images.get("objects"), "Objects per frame")),
        ("Mask area per track", page.figure(images.get("area"), "Mask area chart")),
    ]
    if cfg.zones.regions:
        sections.append(("Zones", page.figure(images.get("zones"), "Zone occupancy") + page.dwell_table(dwell)))
    header = ["track", "class", "first seen (s)", "last seen (s)", "frames", "mean score"]
    sections.append(("Tracks", page.table(header, track_rows, [True, False, True, True, True, True])))
    return sections


def _draw(run: Run, t: _Tables, cfg: PipelineConfig, folder: Path) -> tuple[dict[str, Path], list[stats.Dwell]]:
    times = run.times
    class_of = {r["track_id"]: r["class_name"] for r in t.tracks}
    spans = stats.spans(t.frames, t.track_ids, class_of) if len(t.frames) else []
    images: dict[str, Path] = {}
    if spans:
        images["timeline"] = charts.timeline(spans[: cfg.report.max_tracks], times, folder / "timeline.png")
        top = [s.track_id for s in spans[:AREA_TRACKS]]
        images["area"] = charts.area_over_time(_area_series(t, top, times), folder / "area.png")
    counts = stats.objects_per_frame(t.frames, run.num_frames)
    images["objects"] = charts.objects_over_time(counts, times, folder / "objects.png")
    dwell: list[stats.Dwell] = []
    if cfg.zones.regions:
        names = [z.name for z in cfg.zones.regions]
        images["zones"] = charts.zone_occupancy(stats.occupancy(t.events, names, run.num_frames), times,
                                                folder / "zones.png")  # fmt: skip
        dwell = stats.dwell(t.events, float(times[-1]))
        _write_dwell(dwell, folder / "dwell.csv")
    tiles = _tiles(run, cfg.report.contact_sheet_frames)
    if tiles:
        zones = [(z.name, [tuple(p) for p in z.polygon]) for z in cfg.zones.regions]
        images["contact_sheet"] = charts.contact_sheet(tiles, cfg.render, zones, folder / "contact_sheet.jpg")  # type: ignore[arg-type]
    return images, dwell


def _write_dwell(rows: list[stats.Dwell], path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["track_id", "zone", "entries", "total_seconds", "longest_seconds"])
        w.writerows([d.track_id, d.zone, d.entries, d.total_seconds, d.longest_seconds] for d in rows)


def build_report(run_dir: str, complete: bool = True) -> ReportResult:
    """Write ``run_dir/report/`` from the run's tables (no model). ``report.html`` appears last.

    Args:
        run_dir: ``OUT/<video_id>``, local or fsspec URI.
        complete: Require ``_SUCCESS`` (False while the run itself is finishing).
    """
    t0 = time.perf_counter()
    run = Run(run_dir, complete=complete)
    cfg = run.manifest.config
    t = _tables(run)
    target = run.file(REPORT_DIR)
    with StagedFolder(target, last=PAGE) as folder:
        images, dwell = _draw(run, t, cfg, folder)
        items, total = review.top_items(run, cfg.report.review_items)
        look = review.section(items, review.draw_strips(run, items or [], cfg, folder), total)
        warning = ("This run used RANDOMLY INITIALISED model weights: the masks and tracks are meaningless (a test "
                   "or smoke run).") if run.manifest.random_weights else None  # fmt: skip
        title = f"sam2flow report: {run.video_id}"
        (folder / PAGE).write_text(page.page(title, warning, _sections(run, t, cfg, images, dwell, look)))
        result = ReportResult(
            path=storage.join(target, PAGE),
            tracks=len(t.tracks),
            frames=run.num_frames,
            images=tuple(sorted(p.name for p in images.values())),
            contact_sheet="contact_sheet" in images,
            seconds=round(time.perf_counter() - t0, 3),
        )
        (folder / "summary.json").write_text(json.dumps(asdict(result), indent=2))
    return result


def report_markdown(run_dir: str, sheet_width: int = 640) -> str:
    """The report as Markdown for a Prefect artifact: key figures, the timeline and a small contact sheet inline,
    and where the files are."""
    import base64

    import cv2

    run = Run(run_dir, complete=False)
    folder = run.file(REPORT_DIR)
    summary = json.loads(storage.read_bytes(storage.join(folder, "summary.json")))
    lines = [f"# sam2flow: {run.video_id}", ""]
    if run.manifest.random_weights:
        lines += ["> **Random weights**: the masks are meaningless (a test or smoke run).", ""]
    lines += [f"{summary['tracks']} track(s) on {summary['frames']} frame(s) of `{run.manifest.input}`.", ""]
    lines += review.markdown(run, run.manifest.config.report.review_items)
    for name, alt in (("timeline.png", "track timeline"), ("contact_sheet.jpg", "contact sheet")):
        uri = storage.join(folder, name)
        if name in summary["images"]:
            data = np.frombuffer(storage.read_bytes(uri), np.uint8)
            image = cv2.imdecode(data, cv2.IMREAD_COLOR)
            if image is None:
                continue
            if image.shape[1] > sheet_width:
                scale = sheet_width / image.shape[1]
                image = cv2.resize(image, (sheet_width, round(image.shape[0] * scale)), interpolation=cv2.INTER_AREA)
            ok, jpg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
            if ok:
                lines += [f"![{alt}](data:image/jpeg;base64,{base64.b64encode(jpg.tobytes()).decode('ascii')})", ""]
    lines += ["| file | where |", "| --- | --- |", f"| report | `{storage.join(folder, PAGE)}` |"]
    lines += [f"| {n} | `{run.file(n)}` |" for n in LINKED_OUTPUTS if storage.exists(run.file(n))]
    return "\n".join(lines) + "\n"
