"""The report's images: track timeline, objects per frame, mask area per track, zone occupancy, contact sheet."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from sam2flow.config import RenderConfig
from sam2flow.core.types import TrackMaskRow
from sam2flow.io.render import draw, draw_zones, track_colour
from sam2flow.report.stats import TrackSpans

DPI = 100


def _figure(height_px: int, width_px: int = 1000):  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width_px / DPI, height_px / DPI), dpi=DPI)
    return plt, fig, ax


def _save(plt, fig, path: Path) -> Path:  # type: ignore[no-untyped-def]
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _rgb(track_id: int) -> tuple[float, float, float]:
    r, g, b = track_colour(track_id)
    return r / 255, g / 255, b / 255


def timeline(tracks: Sequence[TrackSpans], times: np.ndarray, path: Path) -> Path:
    """One row per track (longest first, at the top), a bar wherever it is present, in its annotated-video colour."""
    plt, fig, ax = _figure(max(160, 60 + 18 * len(tracks)))
    step = float(np.median(np.diff(times))) if len(times) > 1 else 1.0
    for row, tr in enumerate(tracks):
        bars = [(times[a], times[b] - times[a] + step) for a, b in tr.spans]
        ax.broken_barh(bars, (row - 0.4, 0.8), facecolors=_rgb(tr.track_id))
    ax.set_yticks(range(len(tracks)), [f"{t.track_id} {t.class_name}" for t in tracks], fontsize=8)
    ax.set_ylim(len(tracks) - 0.5, -0.5)
    ax.set_xlim(float(times[0]) if len(times) else 0.0, float(times[-1]) + step if len(times) else 1.0)
    ax.set_xlabel("time (s)")
    ax.set_title("Track timeline")
    ax.grid(axis="x", alpha=0.3)
    return _save(plt, fig, path)


def objects_over_time(counts: np.ndarray, times: np.ndarray, path: Path) -> Path:
    """Objects (tracks) present on each frame."""
    plt, fig, ax = _figure(260)
    ax.step(times[: len(counts)], counts, where="post", color="#3465a4")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("objects")
    ax.set_title("Objects per frame")
    ax.grid(alpha=0.3)
    return _save(plt, fig, path)


def area_over_time(series: dict[int, tuple[np.ndarray, np.ndarray]], path: Path) -> Path:
    """Mask area (pixels) per track over time: ``{track: (times, areas)}``, gaps left open."""
    plt, fig, ax = _figure(300)
    for tid, (t, a) in series.items():
        ax.plot(t, a, color=_rgb(tid), linewidth=1.2, label=str(tid))
    ax.set_xlabel("time (s)")
    ax.set_ylabel("mask area (px)")
    ax.set_title("Mask area per track")
    if series:
        ax.legend(fontsize=7, ncol=min(len(series), 10), loc="upper right")
    ax.grid(alpha=0.3)
    return _save(plt, fig, path)


def zone_occupancy(occupancy: dict[str, np.ndarray], times: np.ndarray, path: Path) -> Path:
    """How many tracks are inside each zone over time."""
    plt, fig, ax = _figure(260)
    for zone, counts in occupancy.items():
        ax.step(times[: len(counts)], counts, where="post", label=zone)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("tracks inside")
    ax.set_title("Zone occupancy")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(plt, fig, path)


def contact_sheet(
    tiles: Sequence[tuple[int, float, np.ndarray, list[TrackMaskRow]]],
    render: RenderConfig,
    zones: list[tuple[str, list[tuple[float, float]]]],
    path: Path,
    columns: int = 4,
    tile_width: int = 320,
) -> Path:
    """A grid of annotated frames ``(frame, time, RGB image, its rows)``, each captioned with its frame and time."""
    drawn = []
    for frame, time, image, rows in tiles:
        out = draw(image, rows, render) if rows else image.copy()
        out = draw_zones(out, zones) if zones else out
        scale = tile_width / out.shape[1]
        out = cv2.resize(out, (tile_width, max(1, round(out.shape[0] * scale))), interpolation=cv2.INTER_AREA)
        h = out.shape[0]
        cv2.rectangle(out, (0, h - 18), (tile_width, h), (0, 0, 0), -1)
        cv2.putText(out, f"frame {frame}  {time:.2f} s", (4, h - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1)
        drawn.append(out)
    rows_n = -(-len(drawn) // columns)
    h = drawn[0].shape[0]
    sheet = np.full((rows_n * (h + 4), columns * (tile_width + 4), 3), 255, np.uint8)
    for i, tile in enumerate(drawn):
        r, c = divmod(i, columns)
        sheet[r * (h + 4) : r * (h + 4) + h, c * (tile_width + 4) : c * (tile_width + 4) + tile_width] = tile
    cv2.imwrite(str(path), sheet[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 88])
    return path
