"""Workers: one slot per (device, worker), each holding its own models, built once and reused."""

from __future__ import annotations

import contextvars
import ctypes
import ctypes.util
import logging
import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from sam2flow.config import DetectorConfig, PipelineConfig, RuntimeConfig, SegmenterConfig
    from sam2flow.io.checkpoints import ResolvedCheckpoint
    from sam2flow.models.detector import YoloDetector
    from sam2flow.models.segmenter import Sam2Segmenter
    from sam2flow.models.text_detector import Sam3TextDetector

from sam2flow.errors import InputError

log = logging.getLogger(__name__)
T = TypeVar("T")


class DeviceError(InputError):
    """The configured device does not exist on this machine."""


def available_devices(device: str | Sequence[str]) -> list[str]:
    """Devices to run segmentation on: every CUDA GPU for 'auto' (else the CPU), or exactly the ones named, in order
    (a device named twice is listed twice: it gets twice the workers).

    Raises:
        DeviceError: When a CUDA device is named that this machine does not have.
    """
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    names = [device] if isinstance(device, str) else list(device)
    if names == ["auto"]:
        return [f"cuda:{i}" for i in range(count)] or ["cpu"]
    found = []
    for name in names:
        if name.startswith("cuda"):
            index = int(name.split(":", 1)[1]) if ":" in name else 0
            if index >= count:
                seen = f"{count} CUDA GPU(s) are visible" if count else "no CUDA GPU is visible"
                raise DeviceError(f"runtime.device names {name!r} but {seen} here; use 'auto', 'cpu' or existing GPUs")
            name = f"cuda:{index}"
        found.append(name)
    return found


def release_free_memory() -> None:
    """Give freed heap memory back to the OS (glibc ``malloc_trim``; a no-op elsewhere)."""
    global _LIBC
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _LIBC.malloc_trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):
            _LIBC = False
    if _LIBC:
        _LIBC.malloc_trim(0)


_LIBC: Any = None


@dataclass
class WorkerSlot:
    """One worker: a device, the models built for it (kept for the life of the process), and its own thread.

    Everything a worker does runs on that one thread, whichever orchestration thread asked for it: the allocator then
    reuses one heap, instead of each new thread leaving another partly used heap behind (which made memory grow with
    the number of subsequences).
    """

    device: str
    index: int
    """The worker's number on its device."""
    models: dict[Any, Any] = field(default_factory=dict)
    executor: ThreadPoolExecutor = field(init=False)

    def __post_init__(self) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"sam2flow-{self.device}-{self.index}")

    @property
    def name(self) -> str:
        """``device#index``, unique in its pool (e.g. ``cuda:1#0``)."""
        return f"{self.device}#{self.index}"

    def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` on this worker's thread and wait for its result.

        The caller's context variables go along, so logs from the worker land in the calling task's Prefect run.
        """
        ctx = contextvars.copy_context()
        return self.executor.submit(ctx.run, fn, *args, **kwargs).result()

    def get(self, key: Any, build: Callable[[], T]) -> T:
        """The model cached under ``key``, built on first use (only ever called on the worker's own thread)."""
        if key not in self.models:
            log.info("worker %s: loading %s", self.name, key[0] if isinstance(key, tuple) else key)
            self.models[key] = build()
        model: T = self.models[key]
        return model


class WorkerPool:
    """A bounded set of worker slots; a task holds one slot while it segments.

    Slots are handed out in the order they were freed, so work spreads over every device and worker.
    """

    def __init__(self, devices: list[str], workers_per_device: int, torch_threads: int | None = None) -> None:
        import torch

        self.devices = devices
        self.slots: queue.Queue[WorkerSlot] = queue.Queue()
        per_device: dict[str, int] = {}
        for _ in range(workers_per_device):
            for d in devices:
                self.slots.put(WorkerSlot(device=d, index=per_device.get(d, 0)))
                per_device[d] = per_device.get(d, 0) + 1
        self.size = len(devices) * workers_per_device
        cpu_workers = per_device.get("cpu", 0)
        if cpu_workers:
            threads = torch_threads or max(1, (os.cpu_count() or 1) // cpu_workers)
            torch.set_num_threads(threads)

    @contextmanager
    def acquire(self) -> Iterator[WorkerSlot]:
        """Wait for a free slot and hold it for the block."""
        slot = self.slots.get()
        try:
            yield slot
        finally:
            self.slots.put(slot)


_POOLS: dict[tuple[Any, ...], WorkerPool] = {}
_POOLS_LOCK = threading.Lock()


def worker_pool(device: str | Sequence[str], workers_per_device: int, torch_threads: int | None) -> WorkerPool:
    """The process-wide pool for these settings, so models survive across subsequences and videos."""
    key = (device if isinstance(device, str) else tuple(device), workers_per_device, torch_threads)
    with _POOLS_LOCK:
        if key not in _POOLS:
            _POOLS[key] = WorkerPool(available_devices(device), workers_per_device, torch_threads)
        return _POOLS[key]


def pool_for(runtime: RuntimeConfig) -> WorkerPool:
    """The process-wide worker pool of a runtime configuration."""
    return worker_pool(runtime.device, runtime.workers_per_device, runtime.torch_threads)


def precision_token(cfg: PipelineConfig) -> str | None:
    """What the part-file and fine-tune digests add for SAM2's precision on the devices this machine gives
    ``runtime.device`` (`sam2flow.models.precision.digest_token`: nothing where it is what earlier versions ran)."""
    from sam2flow.models.precision import digest_token

    return digest_token(cfg.segmenter.precision, available_devices(cfg.runtime.device))


def segmenter_on(slot: WorkerSlot, checkpoint: ResolvedCheckpoint, cfg: SegmenterConfig) -> Sam2Segmenter:
    """The worker's SAM2 model for these settings (built on its first use, then kept)."""
    from sam2flow.models.segmenter import Sam2Segmenter

    return slot.get(
        ("sam2", checkpoint.sha256, cfg.image_size, cfg.compile, cfg.max_cond_frames, cfg.precision),
        lambda: Sam2Segmenter(
            checkpoint,
            slot.device,
            cfg.image_size,
            cfg.offload_video_to_cpu,
            cfg.compile,
            cfg.max_cond_frames,
            cfg.precision,
        ),
    )


def detector_on(
    slot: WorkerSlot, checkpoint: ResolvedCheckpoint, cfg: DetectorConfig
) -> YoloDetector | Sam3TextDetector:
    """The worker's detector for these settings (built on its first use, then kept): YOLO, or SAM 3's concept
    detector for ``detector.text``."""
    if cfg.text:
        from sam2flow.models.text_detector import Sam3TextDetector

        phrases = tuple(cfg.text)
        return slot.get(
            ("sam3-text", checkpoint.sha256, cfg.confidence, cfg.nms_iou, cfg.image_size, phrases),
            lambda: Sam3TextDetector(checkpoint, slot.device, phrases, cfg.confidence, cfg.nms_iou, cfg.image_size),
        )
    from sam2flow.models.detector import YoloDetector

    return slot.get(
        ("yolo", checkpoint.sha256, cfg.confidence, cfg.nms_iou, cfg.image_size, tuple(cfg.classes or ())),
        lambda: YoloDetector(checkpoint, slot.device, cfg.confidence, cfg.nms_iou, cfg.image_size, cfg.classes),
    )
