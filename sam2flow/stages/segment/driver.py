"""Segmentation of one subsequence: detector prompts at keyframes, SAM2 propagation, one part file."""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from sam2flow.config import DetectorConfig, ManualPrompt, PipelineConfig
from sam2flow.control import stopping
from sam2flow.core import rle
from sam2flow.core.prompts import box_iou, filter_detections, is_duplicate_mask, new_object_prompts
from sam2flow.core.types import (
    BoolArray,
    Detections,
    FrameMasks,
    LocalObjId,
    MaskRow,
    ObjectPrompt,
    ReferencePrompt,
    Subsequence,
)
from sam2flow.core.zones import Polygon, box_touches_polygon
from sam2flow.io.parquet import (
    DETECTIONS,
    IDENTITIES,
    MANUAL_IDS,
    ParquetSink,
    detections_json,
    part_schema,
    part_table,
    read_table,
    rows_from_table,
)
from sam2flow.readers.references import ReferenceSet, load_references
from sam2flow.results import SegmentStats

log = logging.getLogger(__name__)

FLUSH_FRAMES = 32
REACQUIRE_FRAMES = 30  # a detection matching an object lost this recently re-prompts that object
Box = tuple[float, float, float, float]
TARGET_IOU = 0.5  # a correction's track_box finds the object whose latest box overlaps it at least this much
CANDIDATES_PER_NEW = 3  # detections tried (each costs one SAM2 decoder pass) per object a keyframe may add


class Session(Protocol):
    """What the driver needs from a segmenter's per-subsequence state (SAM2's, or a test double's)."""

    num_frames: int
    height: int
    width: int

    def add(self, prompt: ObjectPrompt) -> FrameMasks: ...

    def remove(self, obj_id: LocalObjId) -> None: ...

    def reset(self) -> None: ...

    def add_references(self, frames: Sequence[ReferencePrompt]) -> None: ...

    def propagate(self, start: int, stop: int, reverse: bool = False) -> Iterator[FrameMasks]: ...


class Segmenter(Protocol):
    """Opens one session per subsequence folder."""

    def session(self, frames_dir: Path) -> AbstractContextManager[Session]: ...


Detector = Callable[[Path], Detections]


@dataclass(frozen=True)
class SegmentSettings:
    """What segmenting a subsequence needs from the configuration."""

    detector: DetectorConfig
    prompts: tuple[ManualPrompt, ...] = ()
    max_objects: int = 20
    zones: tuple[Polygon, ...] | None = None
    """When set, a detection prompts SAM2 only if its box touches one of these polygons."""
    backward_fill: bool = False
    """Track objects first prompted after the subsequence's first frame back to its start (`fill_backward`)."""
    references: ReferenceSet | None = None
    """Identities every subsequence starts with (`SubsequenceObjects.admit_references`)."""

    @classmethod
    def from_config(cls, cfg: PipelineConfig, extra_prompts: Sequence[ManualPrompt] = ()) -> SegmentSettings:
        """The settings of a pipeline configuration, with ``extra_prompts`` (corrections) after its own."""
        zones = tuple(z.polygon for z in cfg.zones.regions) if cfg.zones.filter_prompts else None
        prompts = (*cfg.prompts, *extra_prompts)
        refs = load_references(cfg.references.path) if cfg.references.path is not None else None
        return cls(cfg.detector, prompts, cfg.segmenter.max_objects, zones, cfg.segmenter.backward_fill, refs)


