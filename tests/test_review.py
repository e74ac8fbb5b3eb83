"""The review list: its signals on known masks, review.parquet written by the stitch stage (injected errors ranked
first, a clean scene giving few low items), marks kept across re-stitching, `sam2flow review` and its refusals,
`sam2flow evaluate`'s recall of ground-truth errors, archive summaries, the report's section, and the studio's
list driven with the keyboard in Chromium."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from sam2flow.core import rle
from sam2flow.core.review import Item, rank
from sam2flow.core.review.detections import DetectorWatch, KeyframeBoxes
from sam2flow.core.review.seams import Seam, SeamPair, seam_items
from sam2flow.core.review.tracks import TrackMask, TrackWatch
from sam2flow.core.stitching import MatchRule
from tests import injections
from tests.replay import STRESS, STRESS_FRAMES, replayed_job, write_davis

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
REPLAY = ("detector.max_objects_per_keyframe=8", "render.enabled=false", "report.enabled=false")


def _square(x: int, y: int, size: int = 20, h: int = 120, w: int = 220) -> tuple[str, tuple[float, ...], int]:
    m = np.zeros((h, w), bool)
    m[y : y + size, x : x + size] = True
    counts, box, area = rle.describe(m)
    return counts, box, area


def _watch(paths: dict[int, list[tuple[int, int]]], frames: int) -> list[Item]:
    """A TrackWatch fed with squares following the given (x, y) per frame for each track."""
    watch = TrackWatch(120, 220, frames)
    for f in range(frames):
        masks = []
        for tid, path in sorted(paths.items()):
            if f < len(path) and path[f] is not None:
                counts, box, area = _square(*path[f])
                masks.append(TrackMask(tid, (box[0], box[1], box[2], box[3]), area, 0.9, counts))
        watch.frame(f, masks)
    return rank(watch.items())


def test_two_squares_exchanging_places_rank_a_swap_first() -> None:
    """Tracks that trade places between two frames are one swap item, first; the same motion without the trade gives
    nothing above 0.3."""
    a = [(40 + f, 30) for f in range(30)]
    b = [(140 - f, 70) for f in range(30)]
    clean = _watch({1: a, 2: b}, 30)
    assert all(i.score < 0.3 for i in clean), clean
    swapped = _watch({1: a[:15] + b[15:], 2: b[:15] + a[15:]}, 30)
    assert swapped[0].kind == "swap" and swapped[0].track_ids == (1, 2)
    assert swapped[0].frame_start == 14 and swapped[0].frame_stop == 16 and swapped[0].score >= 0.9


def test_a_one_frame_glitch_counts_half_of_a_lasting_jump() -> None:
    """A mask that jumps away for one frame and comes back is listed at half the score of one that stays away."""
    path = [(40 + f, 30) for f in range(30)]
    glitch = [(150, 80) if f == 12 else p for f, p in enumerate(path)]
    lasting = [(150, 80) if f >= 12 else p for f, p in enumerate(path)]
    (once,) = [i for i in _watch({1: glitch}, 30) if i.kind == "jump"]
    stays = max(i.score for i in _watch({1: lasting}, 30) if i.kind == "jump")
    assert "glitch" in once.evidence and once.frame_start == 11 and once.frame_stop == 14
    assert once.score == pytest.approx(stays / 2, abs=0.01) and stays > 0.8


def test_gaps_fragments_and_short_tracks() -> None:
    """A track missing for 10 frames is a gap; a track that ends where another starts soon after is a fragment; a
    3-frame track in the middle of the picture is short."""
    path = [(40 + f, 30) for f in range(40)]
    gap = [p if not 10 <= f < 20 else None for f, p in enumerate(path)]
    items = _watch({1: gap}, 40)
    assert [(i.kind, i.frame_start, i.frame_stop) for i in items][:1] == [("gap", 10, 20)]
    assert items[0].score > 0.6
    ends = [(40 + f, 30) if f < 15 else None for f in range(40)]
    starts = [None] * 19 + [(60 + f, 30) for f in range(21)]
    blip = [None] * 30 + [(150, 80)] * 3
    kinds = {i.kind: i for i in _watch({1: ends, 2: starts, 3: blip}, 40)}
    assert kinds["fragment"].track_ids == (1, 2) and kinds["fragment"].score > 0.6
    assert kinds["short"].track_ids == (3,) and "3 frame(s)" in kinds["short"].evidence


def test_seams_weak_ambiguous_and_cut() -> None:
    """A pair joined by the margin rule, a pair with a close rival and a refused pair are listed; a clear match is
    not."""
    rule = MatchRule(0.3, 0.05, 2.0)
    pairs = (
        SeamPair(1, 1, 0.92, 0.0, True),
        SeamPair(2, 2, 0.2, 0.05, True),
        SeamPair(3, 3, 0.6, 0.55, True),
        SeamPair(4, 7, 0.12, 0.1, False),
    )
    items = seam_items(Seam(3, 48, 64, pairs), rule)
    assert sorted(i.track_ids for i in items) == [(2,), (3,), (4, 7)]
    assert all(i.frame_start == 48 and i.frame_stop == 64 for i in items)
    assert "margin rule" in next(i for i in items if i.track_ids == (2,)).evidence


def test_detector_boxes_no_track_covers_and_tracks_it_stops_confirming() -> None:
    """A confident box with no track over it on three keyframes is one missed item; a track the detector confirmed
    once and then not on four keyframes drifts."""
    watch = DetectorWatch()
    track = (10.0, 10.0, 30.0, 30.0)
    for k, frame in enumerate(range(0, 80, 16)):
        boxes = [(100.0, 50.0, 130.0, 80.0)] + ([track] if k == 0 else [])
        watch.keyframe(KeyframeBoxes(frame, tuple(boxes), tuple(0.9 for _ in boxes)), {1: track})
    items = {i.kind: i for i in rank(watch.items())}
    assert items["missed"].frame_start == 0 and items["missed"].frame_stop == 65 and not items["missed"].track_ids
    assert items["drift"].track_ids == (1,) and items["drift"].frame_start == 16


@pytest.fixture
def run(tmp_path: Path) -> Iterator[tuple[Any, Any]]:
    """The stress scene's run: part files from the replay doubles through the real driver, no model."""
    yield replayed_job(STRESS, tmp_path, STRESS_FRAMES, *REPLAY)


