"""Progress in a notebook: the events of long work (:mod:`layerkit.engine.progress`) as tqdm.auto bars,
which Jupyter shows as widgets (and a terminal IPython as text)."""

from __future__ import annotations

from ..progressbars import ProgressBars


def notebook_progress(desc: str) -> ProgressBars:
    """A progress callback drawing widget bars for the work named ``desc``; close it when the work ends."""
    return ProgressBars(desc, "tqdm.auto")