class _TimedSession:
    """Wraps a session and adds up the time spent inside its calls."""

    def __init__(self, inner: Session) -> None:
        self.inner = inner
        self.seconds = 0.0
        self.num_frames, self.height, self.width = inner.num_frames, inner.height, inner.width

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

    def reset(self) -> None:
        t0 = time.perf_counter()
        try:
            self.inner.reset()
        finally:
            self.seconds += time.perf_counter() - t0

    def add_references(self, frames: Sequence[ReferencePrompt]) -> None:
        t0 = time.perf_counter()
        try:
            self.inner.add_references(frames)
        finally:
            self.seconds += time.perf_counter() - t0

    def propagate(self, start: int, stop: int, reverse: bool = False) -> Iterator[FrameMasks]:
        it = iter(self.inner.propagate(start, stop, reverse=True) if reverse else self.inner.propagate(start, stop))
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
    prompts: Iterable[ManualPrompt], sub: Subsequence, names: dict[int, str] | None
) -> dict[int, list[tuple[str, ObjectPrompt]]]:
    """The manual prompts inside ``sub``, by local frame, each with the key of the object it describes.

    Prompts sharing an ``obj_id`` share a key (one object); any other prompt is an object of its own. Local ids are
    assigned when the prompt is added.
    """
    by_name = {v: k for k, v in (names or {}).items()}
    out: dict[int, list[tuple[str, ObjectPrompt]]] = {}
    for n, p in enumerate(prompts):
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


def correction_targets(prompts: Iterable[ManualPrompt], sub: Subsequence) -> dict[str, Box]:
    """For each object key (``id:<obj_id>``) of the corrections inside ``sub`` that carry a ``track_box``, the box
    of its earliest such prompt: where the track it corrects was."""
    out: dict[str, Box] = {}
    for p in sorted((p for p in prompts if sub.contains(p.frame)), key=lambda p: p.frame):
        if p.obj_id is not None and p.track_box is not None:
            out.setdefault(f"id:{p.obj_id}", p.track_box)
    return out


def carried_prompts(prev_part: str, sub: Subsequence) -> dict[int, list[tuple[LocalObjId, ObjectPrompt]]]:
    """Mask prompts continuing the previous subsequence's objects (carry mode), by local frame.

    Each object of the previous part file that is present on the shared frames is carried from the first shared
    frame on which it has a mask. The new local ids follow the previous ids' order.

    Returns:
        Per local frame, (previous local id, prompt) pairs.
    """
    t = read_table(prev_part, filters=[("frame", ">=", sub.start), ("frame", "<", sub.stop)])
    first: dict[LocalObjId, MaskRow] = {}
    for row in sorted(rows_from_table(t), key=lambda r: (r.frame, r.obj_id)):
        first.setdefault(row.obj_id, row)
    out: dict[int, list[tuple[LocalObjId, ObjectPrompt]]] = {}
    for new_id, prev_id in enumerate(sorted(first)):
        row = first[prev_id]
        local = sub.to_local(row.frame)
        prompt = ObjectPrompt(
            local_id=LocalObjId(new_id),
            frame=local,
            class_id=row.class_id,
            class_name=row.class_name,
            mask=rle.decode(row.rle, row.height, row.width),
            source="carry",
        )
        out.setdefault(local, []).append((prev_id, prompt))
    return out


def in_zones(dets: Detections, polygons: Iterable[Polygon]) -> Detections:
    """The detections whose box touches at least one of the polygons."""
    polys = list(polygons)
    keep = np.array([any(box_touches_polygon(b, p) for p in polys) for b in dets.boxes], dtype=bool)
    return dets.select(keep)


def _boxes(fm: FrameMasks | None) -> np.ndarray:
    if fm is None or not fm.obj_ids:
        return np.zeros((0, 4), np.float32)
    return np.array([rle.bbox(m) for m in fm.masks], dtype=np.float32)


