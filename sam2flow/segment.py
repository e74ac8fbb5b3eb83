"""Segmentation of one subsequence: detector prompts at keyframes, SAM2 propagation, one part file."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from sam2flow.config import PipelineConfig
from sam2flow.core import rle
from sam2flow.core.prompts import filter_detections, is_duplicate_mask, new_object_prompts
from sam2flow.core.types import Detections, FrameMasks, LocalObjId, MaskRow, ObjectPrompt, Subsequence
from sam2flow.core.zones import box_touches_polygon
from sam2flow.io.parquet import ParquetSink, part_schema, part_table, read_table

log = logging.getLogger(__name__)

FLUSH_FRAMES = 32
REACQUIRE_FRAMES = 30  # a detection matching an object lost this recently re-prompts that object
CANDIDATES_PER_NEW = 3  # detections tried (each costs one SAM2 decoder pass) per object a keyframe may add


class Session(Protocol):
    """What the driver needs from a segmenter's per-subsequence state (SAM2's, or a test double's)."""

    num_frames: int
    height: int
    width: int

    @property
    def object_ids(self) -> list[LocalObjId]: ...

    def add(self, prompt: ObjectPrompt) -> FrameMasks: ...

    def remove(self, obj_id: LocalObjId) -> None: ...

    def propagate(self, start: int, stop: int) -> Iterator[FrameMasks]: ...


class Segmenter(Protocol):
    """Opens one session per subsequence folder."""

    def session(self, frames_dir: Path) -> AbstractContextManager[Session]: ...


Detector = Callable[[Path], Detections]


@dataclass(frozen=True)
class SegmentStats:
    """What one subsequence produced."""

    index: int
    frames: int
    objects: int
    rows: int
    frames_with_masks: int
    seconds: float
    sam2_seconds: float = 0.0
    """Time spent inside the segmenter's calls (adding prompts, propagating): the rest is sam2flow's overhead."""


class _TimedSession:
    """Wraps a session and adds up the time spent inside its calls."""

    def __init__(self, inner: Session) -> None:
        self.inner = inner
        self.seconds = 0.0
        self.num_frames, self.height, self.width = inner.num_frames, inner.height, inner.width

    @property
    def object_ids(self) -> list[LocalObjId]:
        return self.inner.object_ids

    def add(self, prompt: ObjectPrompt) -> FrameMasks:
        t0 = time.perf_counter()
        try:
            return self.inner.add(prompt)
        finally:
            self.seconds += time.perf_counter() - t0

    def remove(self, obj_id: LocalObjId) -> None:
        t0 = time.perf_counter()
        try:
            self.inner.remove(obj_id)
        finally:
            self.seconds += time.perf_counter() - t0

    def propagate(self, start: int, stop: int) -> Iterator[FrameMasks]:
        it = iter(self.inner.propagate(start, stop))
        while True:
            t0 = time.perf_counter()
            try:
                fm = next(it)
            except StopIteration:
                return
            finally:
                self.seconds += time.perf_counter() - t0
            yield fm


def keyframes(length: int, detect_every: int | None) -> list[int]:
    """Local frames where the detector runs: the first, then every ``detect_every`` frames."""
    return list(range(0, length, detect_every or length))


def manual_prompts_for(
    cfg: PipelineConfig, sub: Subsequence, names: dict[int, str] | None
) -> dict[int, list[tuple[str, ObjectPrompt]]]:
    """The config's manual prompts inside ``sub``, by local frame, each with the key of the object it describes.

    Prompts sharing an ``obj_id`` share a key (one object); any other prompt is an object of its own. Local ids are
    assigned when the prompt is added.
    """
    by_name = {v: k for k, v in (names or {}).items()}
    out: dict[int, list[tuple[str, ObjectPrompt]]] = {}
    for n, p in enumerate(cfg.prompts):
        if not sub.contains(p.frame):
            continue
        local = sub.to_local(p.frame)
        key = f"id:{p.obj_id}" if p.obj_id is not None else f"prompt:{n}"
        out.setdefault(local, []).append(
            (
                key,
                ObjectPrompt(
                    local_id=LocalObjId(-1),
                    frame=local,
                    class_id=by_name.get(p.class_name, -1),
                    class_name=p.class_name,
                    points=tuple((float(x), float(y)) for x, y in p.points),
                    labels=tuple(int(v) for v in p.labels),
                    box=p.box,
                    source="manual",
                ),
            )
        )
    return out


