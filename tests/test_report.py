"""The per-video report: its figures against hand-computed values, and the page in a real headless browser."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from sam2flow.report import stats
from tests.replay import STRESS, finished_run

FRAMES = 96
ZONE = "zones.regions=[{name: middle, polygon: [[80, 0], [140, 0], [140, 120], [80, 120]]}]"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_dwell_and_occupancy_from_events() -> None:
    """Dwell times, occupancy and track spans computed from zone events and mask rows."""
    events = [
        {"frame": 10, "time": 1.0, "zone": "a", "track_id": 1, "event": "enter"},
        {"frame": 30, "time": 3.0, "zone": "a", "track_id": 1, "event": "exit"},
        {"frame": 40, "time": 4.0, "zone": "a", "track_id": 2, "event": "enter"},
        {"frame": 50, "time": 5.0, "zone": "a", "track_id": 1, "event": "enter"},
    ]
    got = stats.dwell(events, end_time=10.0)
    assert got == [stats.Dwell(1, "a", 2, 7.0, 5.0), stats.Dwell(2, "a", 1, 6.0, 6.0)]
    occ = stats.occupancy(events, ["a", "b"], 60)["a"]
    assert occ[9] == 0 and occ[10] == 1 and occ[30] == 0 and occ[45] == 1 and occ[59] == 2
    spans = stats.spans(np.array([0, 1, 2, 5, 6, 3]), np.array([7, 7, 7, 7, 7, 8]), {7: "x"})
    assert spans[0] == stats.TrackSpans(7, "x", ((0, 2), (5, 6))) and spans[0].frames == 5


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = finished_run(STRESS, tmp_path_factory.mktemp("report"), FRAMES, zones=ZONE)
    proc = subprocess.run([sys.executable, "-m", "sam2flow.cli", "report", str(run)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return run


def test_report_files_match_the_tables(run_dir: Path) -> None:
    """The report's files exist and their figures (dwell, event times) match the run's tables."""
    report = run_dir / "report"
    names = {p.name for p in report.iterdir()}
    assert names >= {"report.html", "timeline.png", "objects.png", "area.png", "zones.png", "contact_sheet.jpg",
                     "dwell.csv", "summary.json"}  # fmt: skip
    events = pq.read_table(run_dir / "events.parquet").to_pylist()
    assert events, "the scene's squares cross the zone"
    times = pq.read_table(run_dir / "timestamps.parquet")["time"].to_numpy()
    with open(report / "dwell.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(int(r["track_id"]), int(r["entries"])) for r in rows] == [
        (d.track_id, d.entries) for d in stats.dwell(events, float(times[-1]))
    ]
    enter = {(e["track_id"], e["zone"]): e["time"] for e in events if e["event"] == "enter"}
    assert all(t in times for t in enter.values()), "event times are frame timestamps, not frame / fps"


@pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"), reason="no chromium (scripts/setup.sh installs it)")
def test_report_renders_in_a_real_browser(run_dir: Path, tmp_path: Path) -> None:
    """report.html renders in Chromium with every image loaded and the tables filled, without console errors."""
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto((run_dir / "report" / "report.html").as_uri(), wait_until="load")
        images = page.eval_on_selector_all("img", "els => els.map(e => [e.alt, e.complete, e.naturalWidth])")
        dwell = page.eval_on_selector_all(
            "h2:has-text('Zones') + p + table tbody tr", "rows => rows.map(r => r.cells[2].textContent)"
        )
        title = page.title()
        page.screenshot(path=str(tmp_path / "shot.png"), full_page=True)
        browser.close()
    assert errors == []
    assert {alt for alt, *_ in images} >= {"Track timeline", "Contact sheet", "Objects per frame", "Zone occupancy"}
    assert all(complete and width > 0 for _, complete, width in images), images
    assert title == "sam2flow report: synthetic"
    events = pq.read_table(run_dir / "events.parquet").to_pylist()
    times = pq.read_table(run_dir / "timestamps.parquet")["time"].to_numpy()
    assert [int(x) for x in dwell] == [d.entries for d in stats.dwell(events, float(times[-1]))]
    from PIL import Image

    shot = np.asarray(Image.open(tmp_path / "shot.png").convert("RGB"))
    assert shot.shape[0] > 1500, "the full page is longer than one screen"
    assert shot.std() > 20 and len(np.unique(shot.reshape(-1, 3), axis=0)) > 500, "the screenshot is not blank"


def test_every_parquet_file_reads_in_duckdb_and_polars(run_dir: Path) -> None:
    """Every Parquet output reads in DuckDB and Polars with the same rows and types."""
    import duckdb
    import polars as pl

    files = sorted(run_dir.glob("*.parquet"))
    assert [f.name for f in files] == ["events.parquet", "masks.parquet", "timestamps.parquet", "tracks.parquet"]
    times = pq.read_table(run_dir / "timestamps.parquet")["time"].to_numpy()
    for f in files:
        table = pq.read_table(f)
        ((rows,),) = duckdb.sql(f"SELECT count(*) FROM read_parquet('{f}')").fetchall()
        assert rows == table.num_rows > 0
        frame = pl.read_parquet(f)
        assert frame.shape == (table.num_rows, table.num_columns)
        if "time" in table.column_names:
            assert frame["time"].dtype == pl.Float64
            assert table.schema.field("time").metadata == {b"unit": b"s (seconds from the first frame, from the "
                                                                     b"stream's timestamps)"}  # fmt: skip
            by_frame = duckdb.sql(f"SELECT frame, time FROM read_parquet('{f}')").fetchall()
            assert all(t == times[fr] for fr, t in by_frame), f"{f.name}: time is the frame's timestamp"
    bbox = pq.read_schema(run_dir / "masks.parquet").field("bbox").metadata
    assert bbox is not None and bbox[b"unit"].startswith(b"px")
