"""Parameter sweeps: one video with ground truth, a grid over settings, the metrics of every setting.

The grid is expanded here, settings are ordered so that those sharing their segmentation (the part digest) run one
after another, and the results are written as a table. Running each setting is the `process_sweep` flow's job: a
`process_video` run for the first setting of each segmentation, and a re-stitch of the same part files for each
setting that changes only stitching, render or zone event settings.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from pydantic import BaseModel, ConfigDict, Field

from sam2flow.config import ConfigError, PipelineConfig, with_overrides
from sam2flow.io import storage

MAX_SETTINGS = 64
"""Settings one sweep may hold at most (the product of every key's values)."""

Metric = Literal["HOTA", "DetA", "AssA", "IDF1", "IDSW", "MOTA", "Recall", "J&F"]
METRICS: tuple[Metric, ...] = get_args(Metric)
"""The metrics recorded per setting (J&F only for mask ground truth)."""

FIXED = ("render.enabled=false", "report.enabled=false")
"""A sweep writes no annotated video and no report for each setting (the grid may still name them)."""

Scalar = str | int | float | bool | None
Value = Scalar | list[Scalar]
"""A value a grid may try for a key (what a YAML override can be, but mappings)."""


class GridAxis(BaseModel):
    """One config key of a sweep and the values to try for it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(description="A config key, as --set names it (e.g. stitching.iou_threshold).")
    values: list[Value] = Field(min_length=1, description="The values to try.")


Grid = list[GridAxis]


def parse_grid(items: list[str]) -> Grid:
    """``KEY=V1,V2,…`` items as a grid; each value is YAML (``--grid runtime.device=[cpu,cpu],cpu`` is two values).

    Raises:
        ConfigError: When an item is not ``KEY=values`` or its values are not YAML.
    """
    grid: Grid = []
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip() or not raw.strip():
            raise ConfigError(f"--grid {item!r} must look like section.key=v1,v2, e.g. stitching.iou_threshold=0.2,0.4")
        try:
            values = yaml.safe_load(f"[{raw}]")
        except yaml.YAMLError as exc:
            raise ConfigError(f"--grid {item!r}: the values are not YAML ({exc})") from exc
        grid.append(GridAxis(key=key.strip(), values=list(values)))
    return grid


def override(key: str, value: Any) -> str:
    """``key=value`` as a config override (JSON is YAML)."""
    return f"{key}={json.dumps(value)}"


def _overrides(values: dict[str, Any]) -> list[str]:
    """A setting's config overrides: the sweep's fixed ones, then one per grid key."""
    return [*FIXED, *(override(k, v) for k, v in values.items())]


@dataclass(frozen=True)
class Setting:
    """One point of the grid: its values, and the whole configuration it gives."""

    number: int
    values: dict[str, Any]
    config: PipelineConfig

    @property
    def overrides(self) -> list[str]:
        return _overrides(self.values)

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={json.dumps(v)}" for k, v in self.values.items())


def expand(base: PipelineConfig, grid: Grid) -> list[Setting]:
    """Every setting of ``grid`` applied to ``base``, grouped by segmentation (settings that share their part files
    next to each other, in grid order otherwise).

    Raises:
        ConfigError: When the grid is empty, too large, names an unknown key, or a value is invalid (all settings are
            checked before anything runs).
    """
    if not grid:
        raise ConfigError("the sweep grid is empty: give at least one key with at least one value")
    if len({axis.key for axis in grid}) != len(grid):
        raise ConfigError("the sweep grid names a key twice: give each key once, with all its values")
    size = 1
    for axis in grid:
        size *= len(axis.values)
    if size > MAX_SETTINGS:
        raise ConfigError(f"the sweep grid has {size} settings; at most {MAX_SETTINGS} (sweep fewer values at once)")
    keys = [axis.key for axis in grid]
    settings = []
    for n, combo in enumerate(itertools.product(*(axis.values for axis in grid))):
        values = dict(zip(keys, combo))
        settings.append(Setting(n, values, with_overrides(base, _overrides(values))))
    first_of: dict[str, int] = {}
    for s in settings:
        first_of.setdefault(s.config.digest(), s.number)
    return sorted(settings, key=lambda s: (first_of[s.config.digest()], s.number))


@dataclass(frozen=True)
class SweepRow:
    """The outcome of one setting."""

    setting: int
    values: dict[str, Any]
    how: str
    """``segmented`` (a `process_video` run; finished part files are reused) or ``restitched`` (no model ran)."""
    seconds: float
    metrics: dict[str, float | None]


def best(rows: list[SweepRow], metric: str) -> SweepRow:
    """The row with the highest ``metric`` (the lowest for IDSW); the first such in grid order on ties."""
    sign = -1.0 if metric == "IDSW" else 1.0
    scored = [r for r in rows if r.metrics.get(metric) is not None]
    if not scored:
        raise ConfigError(f"no setting has a {metric} value (J&F needs DAVIS mask ground truth)")
    return max(sorted(scored, key=lambda r: r.setting), key=lambda r: sign * float(r.metrics[metric] or 0.0))


def ranked(rows: list[SweepRow], metric: str) -> list[SweepRow]:
    """The rows best first by ``metric`` (lowest first for IDSW; a missing value counts as 0), in grid order on ties."""
    sign = -1.0 if metric == "IDSW" else 1.0
    return sorted(rows, key=lambda r: (-sign * float(r.metrics.get(metric) or 0.0), r.setting))


def table_rows(rows: list[SweepRow], metric: str) -> list[dict[str, Any]]:
    """One flat dict per setting, best first: its number, every grid key, how it ran, seconds, every metric."""
    return [
        {
            "setting": r.setting,
            **{k: json.dumps(v) for k, v in r.values.items()},
            "how": r.how,
            "seconds": round(r.seconds, 3),
            **{m: r.metrics.get(m) for m in METRICS},
        }
        for r in ranked(rows, metric)
    ]


def write_sweep(uri: str, rows: list[SweepRow], metric: str, metadata: dict[str, str]) -> None:
    """The sweep's table as Parquet (best first; grid values as JSON text), written atomically."""
    flat = table_rows(rows, metric)
    table = pa.Table.from_pylist(flat)
    meta = {"sam2flow": "sweep", "metric": metric, **metadata}
    table = table.replace_schema_metadata({k: str(v) for k, v in meta.items()})
    with storage.atomic_open(uri, "wb") as f:
        pq.write_table(table, f, compression="zstd")


def as_json(row: SweepRow) -> dict[str, Any]:
    """A row as plain JSON-able data (for the flow's result)."""
    return asdict(row)
