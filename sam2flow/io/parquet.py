"""Parquet schemas (declared once here), pure row → table conversion, and streaming writers with atomic rename."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sam2flow.core.types import LocalObjId, MaskRow, TrackId, TrackMaskRow
from sam2flow.io import storage

BBOX = pa.list_(pa.float32(), 4)

UNITS = {
    "frame": "frame index from 0",
    "time": "s (seconds from the first frame, from the stream's timestamps)",
    "first_frame": "frame index from 0",
    "last_frame": "frame index from 0",
    "num_frames": "frames",
    "bbox": "px (x0, y0, x1, y1; x1 and y1 one past the last pixel)",
    "area": "px",
    "height": "px",
    "width": "px",
    "score": "probability in [0, 1]",
    "mean_score": "probability in [0, 1]",
    "x": "px",
    "y": "px",
    "frame_start": "frame index from 0",
    "frame_stop": "frame index from 0 (excluded)",
    "time_start": "s (seconds from the first frame)",
}
"""The unit of each numeric column, stored in every schema's field metadata (``unit``) and listed in the README."""


def _f(name: str, kind: pa.DataType) -> pa.Field:
    """A non-null field, with its unit in the field metadata when it has one."""
    unit = UNITS.get(name)
    return pa.field(name, kind, nullable=False, metadata={"unit": unit} if unit else None)


_MASK_FIELDS = [
    _f("class_id", pa.int32()),
    _f("class_name", pa.string()),
    _f("score", pa.float32()),
    _f("bbox", BBOX),
    _f("area", pa.int64()),
    _f("height", pa.int32()),
    _f("width", pa.int32()),
    _f("rle", pa.string()),
]
"""What every mask row carries, in part files and in masks.parquet alike."""

PART_SCHEMA = pa.schema(
    [_f("frame", pa.int64()), _f("obj_id", pa.int32()), *_MASK_FIELDS],
    metadata={"sam2flow": "part"},
)
"""One subsequence's masks: one row per (global frame, local object)."""

MASKS_SCHEMA = pa.schema(
    [
        _f("video_id", pa.string()),
        _f("frame", pa.int64()),
        _f("time", pa.float64()),
        _f("track_id", pa.int32()),
        *_MASK_FIELDS,
    ],
    metadata={"sam2flow": "masks", "bbox": "x0,y0,x1,y1 in source pixels", "rle": "COCO compressed counts"},
)
"""The final masks: one row per (frame, track), sorted by (frame, track_id)."""

TRACKS_SCHEMA = pa.schema(
    [
        _f("video_id", pa.string()),
        _f("track_id", pa.int32()),
        _f("class_id", pa.int32()),
        _f("class_name", pa.string()),
        _f("first_frame", pa.int64()),
        _f("last_frame", pa.int64()),
        _f("num_frames", pa.int64()),
        _f("mean_score", pa.float32()),
    ],
    metadata={"sam2flow": "tracks"},
)
"""One row per track, sorted by track_id."""

EVENTS_SCHEMA = pa.schema(
    [
        _f("video_id", pa.string()),
        _f("frame", pa.int64()),
        _f("time", pa.float64()),
        _f("zone", pa.string()),
        _f("track_id", pa.int32()),
        _f("class_name", pa.string()),
        _f("event", pa.string()),
        _f("cause", pa.string()),
        _f("x", pa.float32()),
        _f("y", pa.float32()),
    ],
    metadata={
        "sam2flow": "events",
        "event": "enter | exit",
        "cause": "crossed (moved across the border) | appeared (first seen inside) | disappeared (lost while inside)",
        "x,y": "the anchor point in source pixels on the event frame",
    },
)
"""Zone enter/exit events, sorted by (frame, zone, track_id)."""


REVIEW_SCHEMA = pa.schema(
    [
        _f("video_id", pa.string()),
        pa.field("rank", pa.int32(), nullable=False, metadata={"meaning": "1 = look first"}),
        pa.field("kind", pa.string(), nullable=False, metadata={"meaning": "what was seen (see the README's list)"}),
        _f("frame_start", pa.int64()),
        _f("frame_stop", pa.int64()),
        _f("time_start", pa.float64()),
        pa.field("track_ids", pa.list_(pa.int32()), nullable=False, metadata={"meaning": "the tracks involved"}),
        pa.field(
            "score",
            pa.float32(),
            nullable=False,
            metadata={"unit": "0-1", "meaning": "how likely this is an error (1 = surely)"},
        ),
        pa.field("evidence", pa.string(), nullable=False, metadata={"meaning": "what was seen, with the numbers"}),
        pa.field("key", pa.string(), nullable=False, metadata={"meaning": "the item's name in corrections.yaml"}),
        pa.field("reviewed", pa.bool_(), nullable=False, metadata={"meaning": "marked reviewed by the user"}),
    ],
    metadata={"sam2flow": "review"},
)
"""The review list: the moments most likely wrong, one row per item, sorted by rank."""


