"""Keeping every worker slot busy across the videos of an archive.

Each video in flight says how many of its subsequences are still to be segmented (its *demand*). The archive admits
another video while the videos in flight cannot keep every worker slot busy with one more subsequence waiting per
slot: the waiting ones let the next video's probing and frame extraction overlap the segmentation going on, and a
long video alone keeps the others out until its last rounds. A video admitted but not yet planned counts as a full
round of work (``slots``), so a burst of admissions cannot pile up long videos, each extracting frames ahead.

`process_video` reports its demand with `report_demand`; outside an archive (no `Ticket` in the context) that is a
no-op.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field


@dataclass
class Backlog:
    """The demand of every video in flight of one archive run, for a pool of ``slots`` workers."""

    slots: int
    _demand: dict[int, int | None] = field(default_factory=dict)
    _changed: threading.Condition = field(default_factory=threading.Condition)
    _next: int = 0
    _version: int = 0

    def admit(self) -> Ticket:
        """Count a newly admitted video (its demand is unknown until it reports)."""
        with self._changed:
            self._next += 1
            self._demand[self._next] = None
            return Ticket(self, self._next)

    def wants_more(self) -> bool:
        """True while the videos in flight leave a slot idle or without a subsequence waiting for it."""
        with self._changed:
            known = sum(d for d in self._demand.values() if d is not None)
            unknown = sum(d is None for d in self._demand.values())
            return known + unknown * self.slots < 2 * self.slots

    def wait(self, seen: int, timeout: float) -> int:
        """Sleep until something changed after version ``seen`` (a report, a video done, `wake`) or ``timeout``
        seconds pass; returns the version now."""
        with self._changed:
            self._changed.wait_for(lambda: self._version != seen, timeout)
            return self._version

    def wake(self) -> None:
        """Wake `wait` (e.g. when a video's task has returned its report)."""
        with self._changed:
            self._version += 1
            self._changed.notify_all()

    def _set(self, ticket: int, demand: int | None) -> None:
        with self._changed:
            if demand is None:
                self._demand.pop(ticket, None)
            elif ticket in self._demand:
                self._demand[ticket] = demand
            self._version += 1
            self._changed.notify_all()


class Ticket:
    """One admitted video's entry in its archive's `Backlog`.

    A plain class, not a dataclass: Prefect walks dataclass task arguments looking for futures, and walking into the
    backlog's dict while other videos' threads change it fails the task ("Failed to resolve inputs").
    """

    __slots__ = ("backlog", "number")

    def __init__(self, backlog: Backlog, number: int) -> None:
        self.backlog = backlog
        self.number = number

    def report(self, demand: int) -> None:
        """Subsequences this video still has to segment (0 once it is stitching and rendering)."""
        self.backlog._set(self.number, max(0, demand))

    def close(self) -> None:
        """The video is done (or failed): it no longer counts."""
        self.backlog._set(self.number, None)


_TICKET: ContextVar[Ticket | None] = ContextVar("sam2flow_archive_ticket", default=None)


@contextmanager
def admitted(ticket: Ticket) -> Iterator[None]:
    """Run a video under ``ticket``: its `report_demand` calls go to the archive; closed when the block ends."""
    token = _TICKET.set(ticket)
    try:
        yield
    finally:
        _TICKET.reset(token)
        ticket.close()


def report_demand(demand: int) -> None:
    """Tell the archive running this video (if any) how many subsequences it still has to segment."""
    ticket = _TICKET.get()
    if ticket is not None:
        ticket.report(demand)