class SubsequenceObjects:
    """The objects of one subsequence while it is tracked, and the rows they produce.

    Its methods are the steps of the algorithm: on each prompt frame, admit the objects carried over from the
    previous subsequence, then the manual prompts, then the detector's new objects; emit every tracked frame's masks
    as part-file rows. All objects share the one SAM2 session.
    """

    def __init__(
        self,
        session: Session,
        sub: Subsequence,
        settings: SegmentSettings,
        sink: ParquetSink,
        carried: dict[int, list[tuple[LocalObjId, ObjectPrompt]]],
        links: dict[int, int],
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.session, self.sub, self.settings, self.sink, self.progress = session, sub, settings, sink, progress
        self.carried, self.links = carried, links
        self.classes: dict[LocalObjId, tuple[int, str]] = {}
        self.manual_ids: dict[str, LocalObjId] = {}
        self.last_seen: dict[LocalObjId, tuple[int, BoolArray]] = {}  # one mask per object, to re-acquire lost ones
        self.first_prompts: dict[LocalObjId, list[ObjectPrompt]] = {}  # new objects' prompts on their first frame
        self.identities: dict[LocalObjId, int] = {}  # reference identities: local id → track id
        self.pending: list[MaskRow] = []
        self.rows = self.done = self.backfilled = 0
        self.masked_frames: set[int] = set()
        self.keyframe_boxes: list[tuple[int, list[list[float]]]] = []  # what the detector found, for the review
        self.targets = correction_targets(settings.prompts, sub)

    def budget(self) -> int:
        """How many more objects this subsequence may take."""
        return self.settings.max_objects - len({int(o) for o in self.classes} | set(self.links))

    def next_id(self) -> int:
        """The first local id not used by a known object nor reserved for a carried one."""
        return max([*map(int, self.classes), *self.links, -1]) + 1

    def emit(self, fm: FrameMasks) -> None:
        """Record one frame's masks as part-file rows (written in batches)."""
        stopping.check()
        for o, m in zip(fm.obj_ids, fm.masks):
            self.last_seen[o] = (fm.frame, m)
        rows = [self._row(fm, i) for i in range(len(fm.obj_ids))]
        self.pending.extend(rows)
        self.rows += len(rows)
        if rows:
            self.masked_frames.add(fm.frame)
        self.done = fm.frame + 1
        if self.progress is not None:
            self.progress(self.done, self.sub.length)
        if self.pending and fm.frame % FLUSH_FRAMES == FLUSH_FRAMES - 1:
            self.flush()

    def _row(self, fm: FrameMasks, i: int) -> MaskRow:
        obj, mask = fm.obj_ids[i], fm.masks[i]
        class_id, class_name = self.classes[obj]
        h, w = mask.shape
        counts, box, area = rle.describe(mask)
        return MaskRow(
            frame=self.sub.to_global(fm.frame),
            obj_id=obj,
            class_id=class_id,
            class_name=class_name,
            score=float(fm.scores[i]),
            bbox=box,
            area=area,
            height=int(h),
            width=int(w),
            rle=counts,
        )

    def flush(self) -> None:
        """Write the rows not written yet."""
        if self.pending:
            self.sink.write(part_table(self.pending))
            self.pending.clear()

    def admit_references(self, refs: ReferenceSet) -> None:
        """Start the session with the reference frames: identity ``n`` of the library is local object ``n``, with the
        identity's name as its class; the frames are conditioning frames before the subsequence's own."""
        local = {ident.name: LocalObjId(n) for n, ident in enumerate(refs.identities)}
        for ident in refs.identities:
            self.classes[local[ident.name]] = (-1, ident.name)
            self.identities[local[ident.name]] = ident.track_id
        frames = [
            ReferencePrompt(f.rgb, {local[name]: m for name, m in f.masks.items()}, f.source_frame) for f in refs.frames
        ]
        self.session.add_references(frames)

    def admit_carried(self, k: int) -> list[ObjectPrompt]:
        """The previous subsequence's objects that continue from frame ``k`` (their classes are known now)."""
        prompts = [p for _, p in self.carried.get(k, []) if int(p.local_id) in self.links]
        for p in prompts:
            self.classes[p.local_id] = (p.class_id, p.class_name)
            if p.mask is not None:  # known even if SAM2 finds nothing on this frame
                self.last_seen[p.local_id] = (k, p.mask)
        return prompts

    def admit_manual(
        self, manual: list[tuple[str, ObjectPrompt]], budget: int, held: FrameMasks | None = None
    ) -> tuple[list[ObjectPrompt], int]:
        """The manual prompts of one frame with their local ids: a prompt for a known object (same ``obj_id``, or
        the object a correction's ``track_box`` finds) corrects it; any other starts a new object while ``budget``
        allows. ``held`` is every object's masks on the frame. Returns the prompts and how many are new."""
        prompts: list[ObjectPrompt] = []
        fresh = 0
        first_free = self.next_id()
        for key, p in manual:
            local_id = self.manual_ids.get(key)
            if local_id is None and key in self.targets:
                local_id = self._corrected(self.targets[key], held)
                if local_id is not None:
                    self.manual_ids[key] = local_id
            if local_id is None:
                if fresh >= budget:
                    continue
                local_id = self.manual_ids[key] = LocalObjId(first_free + fresh)
                fresh += 1
            prompts.append(replace(p, local_id=local_id))
        return prompts, fresh

    def _corrected(self, box: Box, held: FrameMasks | None) -> LocalObjId | None:
        """The object a correction's ``track_box`` finds: the one whose latest mask (on this frame, else the last
        one it had) has the box closest to it, if their IoU is at least `TARGET_IOU`; objects prompts already
        name are not candidates."""
        latest = {o: m for o, (_, m) in self.last_seen.items()}
        if held is not None:
            latest.update(zip(held.obj_ids, held.masks))
        taken = set(self.manual_ids.values())
        best, best_iou = None, TARGET_IOU
        for o, m in latest.items():
            if o in taken or not m.any():
                continue
            iou = float(box_iou(box, rle.bbox(m))[0, 0])
            if iou >= best_iou:
                best, best_iou = o, iou
        return best

    def add(self, prompts: list[ObjectPrompt], held: FrameMasks | None) -> FrameMasks | None:
        """Add prompts to the session; returns every object's masks on their frame after the last one."""
        for p in prompts:
            self._note_first(p)
            self.classes.setdefault(p.local_id, (p.class_id, p.class_name))
            held = self.session.add(p)
        return held

    def _note_first(self, p: ObjectPrompt) -> None:
        """Keep the prompts of an object new in this subsequence (not carried) made on its first frame."""
        first = self.first_prompts.get(p.local_id)
        if first is not None and first[0].frame == p.frame:
            first.append(p)
        elif p.local_id not in self.classes and p.source != "carry":
            self.first_prompts[p.local_id] = [p]

    def admit_detections(
        self, dets: Detections, k: int, held: FrameMasks | None, cap: int
    ) -> tuple[FrameMasks | None, int]:
        """Add a keyframe's detections as new objects, checking each one's own first mask.

        A cheap first pass drops detections whose box repeats a tracked object's. Then a candidate whose mask
        repeats a tracked object, or an object about to be carried over from the previous subsequence, is removed
        again; one that matches an object lost within `REACQUIRE_FRAMES` re-prompts that object. At most ``cap``
        new objects are added.

        Returns:
            The masks of every object on the keyframe after the additions, and how many prompts were kept.
        """
        d = self.settings.detector
        candidates = new_object_prompts(
            dets, _boxes(held), k, CANDIDATES_PER_NEW * cap, d.duplicate_iou, style=d.prompt_style
        )
        upcoming = [p.mask for f, ps in self.carried.items() if f > k for _, p in ps if p.mask is not None]
        accepted = reacquired = 0
        for c in candidates:
            if accepted >= cap:
                break
            c = replace(c, local_id=LocalObjId(self.next_id()))
            fm = self.session.add(c)
            mine = fm.obj_ids.index(c.local_id) if c.local_id in fm.obj_ids else None
            cand = np.zeros(fm.masks.shape[1:], bool) if mine is None else fm.masks[mine]
            others = [m for o, m in zip(fm.obj_ids, fm.masks) if o != c.local_id]
            if is_duplicate_mask(cand, others, d.duplicate_iou) or (
                upcoming and is_duplicate_mask(cand, upcoming, d.duplicate_iou)
            ):
                self.session.remove(c.local_id)
                continue
            back = [o for o, m in self._recently_lost(fm, k).items() if is_duplicate_mask(cand, [m], d.duplicate_iou)]
            if back:
                self.session.remove(c.local_id)
                held = self.session.add(replace(c, local_id=back[0]))
                reacquired += 1
                continue
            self._note_first(c)
            self.classes[c.local_id] = (c.class_id, c.class_name)
            held = fm
            accepted += 1
        return held, accepted + reacquired

    def prompt_frame(
        self,
        k: int,
        held: FrameMasks | None,
        manual: list[tuple[str, ObjectPrompt]],
        detect: Callable[[], Detections] | None,
    ) -> tuple[FrameMasks | None, int]:
        """Admit every new object of prompt frame ``k``: carried ones, manual ones, then (when ``detect`` is given,
        and only if the object budget allows) the detections it returns. ``held`` is every object's masks on ``k``
        before.

        Returns:
            Every object's masks on ``k`` after the additions, and how many prompts were added.
        """
        prompts = self.admit_carried(k)
        budget = self.budget()
        manual_prompts, fresh = self.admit_manual(manual, budget, held)
        prompts += manual_prompts
        budget -= fresh
        held = self.add(prompts, held)
        added = len(prompts)
        if detect is not None and budget > 0:
            d = self.settings.detector
            dets = filter_detections(detect(), d.confidence, None)
            if self.settings.zones is not None:
                dets = in_zones(dets, self.settings.zones)
            boxes = [[*map(float, b), float(c)] for b, c in zip(dets.boxes, dets.scores)]
            self.keyframe_boxes.append((self.sub.to_global(k), boxes))
            held, n = self.admit_detections(dets, k, held, min(budget, d.max_objects_per_keyframe))
            added += n
        return held, added

    def fill_backward(self) -> None:
        """Track the objects first prompted after frame 0 backwards from their first prompt to the subsequence's
        start, and add their masks on those earlier frames (where the segmenter finds them). Runs after the forward
        pass: the session is reset and holds only these objects, so its rows come after the forward ones."""
        late = {o: ps for o, ps in self.first_prompts.items() if ps[0].frame > 0}
        if not late:
            return
        self.session.reset()
        for ps in late.values():
            for p in ps:
                self.session.add(p)
        start = {o: ps[0].frame for o, ps in late.items()}
        for fm in self.session.propagate(0, max(start.values()), reverse=True):
            stopping.check()
            keep = [i for i, o in enumerate(fm.obj_ids) if fm.frame < start.get(o, 0)]
            rows = [self._row(fm, i) for i in keep]
            self.pending.extend(rows)
            self.rows += len(rows)
            self.backfilled += len(rows)
            if rows:
                self.masked_frames.add(fm.frame)
            if fm.frame % FLUSH_FRAMES == 0:
                self.flush()
        self.flush()

    def _recently_lost(self, fm: FrameMasks, frame: int) -> dict[LocalObjId, BoolArray]:
        """Last known masks of the objects absent on ``frame`` that were seen within `REACQUIRE_FRAMES` of it."""
        return {
            o: m for o, (f, m) in self.last_seen.items() if o not in fm.obj_ids and 0 <= frame - f <= REACQUIRE_FRAMES
        }


def carry_links(carried: dict[int, list[tuple[LocalObjId, ObjectPrompt]]], max_objects: int) -> dict[int, int]:
    """Which local id continues which id of the previous subsequence (at most ``max_objects`` per frame)."""
    links: dict[int, int] = {}
    for pairs in carried.values():
        for prev_id, p in pairs[:max_objects]:
            links[int(p.local_id)] = int(prev_id)
    return links


def _track_forward(
    objects: SubsequenceObjects,
    session: _TimedSession,
    prompt_frames: list[int],
    manual: dict[int, list[tuple[str, ObjectPrompt]]],
    detector_frames: set[int],
    detector: Detector | None,
    frames_dir: Path,
) -> None:
    """The forward pass: propagate to each prompt frame, admit its new objects there, and emit every frame."""
    sub = objects.sub
    done = -1  # last local frame whose masks were emitted
    for k in prompt_frames:
        held: FrameMasks | None = None
        for fm in session.propagate(done + 1, k):
            if fm.frame < k:
                objects.emit(fm)
            else:
                held = fm
        keyframe = frames_dir / f"{k:05d}.jpg"
        detect = functools.partial(detector, keyframe) if detector is not None and k in detector_frames else None
        held, added = objects.prompt_frame(k, held, manual.get(k, []), detect)
        if held is not None:
            objects.emit(held)
        if added:
            log.info(
                "subsequence %d: frame %d: %d prompt(s) added (%d object(s) in all)",
                sub.index, sub.to_global(k), added, len(objects.classes),
            )  # fmt: skip
        done = k
    for fm in session.propagate(done + 1, sub.length - 1):
        objects.emit(fm)
    objects.flush()


def segment_subsequence(
    segmenter: Segmenter,
    detector: Detector | None,
    frames_dir: Path,
    sub: Subsequence,
    settings: SegmentSettings,
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
        settings: Detector, manual prompts, object limit and zone filter.
        part_uri: Where the part file goes.
        class_names: The detector's id → name table, to give manual prompts a class id.
        progress: Called with (frames done, frames total).
        carry_from: Carry mode: the previous subsequence's part file, whose objects continue here (mask prompts
            on the shared frames); the links are recorded in this part file's metadata for the stitcher.
    """
    t0 = time.perf_counter()
    det = settings.detector
    manual = manual_prompts_for(settings.prompts, sub, class_names)
    carried = carried_prompts(carry_from, sub) if carry_from else {}
    links = carry_links(carried, settings.max_objects)
    dropped = sum(len(v) for v in carried.values()) - len(links)
    if dropped > 0:
        log.warning("subsequence %d: %d carried object(s) over segmenter.max_objects dropped", sub.index, dropped)
    detector_frames = set(keyframes(sub.length, det.detect_every) if detector is not None and det.enabled else [])
    with ParquetSink(part_uri, part_schema(links)) as sink, segmenter.session(frames_dir) as raw_session:
        session = _TimedSession(raw_session)
        objects = SubsequenceObjects(session, sub, settings, sink, carried, links, progress)
        if settings.references is not None:
            objects.admit_references(settings.references)
        prompt_frames = sorted(detector_frames | set(manual) | set(carried))
        _track_forward(objects, session, prompt_frames, manual, detector_frames, detector, frames_dir)
        forward_seconds = session.seconds
        if settings.backward_fill:
            objects.fill_backward()
        named = {int(o): int(key[3:]) for key, o in objects.manual_ids.items() if key.startswith("id:")}
        if named:  # the stitcher keeps each named object one track through the video
            sink.add_metadata(MANUAL_IDS, json.dumps(named))
        if objects.keyframe_boxes:
            sink.add_metadata(DETECTIONS, detections_json(objects.keyframe_boxes))
        if objects.identities:  # and each reference identity its own track id
            sink.add_metadata(IDENTITIES, json.dumps({int(o): t for o, t in objects.identities.items()}))
    if progress is not None and objects.done < sub.length:
        progress(sub.length, sub.length)
    return SegmentStats(
        index=sub.index,
        frames=sub.length,
        objects=len(objects.classes),
        rows=objects.rows,
        frames_with_masks=len(objects.masked_frames),
        seconds=time.perf_counter() - t0,
        sam2_seconds=session.seconds,
        backfill_rows=objects.backfilled,
        backfill_seconds=session.seconds - forward_seconds,
    )
