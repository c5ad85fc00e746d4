"""Progress events (:mod:`layerkit.engine.progress`, read through :mod:`layerkit.results`) drawn as tqdm
bars, for the CLI and the notebook.

Each face picks its tqdm: the CLI plain ``tqdm`` on stderr (nothing when stderr is not a terminal), the
notebook ``tqdm.auto`` (a widget). tqdm is imported with the first bar (about 75 ms that a quick verb
does not pay). :class:`ProgressBars` draws one operation as layerkit always has: one
bar of the bytes moved (every layer's latest ``done``, so nothing counts twice), its postfix the latest
layer's state in Docker's words (``1a2b3c4d5e6f: Downloading``) after how many of the announced items are
finished (``12/340 layers``), tqdm's own figures giving the bytes and the rate; a large layer being indexed
gets a bar of its own, closed when it is done. A bar appears with the first event, so quick work draws
nothing. An event's ``note`` (the Dask dashboard of a scan) is written once above the bars.
"""

from __future__ import annotations

import importlib
import sys
import threading
from typing import Any

from .results import FINISHED, ProgressEvent, Status, Tally, short

# what a bar's postfix says of a layer, as docker pull / push word it
WORDS = {
    Status.WAITING: "Waiting",
    Status.DOWNLOADING: "Downloading",
    Status.UPLOADING: "Pushing",
    Status.INDEXING: "Indexing",
    Status.EXISTS: "Already exists",
    Status.MOUNTED: "Mounted",
    Status.DONE: "Complete",
}


def label(event: ProgressEvent) -> str:
    """``<12 hex>: Downloading``, or ``archive: Downloading`` for an item without a digest."""
    name = short(event.digest) if event.digest else event.what
    return f"{name}: {WORDS[event.status]}"


class ProgressBars:
    """A progress callback drawing tqdm bars; close it (or use it as a context manager) when the work ends.

    ``tqdm_module`` is the face's tqdm (``tqdm``, ``tqdm.auto``); ``desc`` names the operation
    (``pull 127.0.0.1:5000/app:v1``). Safe to call from several threads."""

    def __init__(self, desc: str, tqdm_module: str = "tqdm") -> None:
        self.desc = desc
        self._tqdm_module = tqdm_module
        self._bar: Any = None
        self._indexing: dict[str | None, Any] = {}
        self._tally = Tally()
        self._lock = threading.Lock()
        self._announced: set[tuple[str, str | None]] = set()  # items seen (layers, archives)
        self._finished: set[tuple[str, str | None]] = set()
        self._notes: set[str] = set()

    def _new_bar(self, desc: str, total: int | None = None) -> Any:
        tqdm = importlib.import_module(self._tqdm_module).tqdm
        # disable=None: a bar on a terminal or in a notebook, nothing in CI logs
        return tqdm(desc=desc, total=total, unit="B", unit_scale=True, unit_divisor=1000, disable=None,
                          leave=True)

    def __call__(self, event: ProgressEvent) -> None:
        with self._lock:
            if event.note is not None:
                self._note(event.note)
                return
            if event.status == Status.INDEXING or (event.status == Status.DONE and event.digest in self._indexing):
                self._index(event)
                return
            if self._bar is None:
                self._bar = self._new_bar(self.desc)
            key = (event.what, event.digest)
            self._announced.add(key)
            if event.status in FINISHED:
                self._finished.add(key)
            n = len(self._announced)
            count = f"{len(self._finished)}/{n} {event.what}s, " if n > 1 else ""
            self._bar.set_postfix_str(count + label(event), refresh=False)
            self._bar.update(self._tally.add(event))

    def _note(self, text: str) -> None:
        if text in self._notes:
            return
        self._notes.add(text)
        if self._bar is None:
            self._bar = self._new_bar(self.desc)
        if not self._bar.disable:  # where bars are drawn (a terminal, a notebook), above them
            self._bar.write(text, file=sys.stderr if self._tqdm_module == "tqdm" else None)

    def _index(self, event: ProgressEvent) -> None:
        bar = self._indexing.get(event.digest)
        if bar is None:
            name = short(event.digest) if event.digest else event.what
            bar = self._indexing[event.digest] = self._new_bar(f"indexing {name}", event.total)
        bar.update(max(0, event.done - bar.n))
        if event.status == Status.DONE:
            bar.close()
            del self._indexing[event.digest]

    def close(self) -> None:
        """Close every bar still open."""
        with self._lock:
            for bar in [self._bar, *self._indexing.values()]:
                if bar is not None:
                    bar.close()
            self._bar = None
            self._indexing = {}

    def __enter__(self) -> ProgressBars:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