def _stitch(job: Any, cfg: Any) -> list[Any]:
    from sam2flow.readers.review import read_review
    from sam2flow.stages.stitch import stitch

    stitch(job, cfg)
    return read_review(job.out_dir)


def test_clean_scene_gives_few_low_items_and_a_swap_is_ranked_first(run: tuple[Any, Any]) -> None:
    """review.parquet of a clean run holds few items, none above 0.5; swapping two objects inside subsequence 2 puts a
    swap on those frames at rank 1; the file carries its units and is sorted by rank."""
    job, cfg = run
    clean = _stitch(job, cfg)
    assert len(clean) <= 6 and all(r.score <= 0.5 for r in clean), clean
    a, b = injections.objects_on(job.part_uri(2), range(44, 56))[:2]
    injections.swap(job.part_uri(2), a, b, 50)
    rows = _stitch(job, cfg)
    assert rows[0].kind == "swap" and rows[0].frame_start == 49 and rows[0].frame_stop == 51, rows[:3]
    assert [r.rank for r in rows] == list(range(1, len(rows) + 1))
    assert [r.score for r in rows] == sorted((r.score for r in rows), reverse=True)
    schema = pq.read_schema(job.output("review.parquet"))
    assert schema.field("frame_stop").metadata[b"unit"] == b"frame index from 0 (excluded)"
    assert schema.field("score").metadata[b"unit"] == b"0-1"


def test_each_injected_error_is_in_the_top_items(run: tuple[Any, Any]) -> None:
    """A dropped stretch, a spurious fragment and two merged objects, each in its own subsequence, all fall inside the
    top 6 items (2 × injected)."""
    job, cfg = run
    objs = injections.objects_on(job.part_uri(1), range(26, 38))
    injected = [
        injections.drop(job.part_uri(1), objs[0], range(28, 36)),
        injections.spurious(job.part_uri(2), range(44, 50), (120, 40, 140, 60), STRESS.height, STRESS.width),
    ]
    pair = injections.objects_on(job.part_uri(3), range(58, 70))[:2]
    injected.append(injections.merge(job.part_uri(3), pair[0], pair[1], range(60, 68)))
    head = _stitch(job, cfg)[:6]
    for e in injected:
        assert any(r.frame_start - 3 < e.frame_stop and e.frame_start < r.frame_stop + 3 for r in head), (e, head)


