"""End to end: the real process_video flow with the real SAM2 predictor and real YOLO (random weights, 256 px)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from sam2flow.config import load_config
from sam2flow.io.parquet import read_times
from sam2flow.io.video import probe
from tests.smoke import SMALL_OVERRIDES, SMOKE, SQUARES, check_outputs, small_config
from tests.synth import Square, write_clip

ROOT = Path(__file__).resolve().parents[1]


def _report_artifact(video_id: str) -> str:
    """The markdown of the newest report artifact of a video, read back through the Prefect API."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from sam2flow.sources.archive import artifact_slug

    with get_client(sync_client=True) as client:
        key = f"report-{artifact_slug(video_id)}"
        (artifact,) = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])), limit=1)
    return str(artifact.data)


@pytest.mark.slow
def test_flow_on_synthetic_clip_and_rerun(prefect_harness: None, tmp_path: Path) -> None:
    """A synthetic clip runs end to end; running it again reuses every finished subsequence."""
    from sam2flow.flows.process_video import process_video

    clip = write_clip(tmp_path / "squares.mp4", frames=48, squares=SQUARES)
    out = process_video(video=str(clip), out=str(tmp_path / "out"), config=small_config())
    manifest = check_outputs(Path(out), 48, clip)
    assert len(manifest["subsequences"]) == 2
    assert manifest["stages"]["segment"]["reused"] == 0
    # The annotated video is drawn in one piece per subsequence; the last piece (drawn when every part is known) is
    # always final, earlier ones are kept unless a track's class changed when later parts came in.
    render = manifest["stages"]["render"]
    assert render["pieces"] == 2 and 1 <= render["pieces_kept"] <= 2
    masks_before = pq.read_table(Path(out) / "masks.parquet")
    markdown = _report_artifact(Path(out).name)
    assert "data:image/jpeg;base64," in markdown and f"{out}/report/report.html" in markdown

    out2 = process_video(video=str(clip), out=str(tmp_path / "out"), config=small_config("render.alpha=0.2"))
    assert out2 == out
    manifest2 = check_outputs(Path(out2), 48, clip)
    assert manifest2["stages"]["segment"]["reused"] == 2
    assert pq.read_table(Path(out) / "masks.parquet").equals(masks_before)

    # Re-stitching from the part files with the same threshold reproduces the result, without loading any model.
    code = (
        "import sys; from sam2flow.stages.stitch.restitch import restitch; restitch(sys.argv[1]);"
        "bad = [m for m in ('torch', 'sam2', 'ultralytics', 'prefect') if m in sys.modules]; sys.exit(bool(bad))"
    )
    proc = subprocess.run([sys.executable, "-c", code, out], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert pq.read_table(Path(out) / "masks.parquet").equals(masks_before)
    restitched = check_outputs(Path(out), 48, clip)
    assert restitched["stages"]["restitched"] is True
    # A threshold and floor above every match split each track at every boundary: more tracks, same rows.
    proc = _cli("stitch", out, "--iou", "1.0", "--set", "stitching.min_iou=1.0", "--render")
    assert proc.returncode == 0, proc.stderr
    split = pq.read_table(Path(out) / "masks.parquet")
    assert split.num_rows == masks_before.num_rows
    assert len(set(split["track_id"].to_pylist())) > len(set(masks_before["track_id"].to_pylist()))
    check_outputs(Path(out), 48, clip)
    # Segmentation settings cannot change without re-running the models.
    proc = _cli("stitch", out, "--set", "detector.confidence=0.5")
    assert proc.returncode == 2 and "only change stitching" in proc.stderr
    # A run made before timestamps.parquet existed re-stitches, writing the times it lacks: the video's own when it
    # is readable, else frame / fps (what such a run used); never a traceback.
    times = Path(out) / "timestamps.parquet"
    expected = np.arange(48) / probe(str(clip)).fps_float
    for gone in (False, True):
        _as_written_before_timestamps(Path(out))
        times.unlink()
        if gone:
            clip.rename(clip.with_suffix(".moved"))
        proc = _cli("stitch", out)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
        assert (Path(out) / "_SUCCESS").is_file() and np.allclose(read_times(str(times)), expected)


def _as_written_before_timestamps(run: Path) -> None:
    """Make a run folder look as sam2flow wrote it before timestamps.parquet existed (commit 0921d24's parent): part
    files named without per-subsequence prompt keys, and no prompt keys, correction prompts, backward-fill or worker
    fields in the manifest."""
    m = json.loads((run / "manifest.json").read_text())
    keys = m.pop("span_keys", [])
    m.pop("correction_prompts", None)
    for index, key in enumerate(keys):
        (part,) = run.glob(f"parts/*/{index:05d}_*_{key}.parquet")
        part.rename(part.with_name(part.name.replace(f"_{key}.parquet", ".parquet")))
    segment = m["stages"]["segment"]
    segment.pop("backfill_seconds", None)
    for sub in segment["subsequences"]:
        for key in ("backfill_rows", "backfill_seconds", "worker", "started", "ended"):
            sub.pop(key, None)
    (run / "manifest.json").write_text(json.dumps(m))


@pytest.mark.slow
def test_flow_on_real_clip(prefect_harness: None, shared_video: Path, tmp_path: Path) -> None:
    """A short real clip (the first 48 frames of bedroom.mp4), read from and written to fsspec URIs, runs end to end."""
    import fsspec

    from sam2flow.flows.process_video import process_video

    mem = fsspec.filesystem("memory")
    mem.pipe("/e2e-in/bedroom.mp4", shared_video.read_bytes())
    cfg = load_config(SMOKE, ["video.max_frames=48", "chunking.length=32", "segmenter.max_objects=2"])
    out = process_video(video="memory://e2e-in/bedroom.mp4", out="memory://e2e-out", config=cfg)
    assert out.startswith("memory://e2e-out/bedroom-")
    local = tmp_path / "out"
    mem.get(out.removeprefix("memory://"), str(local), recursive=True)
    manifest = check_outputs(local, 48, shared_video)
    assert manifest["frames_processed"] == 48


def _cli(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sam2flow.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )


def _network_available(host: str = "dl.fbaipublicfiles.com") -> bool:
    try:
        socket.getaddrinfo(host, 443)
        return True
    except OSError:
        return False


def test_default_config_without_network_fails_fast(tmp_path: Path) -> None:
    """With configs/default.yaml and no network, the run stops within seconds naming the URL, with no _SUCCESS."""
    if _network_available():
        pytest.skip("this machine can reach the checkpoint host; the test needs an offline machine such as CI")
    clip = write_clip(tmp_path / "clip.mp4", frames=5)
    t0 = time.perf_counter()
    proc = _cli("run", str(clip), "--config", "configs/default.yaml", "--out", str(tmp_path / "out"),
                env={"SAM2FLOW_CACHE": str(tmp_path / "empty-cache")})  # fmt: skip
    elapsed = time.perf_counter() - t0
    assert proc.returncode == 2, proc.stderr
    assert "dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_tiny.pt" in proc.stderr
    assert "could not be downloaded" in proc.stderr
    assert elapsed < 30, f"took {elapsed:.1f}s"
    assert not list((tmp_path).rglob("_SUCCESS"))


@pytest.mark.parametrize(
    ("content", "match"), [(b"not a video at all", "not a readable video"), (None, "does not exist")]
)
def test_cli_bad_input_is_one_clear_error(tmp_path: Path, content: bytes | None, match: str) -> None:
    """A non-video or missing input exits 2 with one message naming the file, and leaves no _SUCCESS."""
    bad = tmp_path / "broken.mp4"
    if content is not None:
        bad.write_bytes(content)
    proc = _cli("run", str(bad), "--config", str(SMOKE), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert str(bad) in proc.stderr and match in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list(tmp_path.rglob("_SUCCESS"))


@pytest.mark.parametrize(
    "args", [[], ["run"], ["probe"], ["config"], ["sample"], ["stitch"], ["checkpoints"], ["checkpoints", "random"]]
)
def test_help(args: list[str]) -> None:
    """The command and each subcommand explain themselves."""
    proc = _cli(*args, "--help")
    assert proc.returncode == 0 and "Usage" in proc.stdout and len(proc.stdout) > 200


@pytest.mark.slow
def test_killed_run_resumes_with_identical_results(prefect_harness: None, tmp_path: Path) -> None:
    """A run killed after its first part file exists leaves no _SUCCESS; the rerun reuses that part and its final
    Parquet equals an uninterrupted run's."""
    import signal

    from sam2flow.flows.process_video import process_video

    clip = write_clip(tmp_path / "squares.mp4", frames=40, squares=SQUARES)
    sets = ["chunking.length=24", "segmenter.max_objects=1", "render.enabled=false"]
    cfg = small_config(*sets)
    reference = Path(process_video(video=str(clip), out=str(tmp_path / "ref"), config=cfg))
    assert len(json.loads((reference / "manifest.json").read_text())["subsequences"]) == 3

    out = tmp_path / "killed"
    args = ["run", str(clip), "--config", str(SMOKE), "--out", str(out)]
    for s in [*SMALL_OVERRIDES, *sets]:
        args += ["--set", s]
    proc = subprocess.Popen([sys.executable, "-m", "sam2flow.cli", *args], cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 300
    while not list(out.glob("*/parts/*/*.parquet")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    run_dir = next(out.iterdir())
    done = list(run_dir.glob("parts/*/*.parquet"))
    assert 1 <= len(done) < 3 and not (run_dir / "_SUCCESS").exists()

    # Resumed from the clip's folder with a relative path: the same run, recorded with the absolute path.
    resumed = _cli(*[clip.name if a == str(clip) else a for a in args], cwd=clip.parent)
    assert resumed.returncode == 0, resumed.stderr
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["stages"]["segment"]["reused"] == len(done)
    assert manifest["input"] == manifest["local_input"] == str(clip)
    for name in ("masks.parquet", "tracks.parquet"):
        # Bit-identical, scores included: segmenting a subsequence does not depend on what the process did before.
        assert pq.read_table(run_dir / name).equals(pq.read_table(reference / name)), name
    assert not list(run_dir.rglob("*.tmp-*")), "half-written files of the killed run are cleaned up"


@pytest.mark.slow
def test_carry_mode_with_the_real_predictor(prefect_harness: None, tmp_path: Path) -> None:
    """Carry mode runs the real SAM2 mask-prompt path: a manual object keeps one track id through every subsequence."""
    from sam2flow.flows.process_video import process_video

    clip = write_clip(tmp_path / "squares.mp4", frames=48, squares=SQUARES)
    cfg = small_config("chunking.mode=carry", "detector.enabled=false", "segmenter.max_objects=1")
    out = Path(process_video(video=str(clip), out=str(tmp_path / "out"), config=cfg))
    manifest = check_outputs(out, 48, clip)
    assert manifest["config"]["chunking"]["mode"] == "carry"
    tracks = pq.read_table(out / "tracks.parquet").to_pylist()
    assert len(tracks) == 1 and tracks[0]["class_name"] == "square"
    parts = sorted((out / "parts").rglob("*.parquet"))
    from sam2flow.io.parquet import read_carried_from

    assert read_carried_from(str(parts[0])) == {} and read_carried_from(str(parts[1])) == {0: 0}


def test_cli_truncated_video_is_one_clear_error(tmp_path: Path) -> None:
    """A video cut off after its first kilobytes fails with one message naming it, not a Prefect internal error."""
    clip = write_clip(tmp_path / "clip.mp4", frames=48, squares=SQUARES)
    # With the index up front (+faststart) the cut file still probes; the frames themselves are missing.
    indexed = tmp_path / "indexed.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(clip), "-c", "copy", "-movflags", "+faststart", str(indexed)],
                   check=True)  # fmt: skip
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(indexed.read_bytes()[:8000])
    proc = _cli("run", str(cut), "--config", str(SMOKE), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(last) == 1 and str(cut) in last[0] and "truncated" in last[0] and "Unfinished" not in last[0], (
        proc.stderr[-3000:]
    )
    assert not list((tmp_path / "out").rglob("_SUCCESS"))


@pytest.mark.slow
def test_rotated_recording_end_to_end(tmp_path: Path) -> None:
    """A phone-style clip (stored 320x240, displayed rotated by 90°) gives masks, boxes and an annotated video in the
    displayed 240x320 orientation, with every frame, and the manifest says so."""
    from tests.synth import with_rotation

    clip = with_rotation(write_clip(tmp_path / "flat.mp4", 32, squares=SQUARES), tmp_path / "upright.mp4", 90)
    proc = _cli(*_smoke_run(clip, tmp_path / "out", "chunking.length=24"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = (tmp_path / "out").iterdir()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["probe"]["rotation"] == 90 and (manifest["probe"]["width"], manifest["probe"]["height"]) == (
        240,
        320,
    )
    rows = pq.read_table(run_dir / "masks.parquet").to_pylist()
    assert rows and {(r["width"], r["height"]) for r in rows} == {(240, 320)}
    assert all(0 <= r["bbox"][0] < r["bbox"][2] <= 240 and 0 <= r["bbox"][1] < r["bbox"][3] <= 320 for r in rows)
    video = probe(str(run_dir / "annotated.mp4"))
    assert (video.width, video.height, video.rotation, video.num_frames) == (240, 320, 0, 32)


@pytest.mark.slow
def test_failed_rerun_leaves_the_finished_run_alone(prefect_harness: None, tmp_path: Path) -> None:
    """A later run with another config that fails before stitching leaves the finished run's outputs, manifest and
    _SUCCESS exactly as they were."""
    from sam2flow.flows.process_video import process_video

    clip = write_clip(tmp_path / "clip.mp4", frames=24, squares=SQUARES)
    cfg = small_config("chunking.length=24", "render.enabled=false")
    run_dir = Path(process_video(video=str(clip), out=str(tmp_path / "out"), config=cfg))
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    assert "_SUCCESS" in before and "masks.parquet" in before
    failing = small_config("chunking.length=20", "render.enabled=false", "runtime.device=cuda:7")  # no such GPU here
    with pytest.raises(Exception, match="cuda"):
        process_video(video=str(clip), out=str(tmp_path / "out"), config=failing)
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before


def _smoke_run(clip: Path, out: Path, *sets: str) -> list[str]:
    """`sam2flow run` arguments for the shortened smoke config plus ``sets``."""
    args = ["run", str(clip), "--config", str(SMOKE), "--out", str(out)]
    for s in [*SMALL_OVERRIDES, *sets]:
        args += ["--set", s]
    return args


def _run_cli_async(clip: Path, out: Path, *sets: str) -> subprocess.Popen[str]:
    args = _smoke_run(clip, out, *sets)
    return subprocess.Popen([sys.executable, "-m", "sam2flow.cli", *args], cwd=ROOT, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("stagger", [False, True])
def test_two_runs_into_one_folder_never_collide(tmp_path: Path, stagger: bool) -> None:
    """Two `sam2flow run` of one video into one OUT, started together or one after the other has begun: each ends
    with complete outputs or one clear refusal naming the folder's holder, never an error blaming the input."""
    clip = write_clip(tmp_path / "clip.mp4", frames=40, squares=SQUARES)
    out = tmp_path / "out"
    first = _run_cli_async(clip, out, "chunking.length=24")
    if stagger:
        deadline = time.time() + 120
        while not list(out.glob("*/parts/*/*.parquet")) and time.time() < deadline and first.poll() is None:
            time.sleep(0.2)
    second = _run_cli_async(clip, out, "chunking.length=24")
    results = [(p.wait(timeout=600), p.stderr.read() if p.stderr else "") for p in (first, second)]
    assert all(code in (0, 2) for code, _ in results), [(code, err[-3000:]) for code, err in results]
    assert any(code == 0 for code, _ in results)
    for code, err in results:
        assert "readable video" not in err and "truncated" not in err
        if code == 2:
            assert "is in use by sam2flow run (pid" in err and "Traceback" not in err, err[-2000:]
    if stagger:
        assert results[1][0] == 2, "the second run finds the folder held"
    (run_dir,) = out.iterdir()
    check_outputs(run_dir, 40, clip)


@pytest.mark.slow
def test_identical_videos_in_one_archive_do_not_race(prefect_harness: None, tmp_path: Path) -> None:
    """Two copies of one video at different paths of one archive share an output folder: the second waits for the
    first and both end done, with one consistent set of outputs."""
    import shutil

    from sam2flow.flows.process_archive import process_archive

    archive = tmp_path / "archive"
    (archive / "cam2").mkdir(parents=True)
    write_clip(archive / "a.mp4", frames=24, squares=SQUARES)
    shutil.copy(archive / "a.mp4", archive / "cam2" / "a.mp4")
    cfg = small_config("chunking.length=24", "render.enabled=false")
    state = process_archive(source=str(archive), out=str(tmp_path / "out"), pattern="**/*.mp4", config=cfg,
                            max_in_flight=2, return_state=True)  # fmt: skip
    reports = state.result(raise_on_failure=False)
    assert [r.status for r in reports] == ["done", "done"], [r.reason for r in reports]
    assert reports[0].out_dir == reports[1].out_dir
    assert (Path(str(reports[0].out_dir)) / "_SUCCESS").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_segmentation_does_not_depend_on_the_workers_history(
    tmp_path: Path, request: pytest.FixtureRequest, precision: str
) -> None:
    """The same subsequence segmented as a worker's first job, after another video, and again gives bit-identical
    part files, in either precision: nothing a worker did before (Ultralytics resetting torch's thread count on its
    first prediction was one such thing) changes the masks or scores."""
    from sam2flow.control.runtime import detector_on, pool_for, segmenter_on
    from sam2flow.control.workspace import discard_work
    from sam2flow.models.detector import StoredFrameDetector
    from sam2flow.stages.extract import extract
    from sam2flow.stages.prepare import prepare
    from sam2flow.stages.segment.driver import SegmentSettings, segment_subsequence

    cfg = small_config("chunking.length=24", "detector.detect_every=8", f"segmenter.precision={precision}")
    clips = {
        "a": write_clip(tmp_path / "a.mp4", 24, squares=SQUARES),
        "b": write_clip(tmp_path / "b.mp4", 24, squares=(Square((20, 20, 240), y=100, x0=200, speed=-4.0, size=60),)),
    }
    jobs = {k: prepare(str(v), str(tmp_path / "out"), cfg) for k, v in clips.items()}
    request.addfinalizer(lambda: [discard_work(job) for job in jobs.values()])
    for job in jobs.values():
        extract(job, 0, cfg, stream=False)

    def segment(key: str, n: int) -> pq.Table:
        job, uri = jobs[key], str(tmp_path / f"{key}-{n}.parquet")
        with pool_for(cfg.runtime).acquire() as slot:

            def work() -> None:
                detector = StoredFrameDetector(detector_on(slot, job.yolo, cfg.detector)) if job.yolo else None
                segment_subsequence(segmenter_on(slot, job.sam2, cfg.segmenter), detector, job.frames_dir(0),
                                    job.plan[0], SegmentSettings.from_config(cfg), uri,
                                    class_names=detector.names if detector else None)  # fmt: skip

            slot.run(work)
        return pq.read_table(uri)

    first = segment("a", 0)
    segment("b", 1)
    assert first.num_rows > 0 and segment("a", 2).equals(first)


@pytest.mark.slow
def test_variable_frame_rate_end_to_end(tmp_path: Path) -> None:
    """A variable-frame-rate recording keeps its timing: masks.parquet's time is each frame's presentation time,
    timestamps.parquet lists them, and the annotated video shows every frame at the source's times (so it lasts
    as long as the source, not frames / fps)."""
    from sam2flow.io.video import frame_times
    from tests.synth import write_vfr_clip

    times = [i / 24 for i in range(12)] + [1.0 + i / 8 for i in range(12)] + [2.6 + i / 24 for i in range(8)]
    clip = write_vfr_clip(tmp_path / "vfr.mp4", times, squares=SQUARES)
    proc = _cli(*_smoke_run(clip, tmp_path / "out", "chunking.length=24"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = (tmp_path / "out").iterdir()
    rows = pq.read_table(run_dir / "masks.parquet").to_pylist()
    assert rows and all(abs(r["time"] - times[r["frame"]]) < 1e-4 for r in rows)
    stamps = pq.read_table(run_dir / "timestamps.parquet").to_pydict()
    assert stamps["frame"] == list(range(len(times))) and np.allclose(stamps["time"], times, atol=1e-4)
    video = run_dir / "annotated.mp4"
    info = probe(str(video))
    assert info.num_frames == len(times)
    assert np.allclose(frame_times(str(video), info), times, atol=2e-3)


def test_jpeg_frame_store_end_to_end(tmp_path: Path) -> None:
    """`sam2flow run` with video.frame_store=jpeg (real SAM2 reading the JPEG folders) and output.keep_frames: the
    run completes, its part folder differs from the raw store's, and the kept frames are JPEG folders."""
    clip = write_clip(tmp_path / "clip.mp4", frames=24, squares=SQUARES)
    sets = [*SMALL_OVERRIDES, "chunking.length=24", "segmenter.max_objects=1", "render.enabled=false",
            "report.enabled=false", "video.frame_store=jpeg", "output.keep_frames=true",
            f"output.work_dir={tmp_path / 'work'}"]  # fmt: skip
    proc = _cli("run", str(clip), "--config", str(SMOKE), "--out", str(tmp_path / "out"),
                *(a for s in sets for a in ("--set", s)))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = (tmp_path / "out").iterdir()
    assert (run / "_SUCCESS").is_file() and pq.read_metadata(run / "masks.parquet").num_rows > 0
    raw = small_config("chunking.length=24", "segmenter.max_objects=1")
    assert json.loads((run / "manifest.json").read_text())["config"]["video"]["frame_store"] == "jpeg"
    assert raw.digest() != load_config(SMOKE, sets).digest()
    (kept,) = (tmp_path / "work" / "sam2flow-frames").glob("*/*/00000")
    assert len(list(kept.glob("*.jpg"))) == 24 and json.loads((kept / "frames.json").read_text())["format"] == "jpeg"
