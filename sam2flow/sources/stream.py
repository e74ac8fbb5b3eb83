"""A stream's tracks across its segments: each segment is its own run; consecutive segments are linked by the masks
on the last frame of one and the first frame of the next (the same matching rule as inside a video), and
reference identities keep their own ids. The table grows by one segment at a time and is rewritten atomically.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from sam2flow.core.stitching import FrameObjects, MatchRule, joined, propose_boundary
from sam2flow.core.types import LocalObjId
from sam2flow.io import storage
from sam2flow.io.parquet import read_table
from sam2flow.manifest import read_manifest

log = logging.getLogger(__name__)

TRACKS = "tracks.parquet"
SCHEMA = pa.schema(
    [
        pa.field("stream_track_id", pa.int32(), nullable=False),
        pa.field("segment", pa.int32(), nullable=False),
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("track_id", pa.int32(), nullable=False),
        pa.field("class_name", pa.string(), nullable=False),
        pa.field("first_frame", pa.int64(), nullable=False),
        pa.field("last_frame", pa.int64(), nullable=False),
        pa.field("segment_start", pa.float64(), nullable=False, metadata={"unit": "s (the source's clock)"}),
        pa.field("run", pa.string(), nullable=False),
    ],
    metadata={"sam2flow": "stream-tracks"},
)


def _edge_objects(run_dir: str, frame: int) -> tuple[FrameObjects, int, int]:
    t = read_table(
        storage.join(run_dir, "masks.parquet"), columns=["track_id", "rle", "height", "width"],
        filters=[("frame", "=", frame)],
    )  # fmt: skip
    rows = t.to_pylist()
    size = (rows[0]["height"], rows[0]["width"]) if rows else (0, 0)
    return {0: {LocalObjId(r["track_id"]): r["rle"] for r in rows}}, *size


def link_segments(prev_run: str, prev_frames: int, next_run: str, rule: MatchRule) -> dict[int, int]:
    """Which track of ``next_run`` continues which track of ``prev_run``: masks on the last frame of one against the
    first frame of the other."""
    left, h, w = _edge_objects(prev_run, prev_frames - 1)
    right, h2, w2 = _edge_objects(next_run, 0)
    if not left[0] or not right[0] or (h, w) != (h2, w2):
        return {}
    return {int(m.right[1]): int(m.left[1]) for m in joined(propose_boundary(0, 1, left, right, [0], h, w, rule))}


@dataclass
class StreamTracks:
    """The stream-level track table of ``folder`` (``tracks.parquet``), continued from what it already holds."""

    folder: str
    rule: MatchRule
    identities: set[int] = field(default_factory=set)
    """Track ids of reference identities: the same id in every segment, so the same stream track."""
    rows: list[dict[str, object]] = field(default_factory=list)
    _last: tuple[str, int, dict[int, int]] | None = None
    _next: int = 1

    def __post_init__(self) -> None:
        uri = storage.join(self.folder, TRACKS)
        if storage.exists(uri):
            self.rows = read_table(uri).to_pylist()
            self._next = (
                max([int(str(r["stream_track_id"])) for r in self.rows] + [max(self.identities, default=0)]) + 1
            )
        else:
            self._next = max(self.identities, default=0) + 1

    def add(self, segment: int, start: float, run_dir: str | None) -> dict[int, int]:
        """Add a finished segment (``run_dir`` None: it failed, and the next one starts new tracks); returns its
        track → stream track map."""
        if run_dir is None:
            self._last = None
            return {}
        manifest = read_manifest(run_dir)
        frames, video_id = manifest.frames_processed, manifest.video_id
        tracks = read_table(storage.join(run_dir, "tracks.parquet")).to_pylist()
        links = link_segments(self._last[0], self._last[1], run_dir, self.rule) if self._last else {}
        before = self._last[2] if self._last else {}
        mapping: dict[int, int] = {}
        for t in sorted(tracks, key=lambda t: int(t["track_id"])):
            tid = int(t["track_id"])
            if tid in self.identities:
                mapping[tid] = tid
            elif tid in links and links[tid] in before and before[links[tid]] not in self.identities:
                mapping[tid] = before[links[tid]]
            else:
                mapping[tid], self._next = self._next, self._next + 1
            self.rows.append({
                "stream_track_id": mapping[tid], "segment": segment, "video_id": video_id, "track_id": tid,
                "class_name": t["class_name"], "first_frame": t["first_frame"], "last_frame": t["last_frame"],
                "segment_start": float(start), "run": run_dir,
            })  # fmt: skip
        self._last = (run_dir, frames, mapping)
        self._write()
        kept = sum(1 for t, s in mapping.items() if s in before.values())
        log.info("segment %d: %d track(s), %d continued from the previous segment", segment, len(mapping), kept)
        return mapping

    def _write(self) -> None:
        table = pa.Table.from_pylist(sorted(self.rows, key=lambda r: (r["segment"], r["track_id"])), schema=SCHEMA)
        with storage.atomic_open(storage.join(self.folder, TRACKS), "wb") as f:
            pq.write_table(table, f, compression="zstd")