def test_marks_survive_re_stitching_and_cli(run: tuple[Any, Any]) -> None:
    """`sam2flow review --mark` keeps the mark in corrections.yaml; stitching again keeps it; the table and --json
    print the items; bad input is one line and exit code 2."""
    job, cfg = run
    a, b = injections.objects_on(job.part_uri(2), range(44, 56))[:2]
    injections.swap(job.part_uri(2), a, b, 50)
    rows = _stitch(job, cfg)
    cli = [sys.executable, "-m", "sam2flow.cli", "review"]
    shown = subprocess.run([*cli, job.out_dir, "--top", "2"], capture_output=True, text=True)
    assert shown.returncode == 0 and "swap" in shown.stdout and shown.stdout.count("\n") == 5, shown.stdout
    marked = subprocess.run([*cli, job.out_dir, "--mark", rows[0].key, "--json"], capture_output=True, text=True)
    assert marked.returncode == 0, marked.stderr
    assert rows[0].key not in marked.stdout  # reviewed items are left out unless --all
    assert yaml.safe_load(Path(job.out_dir, "corrections.yaml").read_text())["reviewed"] == [rows[0].key]
    again = _stitch(job, cfg)
    assert [r.reviewed for r in again if r.key == rows[0].key] == [True]
    everything = subprocess.run([*cli, job.out_dir, "--all", "--json"], capture_output=True, text=True).stdout
    assert json.loads(everything.splitlines()[0])["reviewed"] is True
    bad = subprocess.run([*cli, job.out_dir, "--mark", "swap:1-2:9"], capture_output=True, text=True)
    assert bad.returncode == 2 and "has no item 'swap:1-2:9'" in bad.stderr and "Traceback" not in bad.stderr
    Path(job.output("review.parquet")).write_bytes(b"PAR1 not really")
    corrupt = subprocess.run([*cli, job.out_dir], capture_output=True, text=True)
    assert corrupt.returncode == 2 and "review.parquet is not a readable Parquet file" in corrupt.stderr
    assert "sam2flow stitch" in corrupt.stderr and "Traceback" not in corrupt.stderr
    empty = subprocess.run([*cli, str(Path(job.out_dir).parent)], capture_output=True, text=True)
    assert empty.returncode == 2 and "no manifest.json" in empty.stderr


def test_evaluate_counts_the_truth_errors_the_list_finds(run: tuple[Any, Any], tmp_path: Path) -> None:
    """`evaluate` lists the identity switches CLEAR counts (the same number TrackEval gives) and how many of the
    ground truth's errors the top N and 2N items find."""
    from sam2flow.readers.evaluate import evaluate

    job, cfg = run
    a, b = injections.objects_on(job.part_uri(2), range(44, 56))[:2]
    injections.swap(job.part_uri(2), a, b, 50)
    _stitch(job, cfg)
    m = evaluate(job.out_dir, write_davis(STRESS, STRESS_FRAMES, tmp_path / "gt"), STRESS_FRAMES)
    assert m["truth_errors_switch"] == m["IDSW"] >= 2
    assert m["review_recall@2N"] >= m["review_recall@N"] >= 0.5
    assert 0 < m["truth_errors"] <= 2 * m["review_items"]


def test_archive_summaries_put_the_worst_video_first() -> None:
    """Finished videos are ordered by their highest open score, then open items; failed ones are left out."""
    from sam2flow.sources.archive import VideoReport, review_first

    reports = [
        VideoReport("a.mp4", "done", "o/a", review_items=3, review_open=3, review_top=0.4, review_top_kind="gap"),
        VideoReport("b.mp4", "skipped", "o/b", review_items=9, review_open=2, review_top=0.95, review_top_kind="swap"),
        VideoReport("c.mp4", "failed", reason="bad"),
        VideoReport("d.mp4", "done", "o/d", review_items=5, review_open=5, review_top=0.4, review_top_kind="jump"),
    ]
    order = review_first(reports)
    assert [r["video"] for r in order] == ["b.mp4", "d.mp4", "a.mp4"]
    assert order[0]["review"] == "sam2flow review o/b"


def _finished(job: Any, cfg: Any) -> str:
    """Mark a replayed run finished the way the pipeline does (manifest, then _SUCCESS)."""
    from sam2flow import manifest
    from sam2flow.results import RunStages
    from sam2flow.stages.stitch import stitch

    stitched = stitch(job, cfg)
    written = manifest.write_manifest(job, cfg, RunStages(stitch=stitched))
    manifest.mark_complete(job, written.outputs)
    return str(job.out_dir)


def test_report_opens_with_the_items_and_their_frames(run: tuple[Any, Any]) -> None:
    """report.html starts with "Look here first": the top item's kind and evidence, and a strip of its frames; the
    Prefect artifact's markdown lists the items too."""
    from sam2flow.report import build_report, report_markdown

    job, cfg = run
    a, b = injections.objects_on(job.part_uri(2), range(44, 56))[:2]
    injections.swap(job.part_uri(2), a, b, 50)
    out = _finished(job, cfg)
    result = build_report(out)
    html = Path(result.path).read_text()
    assert html.index("Look here first") < html.index("Key figures")
    assert "<b>swap</b>" in html and "exchange places" in html
    strip = Path(out, "report", "review_1.jpg")
    assert strip.is_file() and strip.stat().st_size > 2000
    note = report_markdown(out)  # the run's Prefect artifact lists the same items
    assert "**Look here first**" in note and "| 1 | 0.95 | swap |" in note


