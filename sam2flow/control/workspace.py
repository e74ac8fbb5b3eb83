"""A run's hold on its output folder and its work folder: claimed for the run, cleared when it fails or stops."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from sam2flow.io import lock, storage
from sam2flow.io.scratch import remove_folder
from sam2flow.job import VideoJob
from sam2flow.stages.extract import close_decoder


@contextlib.contextmanager
def claim(job: VideoJob, wait: bool = False) -> Iterator[None]:
    """Hold the run's output folder for the block (see `sam2flow.io.lock`), first clearing what a killed run left.

    Raises:
        FolderBusyError: When another run holds the folder and ``wait`` is False.
    """
    with lock.hold(job.out_dir, wait=wait, what=job.video):
        # Half-written files of a killed run (never reused: only complete files have their final name). Holding the
        # folder, no other run can be writing them.
        fs, folder = storage.filesystem(job.out_dir)
        for stale in fs.glob(f"{folder}/parts/*/*.tmp-*") + fs.glob(f"{folder}/*.tmp-*"):
            fs.rm(stale)
        yield


def discard_work(job: VideoJob) -> None:
    """Remove a run's work folder (extracted frames, render pieces): after it fails or is stopped."""
    close_decoder(job)
    remove_folder(Path(job.work_dir))
