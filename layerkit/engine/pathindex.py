"""A persistent path index of an image's union view, so that a container's ``diff`` costs what its
writable layer holds, not what the image holds.

One SQLite file per layer stack, named by the top layer's chain ID (which fixes the content for ever),
in ``STORE/layerkit/views/``. It is built once from the union view, written to a temporary file and
renamed into place; afterwards a lookup is one indexed query.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from pathlib import Path
from typing import NamedTuple

from .union import UnionView


class Found(NamedTuple):
    """A path in the image: the providing layer's position, its type and size."""

    layer: int
    type: str
    size: int


class PathIndex:
    """Read-only lookups into a built index."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)

    def get(self, path: str) -> Found | None:
        """The entry at ``path`` in the image (no symlink resolution), or None."""
        row = self._db.execute("SELECT layer, type, size FROM p WHERE path = ?", (path,)).fetchone()
        return Found(*row) if row else None

    def close(self) -> None:
        """Close the database."""
        self._db.close()


def build(view: UnionView, dest: Path) -> None:
    """Write the index of ``view`` to ``dest`` atomically."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".view-")
    os.close(fd)
    try:
        db = sqlite3.connect(tmp)
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        db.execute("CREATE TABLE p (path TEXT PRIMARY KEY, layer INTEGER, type TEXT, size INTEGER) WITHOUT ROWID")
        db.executemany("INSERT INTO p VALUES (?, ?, ?, ?)",
                       ((u.entry.path, u.layer, u.entry.type, u.entry.size) for u in view.entries()))
        db.commit()
        db.close()
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