TIMESTAMPS_SCHEMA = pa.schema(
    [_f("frame", pa.int64()), _f("time", pa.float64())],
    metadata={"sam2flow": "timestamps", "time": "seconds from the first frame (the stream's presentation times)"},
)
"""Every frame of the input video and when it is shown."""


def write_times(uri: str, times: np.ndarray) -> None:
    """Write timestamps.parquet (atomically)."""
    table = pa.table({"frame": np.arange(len(times), dtype=np.int64), "time": times}, schema=TIMESTAMPS_SCHEMA)
    with ParquetSink(uri, TIMESTAMPS_SCHEMA) as sink:
        sink.write(table)


def read_times(uri: str) -> np.ndarray:
    """The presentation time of every frame, indexed by frame (float64 seconds)."""
    table = read_table(uri, columns=["frame", "time"]).sort_by("frame")
    times: np.ndarray = table["time"].to_numpy()
    return times


CARRIED_FROM = b"carried_from"
"""Part-file metadata key: JSON {local id: local id in the previous subsequence} for carried objects."""


def part_schema(carried_from: dict[int, int] | None = None) -> pa.Schema:
    """The part schema, recording which objects continue objects of the previous subsequence (carry mode)."""
    if not carried_from:
        return PART_SCHEMA
    links = json.dumps({str(k): v for k, v in sorted(carried_from.items())})
    return PART_SCHEMA.with_metadata({**(PART_SCHEMA.metadata or {}), CARRIED_FROM: links.encode()})


def read_carried_from(uri: str) -> dict[int, int]:
    """The carry links of a part file (empty for parallel-mode parts)."""
    fs, path = storage.filesystem(uri)
    with fs.open(path, "rb") as f:
        meta = pq.read_schema(f).metadata or {}
    return {int(k): int(v) for k, v in json.loads(meta.get(CARRIED_FROM, b"{}")).items()}


MANUAL_IDS = b"manual_objects"
"""Part-file metadata key: JSON {local id: obj_id} for the objects that manual prompts with an ``obj_id`` describe."""


IDENTITIES = b"reference_identities"
"""Part-file metadata key: JSON {local id: track id} for the objects that are reference identities."""


def read_id_map(uri: str, key: bytes) -> dict[int, int]:
    """A part file's {local id: id} map under ``key`` (`MANUAL_IDS` or `IDENTITIES`; empty when absent)."""
    fs, path = storage.filesystem(uri)
    with fs.open(path, "rb") as f:
        meta = pq.read_metadata(f).metadata or {}
    return {int(k): int(v) for k, v in json.loads(meta.get(key, b"{}")).items()}


def read_manual_ids(uri: str) -> dict[int, int]:
    """The local objects of a part file that manual prompts named with an ``obj_id`` (empty when none)."""
    return read_id_map(uri, MANUAL_IDS)


DETECTIONS = b"detector_keyframes"
"""Part-file metadata key: JSON list of ``[global frame, [[x0, y0, x1, y1, confidence], …]]``, one entry per frame
the detector ran on (after the confidence and zone filters): what the review list compares the tracks with."""


def detections_json(keyframes: Sequence[tuple[int, Sequence[Sequence[float]]]]) -> str:
    """The `DETECTIONS` value of a part file (boxes rounded to 0.1 px, confidences to 0.001)."""
    rows = [[int(f), [[*(round(float(v), 1) for v in b[:4]), round(float(b[4]), 3)] for b in boxes]]
            for f, boxes in keyframes]  # fmt: skip
    return json.dumps(rows, separators=(",", ":"))


def read_detections(uri: str) -> list[tuple[int, list[list[float]]]]:
    """The detector keyframes a part file recorded (empty for parts written before they were recorded)."""
    fs, path = storage.filesystem(uri)
    with fs.open(path, "rb") as f:
        meta = pq.read_metadata(f).metadata or {}
    raw = json.loads(meta.get(DETECTIONS, b"[]"))
    return [(int(f), [[float(v) for v in b] for b in boxes]) for f, boxes in raw]


