"""Typed progress events: what long work (load, pull, push, copy, indexing a large layer) reports.

The engine and the transports never draw anything: an operation that takes time accepts an optional
:data:`Progress` callback and calls it with a :class:`ProgressEvent` as it goes. The faces render the
events (the CLI with tqdm on a terminal, the notebook with tqdm.auto); no code reads an event back out of
a message string.

An event names one item (``what``: ``"layer"``, ``"archive"``; ``digest``: the layer blob's digest when
its source names one, else its diff_id), how many of its bytes are handled so far (``done``, counted from
the item's start: a later event of the same item replaces the earlier figure, it is not added to it) and
its size when known (``total``), and a :class:`Status`. The statuses follow what ``docker pull`` and
``docker push`` show per layer:

=========== =====================================================================================
waiting     about to be moved (``total`` is known): pull and push announce every layer first
downloading bytes arriving (a registry blob, an engine's ``docker save`` stream)
uploading   bytes leaving for a registry (``Pushing``)
indexing    a stored layer's tar being read into its index (``done`` is the offset reached)
exists      nothing to move: the store (pull, load) or the registry (push) holds it already
mounted     the registry mounted it from another repository (push)
done        moved and verified (``Pull complete``, ``Pushed``, ``Loaded``), or indexed
=========== =====================================================================================

An event may also carry a ``note``: one line for the person watching, shown once (``scan`` gives the Dask
dashboard's address so); such an event is about no item and moves no bytes.

A callback may be called from several threads (layers move concurrently), never two at a time: the
operations serialize their calls (:func:`serialized`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    """Where an item stands (see the module docstring)."""

    WAITING = "waiting"
    DOWNLOADING = "downloading"
    UPLOADING = "uploading"
    INDEXING = "indexing"
    EXISTS = "exists"
    MOUNTED = "mounted"
    DONE = "done"


FINISHED = frozenset({Status.EXISTS, Status.MOUNTED, Status.DONE})  # nothing more comes for the item


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    """One step of one item of a long operation."""

    what: str  # "layer" or "archive"
    digest: str | None  # the item's blob digest (a layer without one: its diff_id); None for an archive
    done: int  # bytes of the item handled so far
    total: int | None  # the item's size in bytes, when known
    status: Status
    note: str | None = None  # a line to show once (the Dask dashboard's address); no item, no bytes


Progress = Callable[[ProgressEvent], None]


def serialized(progress: Progress | None) -> Progress | None:
    """``progress`` behind a lock, for operations that report from several threads (None stays None)."""
    if progress is None:
        return None
    lock = threading.Lock()

    def call(event: ProgressEvent) -> None:
        with lock:
            progress(event)
    return call


class Tally:
    """Bytes handled so far over all items of an operation, from its events.

    ``done`` counts from each item's start, so the total is the sum of each item's latest figure; an
    item that starts over (an upload tried again) does not count its bytes twice.
    """

    def __init__(self) -> None:
        self._done: dict[tuple[str, str | None], int] = {}
        self.total = 0

    def add(self, event: ProgressEvent) -> int:
        """Take an event; returns how many bytes it adds to the total (0 or more)."""
        key = (event.what, event.digest)
        before = self._done.get(key, 0)
        if event.done <= before:
            return 0
        self._done[key] = event.done
        self.total += event.done - before
        return event.done - before
