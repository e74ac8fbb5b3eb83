"""The stages of one video, as plain functions (the Prefect tasks in `tasks/` wrap them one to one).

Stages exchange a small `VideoJob` (paths, ids, the plan) and small summaries, never arrays or models.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sam2flow.config import ConfigError, PipelineConfig, with_overrides
from sam2flow.core.planning import plan_subsequences
from sam2flow.core.types import Subsequence
from sam2flow.io import checkpoints, storage
from sam2flow.io.checkpoints import ResolvedCheckpoint
from sam2flow.io.video import VideoProbe, extract_subsequence, probe
from sam2flow.runtime import WorkerSlot, release_free_memory, worker_pool
from sam2flow.segment import SegmentStats

if TYPE_CHECKING:
    from sam2flow.io.render import Overlay
    from sam2flow.models.segmenter import Sam2Segmenter

log = logging.getLogger(__name__)

OUTPUT_FILES = ("masks.parquet", "tracks.parquet", "annotated.mp4", "manifest.json")
EVENTS = "events.parquet"  # only with zones
SUCCESS = "_SUCCESS"


@dataclass(frozen=True)
class VideoJob:
    """Everything the stages of one video need, small enough to pass between tasks."""

    video: str
    local_video: str
    video_id: str
    out_dir: str
    work_dir: str
    info: VideoProbe
    num_frames: int
    plan: tuple[Subsequence, ...]
    config_digest: str
    sam2: ResolvedCheckpoint
    yolo: ResolvedCheckpoint | None
    started: float = field(default_factory=time.time)

    @property
    def random_weights(self) -> bool:
        """Whether any model of this run has random weights."""
        return self.sam2.random_weights or bool(self.yolo and self.yolo.random_weights)

    def part_uri(self, index: int) -> str:
        """Content-addressed part file of one subsequence (same config and input → same name)."""
        sub = self.plan[index]
        return storage.join(self.out_dir, "parts", self.config_digest, f"{index:05d}_{sub.start}_{sub.stop}.parquet")

    def frames_dir(self, index: int) -> Path:
        """Local folder of one subsequence's JPEGs."""
        return Path(self.work_dir) / f"{index:05d}"

    def output(self, name: str) -> str:
        """URI of a final output file."""
        return storage.join(self.out_dir, name)


def make_video_id(video: str, digest: str) -> str:
    """Readable stem plus a short content digest, safe as a path component."""
    stem = Path(video.rstrip("/").rsplit("/", 1)[-1]).stem
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-.")[:48] or "video"
    return f"{slug}-{digest[:10]}"


def prepare(video: str, out: str, cfg: PipelineConfig) -> VideoJob:
    """Probe the input, plan subsequences, resolve checkpoints, and clear any earlier ``_SUCCESS``.

    Fails fast (before any heavy work) on a missing or unreadable input or a missing checkpoint.
    """
    cache = checkpoints.cache_dir().parent
    if storage.is_remote(video) and not storage.exists(video):
        raise FileNotFoundError(f"input video {video} does not exist")
    local = storage.localize(video, cache / "inputs")
    info = probe(str(local))
    num_frames = min(info.num_frames, cfg.video.max_frames or info.num_frames)
    plan = tuple(plan_subsequences(num_frames, cfg.chunking.length, cfg.chunking.overlap))
    sam2 = checkpoints.resolve(cfg.segmenter.checkpoint, "sam2")
    # A fine-tuned detector replaces detector.model once it is trained (see sam2flow.finetune).
    use_model = cfg.detector.enabled and not cfg.finetune.enabled
    yolo = checkpoints.resolve(cfg.detector.model, "yolo") if use_model else None
    video_id = make_video_id(video, storage.content_digest(str(local)))
    out_dir = storage.join(out, video_id)
    storage.makedirs(out_dir)
    storage.remove(storage.join(out_dir, SUCCESS))
    # Half-written part files of a killed run (never reused: only complete files have their final name).
    fs, parts = storage.filesystem(storage.join(out_dir, "parts", cfg.digest()))
    for stale in fs.glob(f"{parts}/*.tmp-*"):
        fs.rm(stale)
    work = Path(cfg.output.work_dir or tempfile.gettempdir()) / "sam2flow-frames" / video_id / cfg.digest()
    job = VideoJob(
        video=video,
        local_video=str(local),
        video_id=video_id,
        out_dir=out_dir,
        work_dir=str(work),
        info=info,
        num_frames=num_frames,
        plan=plan,
        config_digest=cfg.digest(),
        sam2=sam2,
        yolo=yolo,
    )
    if job.random_weights:
        log.warning("RANDOM WEIGHTS: %s uses randomly initialised models; masks are meaningless", video_id)
    log.info(
        "%s: %d frames %dx%d @ %s fps → %d subsequence(s) of %d (overlap %d)",
        video_id, num_frames, info.width, info.height, info.fps, len(plan), cfg.chunking.length, cfg.chunking.overlap,
    )  # fmt: skip
    return job