def carried_prompts(prev_part: str, sub: Subsequence) -> dict[int, list[tuple[LocalObjId, ObjectPrompt]]]:
    """Mask prompts continuing the previous subsequence's objects (carry mode), by local frame.

    Each object of the previous part file that is present on the shared frames is carried from the first shared
    frame on which it has a mask. The new local ids follow the previous ids' order.

    Returns:
        Per local frame, (previous local id, prompt) pairs.
    """
    t = read_table(prev_part, filters=[("frame", ">=", sub.start), ("frame", "<", sub.stop)])
    first: dict[int, dict[str, object]] = {}
    for row in sorted(t.to_pylist(), key=lambda r: (r["frame"], r["obj_id"])):
        first.setdefault(int(row["obj_id"]), row)
    out: dict[int, list[tuple[LocalObjId, ObjectPrompt]]] = {}
    for new_id, prev_id in enumerate(sorted(first)):
        row = first[prev_id]
        local = sub.to_local(int(row["frame"]))  # type: ignore[call-overload]
        mask = rle.decode(str(row["rle"]), int(row["height"]), int(row["width"]))  # type: ignore[call-overload]
        prompt = ObjectPrompt(
            local_id=LocalObjId(new_id),
            frame=local,
            class_id=int(row["class_id"]),  # type: ignore[call-overload]
            class_name=str(row["class_name"]),
            mask=mask,
            source="carry",
        )
        out.setdefault(local, []).append((LocalObjId(prev_id), prompt))
    return out


def _rows(fm: FrameMasks, sub: Subsequence, classes: dict[LocalObjId, tuple[int, str]]) -> Iterable[MaskRow]:
    h, w = fm.masks.shape[1:]
    for obj, mask, score in zip(fm.obj_ids, fm.masks, fm.scores):
        class_id, class_name = classes[obj]
        yield MaskRow(
            frame=sub.to_global(fm.frame),
            obj_id=obj,
            class_id=class_id,
            class_name=class_name,
            score=float(score),
            bbox=rle.bbox(mask),
            area=int(mask.sum()),
            height=int(h),
            width=int(w),
            rle=rle.encode(mask),
        )


def _recently_lost(
    last_seen: dict[LocalObjId, tuple[int, np.ndarray]], fm: FrameMasks, frame: int
) -> dict[LocalObjId, np.ndarray]:
    """Last known masks of the objects absent on ``frame`` that were seen within `REACQUIRE_FRAMES` frames of it."""
    return {o: m for o, (f, m) in last_seen.items() if o not in fm.obj_ids and 0 <= frame - f <= REACQUIRE_FRAMES}


def _add_detections(
    session: Session,
    candidates: list[ObjectPrompt],
    cap: int,
    held: FrameMasks | None,
    classes: dict[LocalObjId, tuple[int, str]],
    reserved: dict[int, int],
    last_seen: dict[LocalObjId, tuple[int, np.ndarray]],
    upcoming: list[np.ndarray],
    duplicate_iou: float,
) -> tuple[FrameMasks | None, int]:
    """Add detector candidates of one keyframe as new objects, checking each one's own first mask.

    A candidate whose mask repeats a tracked object, or an object about to be carried over from the previous
    subsequence, is removed again; one that matches an object lost within `REACQUIRE_FRAMES` re-prompts that object.
    At most ``cap`` new objects are added (``classes`` is updated).

    Returns:
        The masks of every object on the keyframe after the additions, and how many prompts were kept.
    """
    accepted = reacquired = 0
    for c in candidates:
        if accepted >= cap:
            break
        c = replace(c, local_id=LocalObjId(_next_id(classes, reserved)))
        fm = session.add(c)
        mine = fm.obj_ids.index(c.local_id) if c.local_id in fm.obj_ids else None
        others = [m for o, m in zip(fm.obj_ids, fm.masks) if o != c.local_id]
        cand = np.zeros(fm.masks.shape[1:], bool) if mine is None else fm.masks[mine]
        if is_duplicate_mask(cand, others, duplicate_iou) or (
            upcoming and is_duplicate_mask(cand, upcoming, duplicate_iou)
        ):
            session.remove(c.local_id)
            continue
        frame = c.frame
        back = [
            o for o, m in _recently_lost(last_seen, fm, frame).items() if is_duplicate_mask(cand, [m], duplicate_iou)
        ]
        if back:
            session.remove(c.local_id)
            held = session.add(replace(c, local_id=back[0]))
            reacquired += 1
            continue
        classes[c.local_id] = (c.class_id, c.class_name)
        held = fm
        accepted += 1
    return held, accepted + reacquired