@pytest.fixture
def studio_run(run: tuple[Any, Any], tmp_path: Path) -> Iterator[tuple[Any, str]]:
    """`sam2flow studio` serving a finished run with a swap injected."""
    from tests.studio_server import StudioProcess

    job, cfg = run
    a, b = injections.objects_on(job.part_uri(2), range(44, 56))[:2]
    injections.swap(job.part_uri(2), a, b, 50)
    out = _finished(job, cfg)
    smoke = str(ROOT / "configs" / "smoke.yaml")
    server = StudioProcess(["--root", str(tmp_path), "--config", smoke, "--local"], tmp_path / "studio-tmp")
    yield server, out
    server.stop()


def test_studio_review_api(studio_run: tuple[Any, str]) -> None:
    """GET /api/review lists the items; POST /api/review/mark marks one (422 for a bad body, 400 for an unknown
    key, 403 outside the roots, and 403 writing nothing for a foreign Origin, a foreign Host or no token)."""
    server, out = studio_run
    items = server.client.get("/api/review", params={"path": out}).json()["items"]
    assert items[0]["kind"] == "swap" and items[0]["rank"] == 1
    marked = server.client.post("/api/review/mark", json={"path": out, "keys": [items[0]["key"]]})
    assert marked.status_code == 200 and marked.json()["reviewed"] == [items[0]["key"]]
    assert server.client.post("/api/review/mark", json={"path": out, "keys": []}).status_code == 422
    unknown = server.client.post("/api/review/mark", json={"path": out, "keys": ["nope"]})
    assert unknown.status_code == 400 and "has no item 'nope'" in unknown.json()["detail"]
    outside = server.client.get("/api/review", params={"path": "/etc"})
    assert outside.status_code == 403
    before = Path(out, "corrections.yaml").read_text()
    body = {"path": out, "keys": [items[0]["key"]], "reviewed": False}
    foreign = server.session(Origin="http://evil.example").post("/api/review/mark", json=body)
    rebound = server.session(Host="evil.example").post("/api/review/mark", json=body)
    tokenless = httpx.post(f"{server.url}/api/review/mark", json=body, headers={"Origin": server.url})
    assert foreign.status_code == rebound.status_code == tokenless.status_code == 403
    assert Path(out, "corrections.yaml").read_text() == before, "a refused request writes nothing"


def test_studio_review_list_with_the_keyboard(studio_run: tuple[Any, str], tmp_path: Path) -> None:
    """In Chromium: n opens the first item (its frame, its tracks checked, its evidence), r marks it reviewed
    (corrections.yaml) and hides it, Apply re-stitches and the mark stays; with "show reviewed", p goes back to it."""
    if CHROMIUM is None and not os.environ.get("CI"):
        pytest.skip("no chromium (scripts/setup.sh installs it)")
    from playwright.sync_api import sync_playwright

    server, out = studio_run
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{server.url}/?token={server.token}")
        page.goto(f"{server.url}/review?run={out}")
        page.wait_for_selector("#items li")
        first = page.locator("#items li").first.inner_text()
        assert first.startswith("0.9") and "swap" in first
        page.keyboard.press("n")
        page.wait_for_selector("canvas[data-ready='1']")
        assert page.input_value("#frameNum") == "49"
        assert page.inner_text("#evidence").startswith("#1 · swap")
        checked = page.eval_on_selector_all("#tracks input:checked", "els => els.map(e => +e.value)")
        top = pq.read_table(Path(out, "review.parquet")).to_pylist()[0]
        assert sorted(checked) == top["track_ids"] and len(checked) == 2
        page.keyboard.press("r")
        page.wait_for_function("document.getElementById('status').textContent.includes('marked reviewed')")
        key = yaml.safe_load(Path(out, "corrections.yaml").read_text())["reviewed"][0]
        assert key.startswith("swap:49-51:")
        page.keyboard.press("n")
        assert not page.inner_text("#evidence").startswith("#1 ")
        page.keyboard.press("p")  # the one before is reviewed: hidden until "show reviewed"
        assert page.inner_text("#status") == "no earlier item"
        page.click("#apply")
        page.wait_for_function("document.getElementById('status').textContent.startsWith('applied')", timeout=60_000)
        page.check("#showDone")
        page.keyboard.press("p")
        assert page.inner_text("#evidence").startswith("#1 · swap")
        assert "✓" in page.locator("#items li").first.inner_text()
        page.wait_for_selector("canvas[data-ready='1']")
        page.locator("canvas").screenshot(path=str(tmp_path / "frame.png"))
        shown = np.asarray(Image.open(tmp_path / "frame.png").convert("RGB"))
        assert shown.std() > 10, "the item's frame is drawn"
        browser.close()
    table = pq.read_table(Path(out, "review.parquet")).to_pylist()
    assert [r["reviewed"] for r in table if r["key"] == key] == [True]
    assert not errors, errors