def part_done(job: VideoJob, index: int) -> bool:
    """Whether a complete part file exists (incomplete ones only exist under temporary names)."""
    return storage.exists(job.part_uri(index))


def extract(job: VideoJob, index: int, cfg: PipelineConfig) -> dict[str, Any]:
    """Write one subsequence's JPEGs, unless its part file is already complete."""
    t0 = time.perf_counter()
    if part_done(job, index):
        return {"index": index, "skipped": True, "seconds": 0.0}
    sub = job.plan[index]
    extract_subsequence(job.local_video, job.info, sub, job.frames_dir(index), cfg.video.jpeg_quality)
    return {"index": index, "skipped": False, "seconds": time.perf_counter() - t0}


def segmenter_for(slot: WorkerSlot, job: VideoJob, cfg: PipelineConfig) -> Sam2Segmenter:
    """The worker's SAM2 model (built on its first use, then kept)."""
    from sam2flow.models.segmenter import Sam2Segmenter

    seg_cfg = cfg.segmenter
    return slot.get(
        ("sam2", job.sam2.sha256, seg_cfg.image_size, seg_cfg.offload_video_to_cpu, seg_cfg.compile),
        lambda: Sam2Segmenter(job.sam2, slot.device, seg_cfg.image_size, seg_cfg.offload_video_to_cpu, seg_cfg.compile),
    )