def _next_id(classes: dict[LocalObjId, tuple[int, str]], reserved: dict[int, int]) -> int:
    """The first local id not used by a known object nor reserved for a carried one."""
    return max([*map(int, classes), *reserved, -1]) + 1


def in_zones(dets: Detections, polygons: list[list[tuple[float, float]]]) -> Detections:
    """The detections whose box touches at least one of the polygons."""
    keep = np.array([any(box_touches_polygon(b, p) for p in polygons) for b in dets.boxes], dtype=bool)
    return dets.select(keep)


def _boxes(fm: FrameMasks | None) -> np.ndarray:
    if fm is None or not fm.obj_ids:
        return np.zeros((0, 4), np.float32)
    return np.array([rle.bbox(m) for m in fm.masks], dtype=np.float32)


def segment_subsequence(
    segmenter: Segmenter,
    detector: Detector | None,
    frames_dir: Path,
    sub: Subsequence,
    cfg: PipelineConfig,
    part_uri: str,
    class_names: dict[int, str] | None = None,
    progress: Callable[[int, int], None] | None = None,
    carry_from: str | None = None,
) -> SegmentStats:
    """Segment one subsequence and write its part file (atomically: it exists only when complete).

    The detector runs on keyframes; detections that repeat an already tracked object (by box, then by their own
    first mask) are dropped, those matching an object lost a few frames ago re-prompt it, the others become new
    objects from that frame on. Manual prompts inside the subsequence are added on their frames; in carry mode the
    previous subsequence's objects are added from their masks. All objects share one SAM2 inference state. Frames on
    which an object is absent produce no row for it.

    Args:
        segmenter: Opens a tracking session on the JPEG folder.
        detector: Called with a JPEG path on keyframes; None to use manual prompts only.
        frames_dir: The subsequence's ``00000.jpg …``.
        sub: The subsequence (maps local to global frames).
        cfg: The pipeline configuration.
        part_uri: Where the part file goes.
        class_names: The detector's id → name table, to give manual prompts a class id.
        progress: Called with (frames done, frames total).
        carry_from: Carry mode: the previous subsequence's part file, whose objects continue here (mask prompts
            on the shared frames); the links are recorded in this part file's metadata for the stitcher.
    """
    t0 = time.perf_counter()
    det_cfg = cfg.detector
    use_detector = detector is not None and det_cfg.enabled
    manual = manual_prompts_for(cfg, sub, class_names)
    carried = carried_prompts(carry_from, sub) if carry_from else {}
    links: dict[int, int] = {}
    for pairs in carried.values():
        for prev_id, p in pairs[: cfg.segmenter.max_objects]:
            links[int(p.local_id)] = int(prev_id)
    dropped = sum(len(v) for v in carried.values()) - len(links)
    if dropped > 0:
        log.warning("subsequence %d: %d carried object(s) over segmenter.max_objects dropped", sub.index, dropped)
    detector_frames = set(keyframes(sub.length, det_cfg.detect_every) if use_detector else [])
    prompt_frames = sorted(detector_frames | set(manual) | set(carried))
    classes: dict[LocalObjId, tuple[int, str]] = {}
    manual_ids: dict[str, LocalObjId] = {}
    last_seen: dict[LocalObjId, tuple[int, np.ndarray]] = {}  # one mask per object, for re-acquiring lost ones
    stats = {"rows": 0, "frames_with_masks": 0, "done": 0}
    pending: list[MaskRow] = []

    with ParquetSink(part_uri, part_schema(links)) as sink, segmenter.session(frames_dir) as raw_session:
        session = _TimedSession(raw_session)

        def emit(fm: FrameMasks) -> None:
            for o, m in zip(fm.obj_ids, fm.masks):
                last_seen[o] = (fm.frame, m)
            rows = list(_rows(fm, sub, classes))
            pending.extend(rows)
            stats["rows"] += len(rows)
            stats["frames_with_masks"] += bool(rows)
            stats["done"] = fm.frame + 1
            if progress is not None:
                progress(stats["done"], sub.length)
            if len(pending) and fm.frame % FLUSH_FRAMES == FLUSH_FRAMES - 1:
                sink.write(part_table(pending))
                pending.clear()

        done = -1  # last local frame whose masks were emitted
        for k in prompt_frames:
            held: FrameMasks | None = None
            for fm in session.propagate(done + 1, k):
                if fm.frame < k:
                    emit(fm)
                else:
                    held = fm
            new: list[ObjectPrompt] = [p for _, p in carried.get(k, []) if int(p.local_id) in links]
            for p in new:
                classes[p.local_id] = (p.class_id, p.class_name)
                if p.mask is not None:  # known even if SAM2 finds nothing on this frame
                    last_seen[p.local_id] = (k, p.mask)
            budget = cfg.segmenter.max_objects - len({int(o) for o in classes} | set(links))
            fresh = 0  # prompts in `new` that start a new object (the others correct a known one)
            for key, p in manual.get(k, []):
                local_id = manual_ids.get(key)
                if local_id is None:
                    if fresh >= budget:
                        continue
                    local_id = manual_ids[key] = LocalObjId(_next_id(classes, links) + fresh)
                    fresh += 1
                new.append(replace(p, local_id=local_id))
            budget -= fresh
            for p in new:
                classes.setdefault(p.local_id, (p.class_id, p.class_name))
                held = session.add(p)
            added = len(new)
            if use_detector and budget > 0 and k in detector_frames:
                assert detector is not None
                cap = min(budget, det_cfg.max_objects_per_keyframe)
                dets = filter_detections(detector(frames_dir / f"{k:05d}.jpg"), det_cfg.confidence, None)
                if cfg.zones.filter_prompts:
                    dets = in_zones(dets, [z.polygon for z in cfg.zones.regions])
                # Cheap first pass on boxes; then each candidate's own SAM2 mask is compared with the tracked ones.
                candidates = new_object_prompts(
                    dets,
                    _boxes(held),
                    frame=k,
                    next_id=0,
                    max_new=CANDIDATES_PER_NEW * cap,
                    duplicate_iou=det_cfg.duplicate_iou,
                    style=det_cfg.prompt_style,
                )
                upcoming = [p.mask for f, ps in carried.items() if f > k for _, p in ps if p.mask is not None]
                held, n = _add_detections(
                    session, candidates, cap, held, classes, links, last_seen, upcoming, det_cfg.duplicate_iou
                )
                added += n
            if held is not None:
                emit(held)
            if added:
                log.info(
                    "subsequence %d: frame %d: %d prompt(s) added (%d object(s) in all)",
                    sub.index,
                    sub.to_global(k),
                    added,
                    len(classes),
                )
            done = k
        for fm in session.propagate(done + 1, sub.length - 1):
            emit(fm)
        if pending:
            sink.write(part_table(pending))
    if progress is not None and stats["done"] < sub.length:
        progress(sub.length, sub.length)
    return SegmentStats(
        index=sub.index,
        frames=sub.length,
        objects=len(classes),
        rows=stats["rows"],
        frames_with_masks=stats["frames_with_masks"],
        seconds=time.perf_counter() - t0,
        sam2_seconds=session.seconds,
    )
