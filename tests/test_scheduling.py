"""Many videos on few workers: the device list, the archive's admission of videos, and every worker kept busy.

The archive test segments with `SleepingSegmenter`, a test double standing in for a GPU: it holds its worker for a
fixed time per frame without using the CPU (so the timing shows scheduling, not this machine's load) and follows each
prompted box unchanged. Everything else is the real process_archive flow.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from sam2flow.config import ConfigError, load_config
from sam2flow.control.runtime import DeviceError, WorkerPool, available_devices
from sam2flow.control.scheduling import Backlog, admitted, report_demand
from sam2flow.core.types import FrameMasks, LocalObjId, ObjectPrompt
from sam2flow.io.frames import read_layout
from tests.synth import Square, write_clip

SECONDS_PER_FRAME = 0.5


class SleepingSession:
    """One subsequence: waits as a GPU would take to track it, then shows each prompted box as its mask."""

    def __init__(self, frames_dir: Path) -> None:
        layout = read_layout(frames_dir)
        assert layout is not None
        self.num_frames, self.height, self.width = layout.count, layout.source_height, layout.source_width
        self.boxes: dict[LocalObjId, tuple[float, ...]] = {}
        time.sleep(SECONDS_PER_FRAME * self.num_frames)

    def _masks(self, frame: int) -> FrameMasks:
        ids = tuple(self.boxes)
        masks = np.zeros((len(ids), self.height, self.width), bool)
        for k, i in enumerate(ids):
            x0, y0, x1, y1 = (int(v) for v in self.boxes[i])
            masks[k, y0:y1, x0:x1] = True
        return FrameMasks(frame, ids, masks, np.full(len(ids), 0.9, np.float32))

    def add(self, prompt: ObjectPrompt) -> FrameMasks:
        assert prompt.box is not None
        self.boxes[prompt.local_id] = tuple(prompt.box)
        return self._masks(prompt.frame)

    def remove(self, obj_id: LocalObjId) -> None:
        self.boxes.pop(obj_id, None)

    def propagate(self, start: int, stop: int) -> Iterator[FrameMasks]:
        for f in range(start, stop + 1):
            yield self._masks(f)


class SleepingSegmenter:
    """Built like `Sam2Segmenter` (once per worker, through the real model cache); counts how often it is built."""

    built: ClassVar[list[str]] = []

    def __init__(self, checkpoint: Any, device: str, *args: Any) -> None:
        SleepingSegmenter.built.append(device)

    @contextmanager
    def session(self, frames_dir: Path) -> Iterator[SleepingSession]:
        yield SleepingSession(frames_dir)


def test_device_lists_in_the_config() -> None:
    """runtime.device takes a name or a list (YAML or comma-separated); bad entries name the key."""
    assert load_config(None, ["runtime.device=cuda:0,cuda:1"]).runtime.device == ["cuda:0", "cuda:1"]
    assert load_config(None, ["runtime.device=[cpu, cpu]"]).runtime.device == ["cpu", "cpu"]
    assert load_config(None, ["runtime.device=[cuda:1]"]).runtime.device == "cuda:1"
    for bad in ("[auto, cuda:0]", "cuda:x", "[]", "tpu"):
        with pytest.raises(ConfigError, match=r"runtime\.device"):
            load_config(None, [f"runtime.device={bad}"])


def test_a_listed_device_gets_its_workers_and_missing_gpus_are_named() -> None:
    """Each listed device gets its workers; a GPU that does not exist is named in the error."""
    import torch

    assert available_devices(["cpu", "cpu"]) == ["cpu", "cpu"]
    with pytest.raises(DeviceError, match=r"'cuda:1'.*no CUDA GPU"):
        available_devices(["cpu", "cuda:1"])
    threads = torch.get_num_threads()
    try:
        pool = WorkerPool(["cpu", "cpu"], 2)
        names = sorted(pool.slots.get_nowait().name for _ in range(pool.size))
        assert pool.size == 4 and names == ["cpu#0", "cpu#1", "cpu#2", "cpu#3"]
    finally:
        torch.set_num_threads(threads)


def test_backlog_admits_while_workers_would_idle() -> None:
    """Two workers: a video not yet planned counts as a full round; planned ones count their subsequences left."""
    backlog = Backlog(slots=2)
    assert backlog.wants_more()
    first = backlog.admit()
    assert backlog.wants_more(), "one unplanned video (2) leaves room for one waiting subsequence per worker (4)"
    second = backlog.admit()
    assert not backlog.wants_more()
    first.report(1)
    second.report(1)
    assert backlog.wants_more(), "two one-subsequence videos leave no subsequence waiting"
    first.report(30)
    assert not backlog.wants_more(), "a long video keeps the others out"
    first.report(2)
    second.close()
    assert backlog.wants_more(), "its last round: the next video gets ready meanwhile"
    with admitted(first):
        report_demand(7)
    assert backlog.wants_more(), "closed when the video's block ends"
    report_demand(99)  # outside an archive: nothing to tell
    seen = backlog.wait(0, timeout=0.0)
    assert backlog.wait(seen, timeout=0.05) == seen, "nothing changed"
    backlog.wake()
    assert backlog.wait(seen, timeout=5.0) == seen + 1


def test_prefect_does_not_walk_into_a_ticket_s_backlog() -> None:
    """Prefect walks task arguments for futures; a ticket must be a leaf, or walking the backlog's dict while other
    videos change it fails the task ("Failed to resolve inputs", seen once in CI)."""
    from prefect.utilities.collections import visit_collection

    backlog = Backlog(slots=2)
    ticket = backlog.admit()
    visited: list[object] = []
    visit_collection(ticket, lambda x: visited.append(x) or x, return_data=True)
    assert visited == [ticket]
    visit_collection(backlog, lambda x: visited.append(x) or x, return_data=True)
    assert len(visited) > 2, "the check can fail: a dataclass is walked into"


def _busy(intervals: list[tuple[float, float]], slots: int, start: float, stop: float) -> float:
    """The share of worker time in [start, stop] during which the workers held a subsequence."""
    held = sum(max(0.0, min(b, stop) - max(a, start)) for a, b in intervals)
    return held / (slots * (stop - start))


@pytest.mark.slow
def test_archive_keeps_every_worker_busy(
    prefect_harness: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Six short videos (one of two subsequences, the others of one) on three CPU "devices": while work is left,
    every worker holds a subsequence (from the worker timing each segment task records, checked against the task
    runs' own times); each worker loads its model once for all videos; no worker ever holds two subsequences."""
    import torch

    from sam2flow.control import runtime
    from sam2flow.flows.process_archive import process_archive
    from sam2flow.models import segmenter

    monkeypatch.setattr(segmenter, "Sam2Segmenter", SleepingSegmenter)
    SleepingSegmenter.built.clear()
    archive = tmp_path / "archive"
    archive.mkdir()
    for i, frames in enumerate((24, 24, 32, 24, 24, 24)):  # 1, 1, 2, 1, 1, 1 subsequences of 24 frames (overlap 16)
        sq = Square((230, 40, 40), y=60, x0=20 + 5 * i, speed=1.0, size=50)
        write_clip(archive / f"v{i}.mp4", frames, squares=(sq,))
    cfg = load_config(None, [
        "detector.enabled=false", "prompts=[{frame: 0, box: [20, 60, 70, 110], class_name: square}]",
        "chunking.length=24", "chunking.overlap=16", "render.enabled=false", "report.enabled=false",
        "segmenter.checkpoint=random:sam2.1_hiera_tiny", "runtime.device=[cpu, cpu, cpu]", "runtime.torch_threads=1",
    ])  # fmt: skip
    threads = torch.get_num_threads()
    try:
        state = process_archive(source=str(archive), out=str(tmp_path / "out"), config=cfg, return_state=True)
    finally:
        runtime._POOLS.pop((("cpu", "cpu", "cpu"), 1, 1), None)  # its slots hold the double: no other test may get it
        torch.set_num_threads(threads)
    assert state.is_completed(), state.message
    reports = state.result()
    assert [r.status for r in reports] == ["done"] * 6

    subs = []
    for r in reports:
        manifest = json.loads((Path(str(r.out_dir)) / "manifest.json").read_text())
        subs += manifest["stages"]["segment"]["subsequences"]
    assert len(subs) == 7 and {s["worker"] for s in subs} == {"cpu#0", "cpu#1", "cpu#2"}
    assert SleepingSegmenter.built == ["cpu"] * 3, "one model per worker, shared by every video"
    for worker in ("cpu#0", "cpu#1", "cpu#2"):
        mine = sorted((s["started"], s["ended"]) for s in subs if s["worker"] == worker)
        assert all(a[1] <= b[0] for a, b in zip(mine, mine[1:])), "a worker holds one subsequence at a time"
    intervals = [(s["started"], s["ended"]) for s in subs]
    start, last_start = min(a for a, _ in intervals), max(a for a, _ in intervals)
    busy = _busy(intervals, 3, start, last_start)  # until the last subsequence starts, there is always work left
    print(f"workers busy {busy:.0%} of {last_start - start:.1f} s")
    assert busy >= 0.8, f"workers were busy only {busy:.0%} of the time while work was waiting"
    _check_against_task_runs(state.state_details.flow_run_id, subs)


def _check_against_task_runs(archive_run: Any, subs: list[dict[str, Any]]) -> None:
    """Each segment task run (read through the API) spans the worker time its subsequence records."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterFlowRunId, TaskRunFilterName

    from tests.prefect_api import run_tree_artifacts

    with get_client(sync_client=True) as client:
        ids, _ = run_tree_artifacts(client, archive_run)
        in_tree = TaskRunFilterFlowRunId(any_=list(ids))
        only = TaskRunFilter(flow_run_id=in_tree, name=TaskRunFilterName(like_="segment-"))
        runs = client.read_task_runs(task_run_filter=only, limit=200)
    spans = sorted((r.start_time.timestamp(), r.end_time.timestamp()) for r in runs if r.start_time and r.end_time)
    assert len(spans) == len(subs) == 7
    for s in subs:
        assert any(a - 0.5 <= s["started"] and s["ended"] <= b + 0.5 for a, b in spans), s