def _segment_on_worker(slot: WorkerSlot, job: VideoJob, index: int, cfg: PipelineConfig) -> SegmentStats:
    """The part of `segment` that runs on the worker's own thread: models (built once), then the subsequence."""
    from sam2flow.models.detector import YoloDetector
    from sam2flow.segment import segment_subsequence

    sub = job.plan[index]
    segmenter = segmenter_for(slot, job, cfg)
    detector = None
    if job.yolo is not None:
        d = cfg.detector
        yolo = job.yolo
        detector = slot.get(
            ("yolo", yolo.sha256, d.confidence, d.nms_iou, d.image_size, tuple(d.classes or ())),
            lambda: YoloDetector(yolo, slot.device, d.confidence, d.nms_iou, d.image_size, d.classes),
        )
    step = max(1, sub.length // 4)

    def progress(done: int, total: int) -> None:
        if done % step == 0 or done == total:
            log.info("subsequence %d/%d: frame %d/%d", index + 1, len(job.plan), done, total)

    stats = segment_subsequence(
        segmenter,
        detector,
        job.frames_dir(index),
        sub,
        cfg,
        job.part_uri(index),
        class_names=detector.names if detector else None,
        progress=progress,
        carry_from=job.part_uri(index - 1) if cfg.chunking.mode == "carry" and index > 0 else None,
    )
    release_free_memory()
    return stats


def segment(job: VideoJob, index: int, cfg: PipelineConfig) -> dict[str, Any]:
    """Segment one subsequence on a free worker; reuses a complete part file from an earlier run."""
    if part_done(job, index):
        log.info("subsequence %d/%d: reusing %s", index + 1, len(job.plan), job.part_uri(index))
        return {"index": index, "reused": True, "seconds": 0.0}
    rt = cfg.runtime
    pool = worker_pool(rt.device, rt.workers_per_device, rt.torch_threads)
    with pool.acquire() as slot:
        stats = slot.run(_segment_on_worker, slot, job, index, cfg)
    if not cfg.output.keep_frames:
        shutil.rmtree(job.frames_dir(index), ignore_errors=True)
    out = asdict(stats)
    rss = _rss_mib()
    out.update(reused=False, device=slot.device, rss_mib=rss)
    log.info(
        "subsequence %d/%d done: %d object(s), masks on %d/%d frames, %.1fs (%.2f s/frame), RSS %.0f MiB",
        index + 1, len(job.plan), stats.objects, stats.frames_with_masks, stats.frames, stats.seconds,
        stats.seconds / max(stats.frames, 1), rss,
    )  # fmt: skip
    return out


def extract_and_segment(job: VideoJob, index: int, cfg: PipelineConfig) -> dict[str, Any]:
    """Extract and segment one subsequence in one go, on whatever machine runs it (the Ray fan-out).

    The input is read from the job's local copy when this machine has it, else fetched from its URI; the frames
    stay on this machine and the part file goes to the (shared) output folder.
    """
    if part_done(job, index):
        return {"index": index, "reused": True, "seconds": 0.0, "host": platform.node(), "pid": os.getpid()}
    if not Path(job.local_video).is_file():
        job = replace(job, local_video=str(storage.localize(job.video, checkpoints.cache_dir().parent / "inputs")))
    extract(job, index, cfg)
    return {**segment(job, index, cfg), "host": platform.node(), "pid": os.getpid()}


def stitch(job: VideoJob, cfg: PipelineConfig) -> dict[str, Any]:
    """Build masks.parquet and tracks.parquet from the part files."""
    from sam2flow.stitch import stitch_parts

    t0 = time.perf_counter()
    result = stitch_parts(
        list(job.plan),
        [job.part_uri(i) for i in range(len(job.plan))],
        job.video_id,
        job.info.fps_float,
        job.info.height,
        job.info.width,
        cfg.stitching.iou_threshold,
        job.output("masks.parquet"),
        job.output("tracks.parquet"),
        metadata={"video_id": job.video_id, "random_weights": str(job.random_weights).lower()},
    )
    log.info(
        "%s: %d track(s), %d mask rows, %d boundary match(es)", job.video_id, result.tracks, result.rows, result.matches
    )
    out: dict[str, Any] = {**asdict(result), "seconds": time.perf_counter() - t0}
    if cfg.zones.regions:
        from sam2flow.events import write_events

        ev = write_events(
            job.output("masks.parquet"), job.output(EVENTS), cfg.zones, job.video_id, job.info.fps_float,
            job.num_frames,
        )  # fmt: skip
        log.info("%s: %d zone event(s) (%d enter, %d exit)", job.video_id, ev.events, ev.enters, ev.exits)
        out["events"] = asdict(ev)
    else:
        storage.remove(job.output(EVENTS))
    return out


def _overlay(job: VideoJob, cfg: PipelineConfig) -> Overlay:
    from sam2flow.io.render import Overlay

    zones = tuple((z.name, tuple(z.polygon)) for z in cfg.zones.regions) if cfg.zones.draw else ()
    banner = "RANDOM WEIGHTS - masks are meaningless" if job.random_weights else None
    return Overlay(cfg.render, banner, zones)


def _piece(job: VideoJob, index: int) -> tuple[Path, Path]:
    """A rendered piece of the annotated video (the frames subsequence ``index`` owns, MPEG-TS) and its digest."""
    folder = Path(job.work_dir) / "render"
    return folder / f"{index:05d}.ts", folder / f"{index:05d}.json"


_LINKERS: dict[tuple[str, str], tuple[threading.Lock, Any]] = {}
_LINKERS_LOCK = threading.Lock()


def render_piece(job: VideoJob, index: int, cfg: PipelineConfig) -> dict[str, Any]:
    """Render the frames subsequence ``index`` owns while later subsequences are still being segmented.

    Needs the part files of subsequences ``0..index`` (track ids depend only on earlier subsequences). A track's
    class may still change when later parts come in; `render` then redraws the pieces whose content changed.
    """
    from sam2flow.io.render import RENDER_COLUMNS, render_range, rows_digest
    from sam2flow.stitch import Linker, part_rows

    t0 = time.perf_counter()
    key = (job.out_dir, job.config_digest)
    with _LINKERS_LOCK:
        if key not in _LINKERS:
            parts = [job.part_uri(i) for i in range(len(job.plan))]
            linker = Linker(job.plan, parts, job.info.height, job.info.width, cfg.stitching.iou_threshold)
            _LINKERS[key] = (threading.Lock(), linker)
        lock, linker = _LINKERS[key]
    with lock:
        rows = part_rows(linker, index, linker.tracks(index)).select(RENDER_COLUMNS).to_pylist()
    overlay = _overlay(job, cfg)
    mp4, meta = _piece(job, index)
    mp4.parent.mkdir(parents=True, exist_ok=True)
    frames = linker.owned[index]
    render_range(job.local_video, job.info, frames, rows, mp4, overlay)
    meta.write_text(json.dumps({"digest": rows_digest(rows, overlay), "frames": len(frames)}))
    return {"index": index, "frames": len(frames), "seconds": time.perf_counter() - t0}


def render(job: VideoJob, cfg: PipelineConfig) -> dict[str, Any]:
    """Write annotated.mp4 from masks.parquet: pieces already rendered during segmentation are kept when they show
    exactly the final rows; the others are rendered now; the pieces are joined without re-encoding and uploaded."""
    from sam2flow.core.planning import owned_ranges
    from sam2flow.io.render import masks_rows, render_range, rows_digest
    from sam2flow.io.video import concat_videos

    t0 = time.perf_counter()
    with _LINKERS_LOCK:
        _LINKERS.pop((job.out_dir, job.config_digest), None)
    if not cfg.render.enabled:
        storage.remove(job.output("annotated.mp4"))
        return {"frames": 0, "seconds": 0.0, "enabled": False}
    overlay = _overlay(job, cfg)
    pieces: list[Path] = []
    kept = 0
    owned = owned_ranges(list(job.plan))
    for index, frames in enumerate(owned):
        rows = masks_rows(job.output("masks.parquet"), frames)
        digest = rows_digest(rows, overlay)
        mp4, meta = _piece(job, index)
        if mp4.is_file() and meta.is_file() and json.loads(meta.read_text()).get("digest") == digest:
            kept += 1
        else:
            mp4.parent.mkdir(parents=True, exist_ok=True)
            render_range(job.local_video, job.info, frames, rows, mp4, overlay)
            meta.write_text(json.dumps({"digest": digest, "frames": len(frames)}))
            log.info("render: piece %d/%d (frames %d-%d)", index + 1, len(owned), frames.start, frames.stop - 1)
        pieces.append(mp4)
    local = Path(job.work_dir) / "annotated.mp4"
    concat_videos(pieces, local)
    storage.upload(local, job.output("annotated.mp4"))
    local.unlink()
    shutil.rmtree(Path(job.work_dir) / "render", ignore_errors=True)
    frames_total = sum(len(r) for r in owned)
    log.info("render: %d piece(s), %d drawn during segmentation and kept", len(pieces), kept)
    return {
        "frames": frames_total,
        "pieces": len(pieces),
        "pieces_kept": kept,
        "seconds": time.perf_counter() - t0,
        "enabled": True,
    }


def _rss_mib() -> float:
    import psutil

    return float(psutil.Process().memory_info().rss) / 2**20


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("sam2flow", "sam2", "torch", "ultralytics", "prefect", "pyarrow", "pycocotools"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    try:
        first = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.splitlines()
        out["ffmpeg"] = first[0] if first else "unknown"
    except OSError:
        out["ffmpeg"] = "not found"
    return out


def _checkpoint_record(c: ResolvedCheckpoint | None) -> dict[str, Any] | None:
    if c is None:
        return None
    return {
        "spec": c.spec,
        "path": str(c.path),
        "sha256": c.sha256,
        "verified": c.verified,
        "random_weights": c.random_weights,
    }


def finalize(job: VideoJob, cfg: PipelineConfig, stages: dict[str, Any]) -> str:
    """Write manifest.json, check the outputs exist, then write ``_SUCCESS`` last. Returns the output folder."""
    manifest: dict[str, Any] = {
        "video_id": job.video_id,
        "input": job.video,
        "local_input": job.local_video,
        "probe": job.info.to_dict(),
        "frames_processed": job.num_frames,
        "subsequences": [asdict(s) for s in job.plan],
        "config": cfg.model_dump(mode="json"),
        "config_digest": job.config_digest,
        "checkpoints": {"sam2": _checkpoint_record(job.sam2), "yolo": _checkpoint_record(job.yolo)},
        "random_weights": job.random_weights,
        "finetune": stages.get("finetune"),
        "versions": _versions(),
        "stages": stages,
        "wall_seconds": time.time() - job.started,
        "outputs": {
            n: job.output(n)
            for n in (*OUTPUT_FILES, EVENTS)
            if (n != "annotated.mp4" or cfg.render.enabled) and (n != EVENTS or cfg.zones.regions)
        },
    }
    storage.write_bytes(job.output("manifest.json"), json.dumps(manifest, indent=2, default=str).encode())
    missing = [n for n, uri in manifest["outputs"].items() if not storage.exists(uri)]
    if missing:
        raise RuntimeError(f"{job.video_id}: outputs missing, not marking complete: {missing}")
    storage.write_bytes(job.output(SUCCESS), b"")
    if not cfg.output.keep_frames:
        shutil.rmtree(job.work_dir, ignore_errors=True)
    return job.out_dir


def _checkpoint_from_record(rec: dict[str, Any] | None) -> ResolvedCheckpoint | None:
    if rec is None:
        return None
    return ResolvedCheckpoint(
        rec["spec"], Path(rec["path"]), None, bool(rec["random_weights"]), rec["sha256"], bool(rec["verified"])
    )


def load_job(out_dir: str) -> tuple[VideoJob, PipelineConfig, dict[str, Any]]:
    """Rebuild a run's job, config and manifest from ``OUT/<video_id>/manifest.json`` (no model is loaded).

    Raises:
        FileNotFoundError: When the folder has no manifest or a part file is missing.
    """
    uri = storage.join(out_dir, "manifest.json")
    if not storage.exists(uri):
        raise FileNotFoundError(f"{uri} does not exist: give the output folder of a finished run (OUT/<video_id>)")
    m = json.loads(storage.read_bytes(uri))
    cfg = PipelineConfig.model_validate(m["config"])
    sam2 = _checkpoint_from_record(m["checkpoints"]["sam2"])
    assert sam2 is not None
    job = VideoJob(
        video=m["input"],
        local_video=m.get("local_input", m["input"]),
        video_id=m["video_id"],
        out_dir=out_dir.rstrip("/"),
        work_dir=tempfile.mkdtemp(prefix="sam2flow-restitch-"),
        info=VideoProbe(**m["probe"]),
        num_frames=int(m["frames_processed"]),
        plan=tuple(Subsequence(**s) for s in m["subsequences"]),
        config_digest=m["config_digest"],
        sam2=sam2,
        yolo=_checkpoint_from_record(m["checkpoints"]["yolo"]),
    )
    missing = [job.part_uri(i) for i in range(len(job.plan)) if not part_done(job, i)]
    if missing:
        raise FileNotFoundError(f"{len(missing)} part file(s) missing, e.g. {missing[0]}: run `sam2flow run` again")
    return job, cfg, m


def restitch(out_dir: str, overrides: list[str] | None = None, rerender: bool = False) -> dict[str, Any]:
    """Rebuild masks.parquet and tracks.parquet (and, if asked, annotated.mp4) from a run's part files.

    Only stitching and render settings may change; no model runs. ``_SUCCESS`` is removed first and written again
    last, so an interrupted re-stitch never looks complete.

    Raises:
        ConfigError: When an override would change the segmentation (the part files would no longer match).
    """
    job, old_cfg, manifest = load_job(out_dir)
    cfg = with_overrides(old_cfg, overrides)
    if cfg.digest() != old_cfg.digest():
        raise ConfigError(
            "re-stitching can only change stitching.*, render.* and zone event settings (zones.*, unless "
            "zones.filter_prompts is on); run `sam2flow run` for the others"
        )
    storage.remove(job.output(SUCCESS))
    stages = dict(manifest.get("stages", {}))
    stages["stitch"] = stitch(job, cfg)
    if rerender:
        stages["render"] = render(job, cfg)
    elif cfg.render.enabled:
        stages["render"] = {**stages.get("render", {}), "stale": True}
    stages["restitched"] = True
    finalize(job, cfg, stages)
    return dict(stages["stitch"])