def iter_frames(uri: str, columns: list[str]) -> Iterator[tuple[int, pa.Table]]:
    """The rows of a table sorted by frame (masks.parquet), one frame at a time, reading one batch at a time."""
    fs, path = storage.filesystem(uri)
    with fs.open(path, "rb") as f:
        carry: pa.Table | None = None
        for batch in pq.ParquetFile(f).iter_batches(columns=columns, batch_size=8192):
            table = (
                pa.Table.from_batches([batch])
                if carry is None
                else pa.concat_tables([carry, pa.Table.from_batches([batch])])
            )
            frames = table["frame"].to_numpy()
            last = frames[-1]
            cut = int(np.searchsorted(frames, last))  # rows of the last frame may go on in the next batch
            yield from _by_frame(table.slice(0, cut))
            carry = table.slice(cut)
        if carry is not None:
            yield from _by_frame(carry)


def _by_frame(table: pa.Table) -> Iterator[tuple[int, pa.Table]]:
    frames = table["frame"].to_numpy()
    if not len(frames):
        return
    bounds = np.flatnonzero(np.diff(frames)) + 1
    starts = [0, *bounds.tolist()]
    stops = [*bounds.tolist(), len(frames)]
    for a, b in zip(starts, stops):
        yield int(frames[a]), table.slice(a, b - a)


def part_table(rows: Sequence[MaskRow]) -> pa.Table:
    """Part-file rows as an Arrow table (pure)."""
    return pa.table(
        {
            "frame": [r.frame for r in rows],
            "obj_id": [int(r.obj_id) for r in rows],
            "class_id": [r.class_id for r in rows],
            "class_name": [r.class_name for r in rows],
            "score": [r.score for r in rows],
            "bbox": [list(r.bbox) for r in rows],
            "area": [r.area for r in rows],
            "height": [r.height for r in rows],
            "width": [r.width for r in rows],
            "rle": [r.rle for r in rows],
        },
        schema=PART_SCHEMA,
    )


def _box(value: Any) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = (float(v) for v in value)
    return x0, y0, x1, y1


def rows_from_table(table: pa.Table) -> list[MaskRow]:
    """Part-file rows (read with `read_table`) as typed rows: the reader beside `part_table` (pure)."""
    c = table.select(PART_SCHEMA.names).to_pydict()
    return [
        MaskRow(int(f), LocalObjId(int(o)), int(ci), str(cn), float(s), _box(b), int(a), int(h), int(w), str(r))
        for f, o, ci, cn, s, b, a, h, w, r in zip(*c.values())
    ]


TRACK_ROW_COLUMNS = ["frame", "track_id", *(f.name for f in _MASK_FIELDS)]
"""The masks.parquet columns a `TrackMaskRow` holds."""


def track_rows_from_table(table: pa.Table) -> list[TrackMaskRow]:
    """masks.parquet rows (at least `TRACK_ROW_COLUMNS`) as typed rows (pure)."""
    c = table.select(TRACK_ROW_COLUMNS).to_pydict()
    return [
        TrackMaskRow(int(f), TrackId(int(t)), int(ci), str(cn), float(s), _box(b), int(a), int(h), int(w), str(r))
        for f, t, ci, cn, s, b, a, h, w, r in zip(*c.values())
    ]


def table_from_columns(columns: dict[str, Iterable[Any]], schema: pa.Schema) -> pa.Table:
    """A table with exactly the schema's columns, in its order (pure)."""
    missing = set(schema.names) - set(columns)
    if missing:
        raise ValueError(f"missing columns: {sorted(missing)}")
    data = {}
    for name in schema.names:
        col = columns[name]
        data[name] = col if isinstance(col, (pa.Array, pa.ChunkedArray, list)) else list(col)
    return pa.table(data, schema=schema)


class ParquetSink:
    """Streams tables into one Parquet file that appears under its final name only when closed without error."""

    def __init__(self, uri: str, schema: pa.Schema) -> None:
        self.uri = uri
        self.schema = schema
        self.rows = 0
        self._ctx = storage.atomic_open(uri, "wb")
        self._file = self._ctx.__enter__()
        self._writer = pq.ParquetWriter(self._file, schema, compression="zstd")

    def add_metadata(self, key: bytes, value: str) -> None:
        """Record a key in the file's metadata (written when the file is closed)."""
        self._writer.add_key_value_metadata({key: value.encode()})

    def write(self, table: pa.Table) -> None:
        """Append a table (one row group) when it has rows."""
        if table.num_rows:
            self._writer.write_table(table.cast(self.schema))
            self.rows += table.num_rows

    def __enter__(self) -> ParquetSink:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._writer.close()
        self._ctx.__exit__(exc_type, exc, tb)


def read_table(uri: str, columns: list[str] | None = None, filters: Any = None) -> pa.Table:
    """Read a Parquet file (or a subset of its columns and rows) from a path or URI."""
    fs, path = storage.filesystem(uri)
    return pq.read_table(path, filesystem=fs, columns=columns, filters=filters)
