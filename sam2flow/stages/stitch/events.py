"""Zone events: when each track enters and leaves each zone, computed from masks.parquet into events.parquet."""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sam2flow.config import ZonesConfig
from sam2flow.core import rle
from sam2flow.core.types import TrackMaskRow
from sam2flow.core.zones import Point, ZoneEvent, ZoneTracker, box_anchor, point_in_polygon
from sam2flow.io import storage
from sam2flow.io.parquet import EVENTS_SCHEMA, TRACK_ROW_COLUMNS, ParquetSink, table_from_columns, track_rows_from_table
from sam2flow.results import EventsResult


def anchor_of(row: TrackMaskRow, anchor: str) -> Point:
    """A mask row's anchor point: box bottom-centre, box centre, or the mask's centroid."""
    if anchor == "centroid":
        mask = rle.decode(row.rle, row.height, row.width)
        ys, xs = np.nonzero(mask)
        return float(xs.mean()) + 0.5, float(ys.mean()) + 0.5
    return box_anchor(row.bbox, "center" if anchor == "center" else "bottom_center")


def write_events(
    masks_uri: str, events_uri: str, zones: ZonesConfig, video_id: str, times: np.ndarray, num_frames: int
) -> EventsResult:
    """Stream masks.parquet once, run one `ZoneTracker` per (track, zone), and write events.parquet atomically."""
    t0 = time.perf_counter()
    trackers: dict[tuple[int, str], ZoneTracker] = {}
    classes: dict[int, str] = {}
    fs, path = storage.filesystem(masks_uri)
    with fs.open(path, "rb") as f:
        for batch in pq.ParquetFile(f).iter_batches(columns=TRACK_ROW_COLUMNS):
            for row in track_rows_from_table(pa.Table.from_batches([batch])):
                tid = int(row.track_id)
                classes[tid] = row.class_name
                x, y = anchor_of(row, zones.anchor)
                for z in zones.regions:
                    tracker = trackers.setdefault((tid, z.name), ZoneTracker(zones.hysteresis))
                    tracker.observe(row.frame, point_in_polygon(x, y, z.polygon), (x, y))
    found: list[tuple[ZoneEvent, str, int]] = []
    for (tid, zone), tracker in trackers.items():
        found.extend((e, zone, tid) for e in tracker.finish(num_frames - 1))
    order = {z.name: i for i, z in enumerate(zones.regions)}
    found.sort(key=lambda t: (t[0].frame, order[t[1]], t[2], t[0].kind == "enter"))
    table = table_from_columns(
        {
            "video_id": [video_id] * len(found),
            "frame": [e.frame for e, _, _ in found],
            "time": [float(times[e.frame]) for e, _, _ in found],
            "zone": [z for _, z, _ in found],
            "track_id": [t for _, _, t in found],
            "class_name": [classes[t] for _, _, t in found],
            "event": [e.kind for e, _, _ in found],
            "cause": [e.cause for e, _, _ in found],
            "x": [e.point[0] for e, _, _ in found],
            "y": [e.point[1] for e, _, _ in found],
        },
        EVENTS_SCHEMA,
    )
    with ParquetSink(events_uri, EVENTS_SCHEMA) as sink:
        sink.write(table)
    enters = sum(e.kind == "enter" for e, _, _ in found)
    return EventsResult(
        events=len(found),
        enters=enters,
        exits=len(found) - enters,
        tracks_in_zones=len({t for e, _, t in found if e.kind == "enter"}),
        seconds=time.perf_counter() - t0,
    )
